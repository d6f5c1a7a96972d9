"""F9 (ours): clusters and loads held out of the size-agnostic agents' training distribution."""

from _figures import check_grid


def test_f9_heldout(eat_session):
    from eatbench.report.heldout import target_rows, with_point_labels

    result = eat_session.sweep("heldout")
    runs = with_point_labels(eat_session.table(result.experiment))
    check_grid(runs, "rate", eat_session.seed_count())  # the four points have distinct rates
    assert set(runs["point_label"]) <= {"c24_u50", "c24_u80", "c48_u50", "c48_u80"}
    assert set(runs["n_servers"]) <= {24, 48} and set(runs["arrival"]) == {"gamma"}
    assert {"earliest_finish", "random"} <= set(runs["scheduler"])
    for agent in sorted(s for s in set(runs["scheduler"]) if s.endswith("_set")):
        rows = target_rows(runs, agent)
        assert len(rows) == runs["point_label"].nunique()  # every point is judged for every agent
