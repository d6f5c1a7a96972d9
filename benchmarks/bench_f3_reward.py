"""F3: the paper reward per episode vs arrival rate (same runs as F1)."""

import pytest
from _figures import figure_benchmark

pytestmark = pytest.mark.eat_figure("F3")


def test_f3_reward_vs_rate(benchmark, eat_session):
    runs = figure_benchmark(benchmark, eat_session, "paper_rates", "F3", "rate", ("reward_total",))
    assert (runs["reward_total"] >= 0).all()
