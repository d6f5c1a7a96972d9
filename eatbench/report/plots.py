"""Matplotlib figures (PNG, Agg backend) from the tables of :mod:`eatbench.report.aggregate`.

Every curve is a mean over seeds with its 95% bootstrap interval as a band (no band under
3 seeds; bands never leave the metric's physical range). A point where a scheduler left
tasks unfinished is ringed in red. Times are seconds, rates tasks/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from eatbench.core.stats import mean_interval, metric_bounds  # noqa: E402

#: display names of schedulers (registry name -> label).
LABELS = {
    "eat": "EAT",
    "eat_nodiff": "EAT w/o diffusion",
    "eat_wide": "EAT (wide)",
    "dsac": "DSAC",
    "sac": "SAC",
    "greedy": "Greedy",
    "random": "Random",
    "earliest_finish": "EarliestFinish",
    "round_robin": "RoundRobin",
    "fifo": "FIFO",
    "least_loaded": "LeastLoaded",
    "oracle": "Oracle",
    "authors_eat": "EAT (authors')",
    "authors_dsac": "DSAC (authors')",
    "authors_sac": "SAC (authors')",
    "eat_set": "EAT (size-agnostic, ours)",
    "dsac_set": "DSAC (size-agnostic, ours)",
    "sac_set": "SAC (size-agnostic, ours)",
    "eat_nodiff_set": "EAT w/o diffusion (size-agnostic, ours)",
}
LEARNED_STYLE = {"linewidth": 2.2, "linestyle": "-", "marker": "o"}
HEURISTIC_STYLE = {"linewidth": 1.3, "linestyle": "--", "marker": "s", "markersize": 4}
AXIS_LABELS = {
    "rate": "arrival rate (tasks/s)",
    "n_servers": "servers N",
    "response_mean": "mean response time (s)",
    "response_p90": "p90 response time (s)",
    "quality_mean": "mean quality q(S)",
    "reward_total": "paper reward per episode",
    "slo_attainment": "SLO attainment",
    "wait_mean": "mean waiting time (s)",
}


def label(scheduler: str) -> str:
    return LABELS.get(scheduler, scheduler)


#: strong, distinct colours for the size-agnostic agents (ours).
SET_COLORS = {"eat_set": "#1f77b4", "dsac_set": "#ff7f0e", "sac_set": "#2ca02c", "eat_nodiff_set": "#17becf"}


def _color(scheduler: str):
    """A fixed colour per scheduler (20 distinct ones), the same in every figure."""
    if scheduler in SET_COLORS:
        return SET_COLORS[scheduler]
    names = list(LABELS)
    index = names.index(scheduler) if scheduler in names else len(names) + sum(map(ord, scheduler))
    return plt.get_cmap("tab20")(index % 20)


def _style(scheduler: str) -> dict:
    if scheduler == "oracle":
        return {"linewidth": 1.6, "linestyle": "-", "marker": "D", "markersize": 4, "color": "black"}
    base = LEARNED_STYLE if scheduler.startswith(("eat", "dsac", "sac", "authors_")) else HEURISTIC_STYLE
    return {**base, "color": _color(scheduler)}


def plot_metric_vs(
    agg: pd.DataFrame,
    x: str,
    metrics: Sequence[str],
    path: str | Path,
    title: str = "",
    logx: bool = False,
    reference: pd.DataFrame | None = None,
) -> Path:
    """One panel per metric: mean over seeds vs ``x`` with a 95% bootstrap band, a line per
    scheduler; points where some seed left tasks unfinished are ringed in red.

    :param reference: the oracle's means per ``x`` (columns ``x``, the metrics, ``oracle_bound``,
        ``seeds``), drawn in black: its best schedule, and its proven bound for mean response.

    :param agg: rows of :func:`~eatbench.report.aggregate.aggregate` (one experiment).
    :param x: the x column (``rate``, ``n_servers``).
    :param metrics: metric columns; ``<metric>_lo`` / ``<metric>_hi`` give the band.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    any_unfinished = False
    for ax, metric in zip(axes[0], metrics, strict=True):
        lo_b, hi_b = metric_bounds(metric)
        for sched, grp in agg.sort_values(x).groupby("scheduler", sort=True):
            xs, ys = grp[x].to_numpy(float), grp[metric].to_numpy(float)
            (line,) = ax.plot(xs, ys, label=label(sched), **_style(sched))
            if f"{metric}_lo" in grp:
                lo = grp[f"{metric}_lo"].to_numpy(float).clip(lo_b, hi_b)
                hi = grp[f"{metric}_hi"].to_numpy(float).clip(lo_b, hi_b)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
            if "completion_min" in grp:
                bad = grp["completion_min"].to_numpy(float) < 1.0
                if bad.any():
                    any_unfinished = True
                    ax.scatter(xs[bad], ys[bad], s=90, facecolors="none", edgecolors="red", linewidths=1.4, zorder=5)
        if reference is not None and metric in reference and x in reference:
            ref = reference.sort_values(x)
            n = int(ref["seeds"].min()) if "seeds" in ref else 0
            ax.plot(ref[x], ref[metric], color="black", linewidth=1.6, label=f"Oracle, best found ({n} seeds)")
            if metric == "response_mean" and "oracle_bound" in ref:
                ax.plot(ref[x], ref["oracle_bound"], color="black", linestyle=":", label="Oracle, proven bound")
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(agg[x].unique()), [f"{v:g}" for v in sorted(agg[x].unique())])
        ax.grid(alpha=0.3)
    if any_unfinished:
        axes[0][-1].scatter([], [], s=90, facecolors="none", edgecolors="red", label="tasks left unfinished")
    handles: dict[str, object] = {}
    for ax in axes[0]:  # one legend with every line of every panel (the oracle's bound is on the first)
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _interval_rows(groups, value: str, metric: str) -> pd.DataFrame:
    rows = []
    for key, g in groups:
        iv = mean_interval(g[value].tolist(), metric)
        rows.append((key, iv.estimate, iv.low, iv.high))
    return pd.DataFrame(rows, columns=["key", "mean", "lo", "hi"])


