"""F4: scalability at matched utilisation, N = 4, 8, 16, 32 (rate and tasks scaled with N)."""

import pytest
from _figures import figure_benchmark

pytestmark = pytest.mark.eat_figure("F4")


def test_f4_scalability(benchmark, eat_session):
    runs = figure_benchmark(
        benchmark, eat_session, "scalability", "F4", "n_servers", ("response_mean", "response_p90", "slo_attainment")
    )
    per_server = (runs["rate"] / runs["n_servers"]).round(6)
    assert per_server.nunique() == 1  # matched offered load per server
