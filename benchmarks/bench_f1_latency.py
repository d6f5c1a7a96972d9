"""F1: mean and p90 response time vs arrival rate (paper4, k in {1,2,4}, 0.01..0.11 tasks/s)."""

import pytest
from _figures import check_figure

pytestmark = pytest.mark.eat_figure("F1")


def test_f1_response_time_vs_rate(eat_session):
    runs = check_figure(eat_session, "paper_rates", "F1", "rate", ("response_mean", "response_p90"))
    assert sorted(runs["rate"].unique())[0] == pytest.approx(0.01)
    # censoring never lowers a mean: over every task it is at least the finished-only mean
    assert (runs["response_mean"] >= runs["response_mean_done"].fillna(0) - 1e-9).all()
