"""F1: mean and p90 response time vs arrival rate (paper4, k in {1,2,4}, 0.01..0.11 tasks/s)."""

import pytest
from _figures import check_figure


def test_f1_response_time_vs_rate(eat_session):
    runs = check_figure(eat_session, "paper_rates", "F1", "rate", ("response_mean", "response_p90"))
    assert sorted(runs["rate"].unique())[0] == pytest.approx(0.01)
    # every arrived task is in the mean: the total over all tasks is the finished tasks' total
    # plus the unfinished ones' censored times (>= 0, <= the episode length)
    total = runs["response_mean"] * runs["tasks"]
    done_total = (runs["response_mean_done"] * runs["tasks_done"]).fillna(0)
    unfinished = runs["tasks"] - runs["tasks_done"]
    assert (total >= done_total - 1e-6).all()
    assert (total <= done_total + unfinished * runs["makespan"] + 1e-6).all()
    assert ((unfinished == 0) <= ((total - done_total).abs() < 1e-6)).all()
