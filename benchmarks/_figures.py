"""Shared checks of the figure benchmarks (invariants only: the numbers are reported)."""

from __future__ import annotations

import math

import pandas as pd


def check_grid(runs: pd.DataFrame, x: str) -> pd.DataFrame:
    """Every scheduler has every ``x`` value and the same seeds; metrics are finite."""
    from eatbench.report.aggregate import aggregate

    assert not runs.empty, "the sweep produced no result files"
    xs = set(runs[x])
    for sched, grp in runs.groupby("scheduler"):
        assert set(grp[x]) == xs, f"{sched} misses some {x} values"
        assert grp.groupby(x)["seed"].nunique().min() == runs["seed"].nunique(), f"{sched} misses seeds"
    agg = aggregate(runs)
    assert agg["response_mean"].map(math.isfinite).all()
    assert (agg["response_p90"] >= agg["response_p50"] - 1e-9).all()
    assert ((agg["slo_attainment"] >= 0) & (agg["slo_attainment"] <= 1)).all()
    return agg


def figure_benchmark(benchmark, eat_session, experiment: str, fid: str, x: str, metrics: tuple[str, ...]):
    """Run (or reuse) ``experiment``'s sweep, check its grid, time drawing figure ``fid``
    (aggregation + PNG), and put the figure's metrics in pytest-benchmark's ``extra_info``."""
    from eatbench.report.markdown import EXPERIMENTS, aggregate_sorted
    from eatbench.report.plots import plot_metric_vs
    from eatbench.report.session import flat_metrics

    result = eat_session.sweep(experiment)
    runs = eat_session.table(result.experiment)
    check_grid(runs, x)
    spec = next((f for f in EXPERIMENTS[experiment][2] if f.fid == fid), None)
    png = eat_session.options.report_dir / "figures" / f"{fid.lower()}_{experiment}.png"

    def draw():
        return plot_metric_vs(
            aggregate_sorted(runs, x),
            x,
            metrics,
            png,
            f"{fid}: {spec.caption if spec else ''}",
            logx=bool(spec and spec.logx),
        )

    path = benchmark.pedantic(draw, rounds=1, iterations=1)
    assert path.is_file() and path.stat().st_size > 10_000
    benchmark.extra_info.update({"figure": fid, "experiment": result.experiment, "runs": len(runs)})
    benchmark.extra_info.update({f"skipped/{k}": v for k, v in result.skipped.items()})
    benchmark.extra_info.update(flat_metrics(runs, x, metrics))
    return runs
