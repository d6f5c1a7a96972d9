"""T1: reduction of mean response time of EAT vs each baseline at each rate (paired by seed,
95% CI), beside the paper's "up to 56%"."""

import math

import pytest

pytestmark = pytest.mark.eat_figure("T1")


def test_t1_reduction_vs_baselines(benchmark, eat_session):
    from eatbench.report.aggregate import reduction_table

    result = eat_session.sweep("paper_rates")
    runs = eat_session.table(result.experiment)
    if "eat" not in set(runs["scheduler"]):
        pytest.skip(f"T1: no EAT results ({result.skipped.get('eat', 'not in the grid')})")
    red = benchmark.pedantic(reduction_table, args=(runs, "eat"), rounds=1)
    assert len(red) == (runs["scheduler"].nunique() - 1) * runs["rate"].nunique()
    assert red["reduction_pct"].map(math.isfinite).all() and (red["reduction_pct"] < 100).all()
    best = red.loc[red["reduction_pct"].idxmax()]
    benchmark.extra_info.update(
        {
            "max_reduction_pct": float(best.reduction_pct),
            "vs": best.baseline,
            "at_rate": float(best.rate),
            "paper_claim_pct": 56.0,
        }
    )
    benchmark.extra_info.update(
        {f"{r.baseline}@{r.rate:g}": round(float(r.reduction_pct), 2) for r in red.itertuples()}
    )
