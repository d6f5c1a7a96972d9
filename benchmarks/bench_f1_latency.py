"""F1: mean and p90 response time vs arrival rate (paper4, k in {1,2,4}, 0.01..0.11 tasks/s)."""

import pytest
from _figures import figure_benchmark

pytestmark = pytest.mark.eat_figure("F1")


def test_f1_response_time_vs_rate(benchmark, eat_session):
    runs = figure_benchmark(benchmark, eat_session, "paper_rates", "F1", "rate", ("response_mean", "response_p90"))
    assert sorted(runs["rate"].unique())[0] == pytest.approx(0.01)
