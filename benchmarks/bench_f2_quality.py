"""F2: mean quality q(S) vs arrival rate (same runs as F1; a task without an image scores 0)."""

from _figures import check_figure


def test_f2_quality_vs_rate(eat_session):
    runs = check_figure(eat_session, "paper_rates", "F2", "rate", ("quality_mean",))
    q = runs["quality_mean"].dropna()
    assert ((q >= 0) & (q <= 0.3)).all()  # the paper curve's range
    assert (runs["quality_mean"] <= runs["quality_mean_done"] + 1e-9).all()  # unserved tasks only lower it
