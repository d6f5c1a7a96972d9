"""Shared checks of the figure modules: scientific invariants, not timings.

A figure test runs (or reuses) its experiment's sweep and asserts what a reader of the
figure relies on: every scheduler has every point and every seed, every summary reports
its completion rate, intervals exist from 3 seeds on and stay inside the metric's physical
range, and the figure is drawn. Speed is measured in the ``bench_*_speed`` modules.
"""

from __future__ import annotations

import math

import pandas as pd


def check_grid(runs: pd.DataFrame, x: str, seeds: int | None = None) -> pd.DataFrame:
    """Every scheduler has every ``x`` value with the same seeds (``seeds`` of them when
    given); completion is reported; intervals are sane. Returns the aggregate table."""
    from eatbench.core.stats import MIN_SEEDS, metric_bounds
    from eatbench.report.aggregate import aggregate

    assert not runs.empty, "the sweep produced no result files"
    xs = set(runs[x])
    n_seeds = runs["seed"].nunique() if seeds is None else seeds
    for sched, grp in runs.groupby("scheduler"):
        assert set(grp[x]) == xs, f"{sched} misses some {x} values"
        per_point = grp.groupby(x)["seed"].nunique()
        assert (per_point == n_seeds).all(), f"{sched}: seeds per point {per_point.to_dict()} != {n_seeds}"
    assert "completion_rate" in runs and runs["completion_rate"].between(0, 1).all(), "completion not reported"
    assert (runs["tasks_done"] + runs["tasks_unfinished"] + runs["tasks_failed"] == runs["tasks"]).all()
    agg = aggregate(runs)
    assert agg["response_mean"].map(math.isfinite).all()
    assert (agg["response_p90"] >= agg["response_p50"] - 1e-9).all()
    for metric in ("response_mean", "response_p90", "slo_attainment", "quality_mean"):
        lo_b, hi_b = metric_bounds(metric)
        lo, mid, hi = agg[f"{metric}_lo"], agg[metric], agg[f"{metric}_hi"]
        has = lo.notna()
        assert (has == (agg["seeds"] >= MIN_SEEDS)).all(), f"{metric}: an interval under {MIN_SEEDS} seeds"
        assert (lo[has] <= mid[has] + 1e-9).all() and (mid[has] <= hi[has] + 1e-9).all(), f"{metric}: mean outside"
        assert (lo[has] >= lo_b).all() and (hi[has] <= hi_b).all(), f"{metric}: band outside [{lo_b}, {hi_b}]"
    return agg


def check_figure(eat_session, experiment: str, fid: str, x: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Run (or reuse) ``experiment``'s sweep, check its grid, draw figure ``fid`` (PNG) and
    check it; returns the per-run table."""
    from eatbench.report.markdown import EXPERIMENTS, aggregate_sorted
    from eatbench.report.plots import plot_metric_vs

    result = eat_session.sweep(experiment)
    runs = eat_session.table(result.experiment)
    check_grid(runs, x, eat_session.seed_count())
    spec = next((f for f in EXPERIMENTS[experiment][2] if f.fid == fid), None)
    png = eat_session.options.report_dir / "figures" / f"{fid.lower()}_{experiment}.png"
    path = plot_metric_vs(
        aggregate_sorted(runs, x),
        x,
        metrics,
        png,
        f"{fid}: {spec.caption if spec else ''}",
        logx=bool(spec and spec.logx),
    )
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    return runs
