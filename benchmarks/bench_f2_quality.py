"""F2: mean quality q(S) of finished tasks vs arrival rate (same runs as F1)."""

import pytest
from _figures import figure_benchmark

pytestmark = pytest.mark.eat_figure("F2")


def test_f2_quality_vs_rate(benchmark, eat_session):
    runs = figure_benchmark(benchmark, eat_session, "paper_rates", "F2", "rate", ("quality_mean",))
    q = runs["quality_mean"].dropna()
    assert ((q >= 0) & (q <= 0.3)).all()  # the paper curve's range
