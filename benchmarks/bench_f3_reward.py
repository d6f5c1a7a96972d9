"""F3: the paper reward per episode vs arrival rate (same runs as F1)."""

from _figures import check_figure


def test_f3_reward_vs_rate(eat_session):
    runs = check_figure(eat_session, "paper_rates", "F3", "rate", ("reward_total",))
    assert (runs["reward_total"] >= 0).all()
    # each launch earns at most the latency cap (10) plus 10 * max q(S) (0.28)
    assert (runs["reward_total"] <= runs["decisions"] * (10 + 10 * 0.28) + 1e-6).all()
