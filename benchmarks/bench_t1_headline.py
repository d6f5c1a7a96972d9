"""T1: reduction of mean response time of EAT vs each baseline at each rate (paired by seed,
95% bootstrap interval), beside the paper's "up to 56%", and every pairwise comparison."""

import math

import pytest


def test_t1_reduction_vs_baselines(eat_session):
    from eatbench.report.aggregate import pairwise_table, reduction_table

    result = eat_session.sweep("paper_rates")
    runs = eat_session.table(result.experiment)
    if "eat" not in set(runs["scheduler"]):
        pytest.skip(f"T1: no EAT results ({result.skipped.get('eat', 'not in the grid')})")
    red = reduction_table(runs, "eat")
    assert len(red) == (runs["scheduler"].nunique() - 1) * runs["rate"].nunique()
    assert red["reduction_pct"].map(math.isfinite).all() and (red["reduction_pct"] < 100).all()
    assert (red["seeds"] == eat_session.seed_count()).all(), "T1 must pair every seed"
    has = red["low"].notna()
    assert (red.loc[has, "low"] <= red.loc[has, "reduction_pct"] + 1e-9).all()
    assert (red.loc[has, "reduction_pct"] <= red.loc[has, "high"] + 1e-9).all()
    pw = pairwise_table(runs)
    n = runs["scheduler"].nunique()
    assert len(pw) == n * (n - 1) * runs["rate"].nunique()
    # antisymmetry: a - b = -(b - a) on the same seeds
    back = pw.set_index(["scheduler", "other", "rate"])["diff"]
    for r in pw.itertuples():
        assert back[(r.other, r.scheduler, r.rate)] == pytest.approx(-r.diff)
