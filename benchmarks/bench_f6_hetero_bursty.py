"""F6: heterogeneous 8-server cluster (hetero8) under bursty Gamma arrivals (CV 3)."""

from _figures import check_figure


def test_f6_hetero_bursty(eat_session):
    runs = check_figure(eat_session, "hetero_bursty", "F6", "rate", ("response_mean", "response_p90", "slo_attainment"))
    assert set(runs["cluster"]) == {"hetero8"} and set(runs["arrival"]) == {"gamma"}
