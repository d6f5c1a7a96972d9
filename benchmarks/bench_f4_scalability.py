"""F4: scalability at matched utilisation, N = 4, 8, 16, 32 (rate and tasks scaled with N)."""

from _figures import check_figure


def test_f4_scalability(eat_session):
    runs = check_figure(
        eat_session, "scalability", "F4", "n_servers", ("response_mean", "response_p90", "slo_attainment")
    )
    per_server = (runs["rate"] / runs["n_servers"]).round(6)
    assert per_server.nunique() == 1  # matched offered load per server
    assert set(runs["n_servers"]) <= {4, 8, 16, 32} and runs["n_servers"].nunique() >= 3