def plot_tradeoff(records: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """F7: steps chosen vs response time and vs quality, per scheduler (finished tasks; mean
    per step count with a 95% bootstrap interval over tasks), and the distribution of chosen steps."""
    done = records[records["status"] == "done"]
    fig, axes = plt.subplots(1, 3, figsize=(15.5, 3.8))
    for sched, grp in done.groupby("scheduler", sort=True):
        resp = _interval_rows(grp.groupby("steps"), "response", "response")
        qual = _interval_rows(grp.groupby("steps"), "quality", "quality")
        style = {**_style(sched), "markersize": 3}
        (line,) = axes[0].plot(resp["key"], resp["mean"], label=label(sched), **style)
        axes[0].fill_between(resp["key"], resp["lo"], resp["hi"], color=line.get_color(), alpha=0.12)
        axes[1].plot(qual["key"], qual["mean"], label=label(sched), **style)
        counts = grp["steps"].value_counts(normalize=True).sort_index()
        axes[2].plot(counts.index, counts.to_numpy(), label=label(sched), **style)
    axes[0].set(xlabel="denoising steps S", ylabel="response time (s)")
    axes[1].set(xlabel="denoising steps S", ylabel="quality q(S)")
    axes[2].set(xlabel="denoising steps S", ylabel="share of tasks")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


#: F5 panels: curve column -> (y label, metric name for the band's bounds).
CURVE_PANELS = {
    "eval_return": ("evaluation return (paper reward)", "diff_eval_return"),
    "eval_response_mean": ("evaluation mean response time (s)", "response_mean"),
}


def plot_training_curves(
    curves: pd.DataFrame, path: str | Path, title: str = "", columns: Sequence[str] = ("eval_return",)
) -> Path:
    """F5: evaluation return (and other curve ``columns``) vs environment steps, one panel
    each; mean over training seeds with a 95% bootstrap band (none under 3 seeds).

    :param curves: columns ``scheduler``, ``seed``, ``step`` and each of ``columns``.
    """
    columns = [c for c in columns if c in curves and curves[c].notna().any()] or ["eval_return"]
    fig, axes = plt.subplots(1, len(columns), figsize=(6.5 * len(columns), 4), squeeze=False)
    for ax, col in zip(axes[0], columns, strict=True):
        ylabel, metric = CURVE_PANELS.get(col, (col, "diff_" + col))
        for sched, grp in curves.dropna(subset=[col]).groupby("scheduler", sort=True):
            st = _interval_rows(grp.groupby("step"), col, metric)
            n_seeds = grp["seed"].nunique()
            (line,) = ax.plot(st["key"], st["mean"], label=f"{label(sched)} ({n_seeds} seeds)", **_style(sched))
            ax.fill_between(st["key"], st["lo"], st["hi"], color=line.get_color(), alpha=0.15)
        ax.set(xlabel="environment steps", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_points(agg: pd.DataFrame, metrics: Sequence[str], path: str | Path, title: str = "") -> Path:
    """F9: one panel per metric, the points (column ``point_label``) side by side on the x
    axis, each scheduler's mean with its 95% interval as an error bar (slightly offset).

    :param agg: rows of :func:`~eatbench.report.aggregate.aggregate` plus ``point_label``.
    """
    points = sorted(agg["point_label"].unique())
    scheds = sorted(agg["scheduler"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 4.2), squeeze=False)
    width = 0.8 / max(len(scheds), 1)
    for ax, metric in zip(axes[0], metrics, strict=True):
        lo_b, hi_b = metric_bounds(metric)
        for i, sched in enumerate(scheds):
            grp = agg[agg["scheduler"] == sched]
            xs = [points.index(p) - 0.4 + (i + 0.5) * width for p in grp["point_label"]]
            ys = grp[metric].to_numpy(float)
            lo = grp.get(f"{metric}_lo", grp[metric]).to_numpy(float).clip(lo_b, hi_b)
            hi = grp.get(f"{metric}_hi", grp[metric]).to_numpy(float).clip(lo_b, hi_b)
            err = [(ys - lo).clip(0), (hi - ys).clip(0)]
            style = _style(sched)
            ax.errorbar(xs, ys, yerr=err, fmt=style.get("marker", "o"), color=style["color"], label=label(sched), ms=5)
        ax.set_xticks(range(len(points)), points, rotation=15, fontsize=8)
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        ax.grid(alpha=0.3, axis="y")
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
