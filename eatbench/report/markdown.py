"""Write ``REPORT.md`` (tables, PNG figures, configs, versions) from result files alone.

Layout of a report directory::

    <dir>/REPORT.md          this report
    <dir>/figures/*.png      one PNG per figure (F1..F8)
    <dir>/data/runs.csv      one row per run (settings and summary metrics)
    <dir>/results/...        the result files it was built from (by default)

Regenerate with ``eatbench report`` or ``nox -s report``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eatbench.report import aggregate as agg_mod
from eatbench.report.aggregate import TABLE_METRICS, base_experiment, fmt_ci


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: ``kind`` is ``vs`` (metrics vs ``x``) or ``tradeoff`` (F7)."""

    fid: str
    caption: str
    kind: str = "vs"
    x: str = "rate"
    metrics: tuple[str, ...] = ("response_mean", "response_p90")
    logx: bool = False


#: experiment (base name) -> (section title, description, figures).
EXPERIMENTS: dict[str, tuple[str, str, tuple[FigureSpec, ...]]] = {
    "paper_rates": (
        "The paper's arrival-rate sweep (paper4)",
        "4 identical servers with the paper's latency profile, k drawn from {1,2,4}, 32-task episodes "
        "(10 queued at t=0, Bernoulli arrivals in 0.1 s slots, 1024 s limit).",
        (
            FigureSpec("F1", "Mean and p90 response time vs arrival rate"),
            FigureSpec("F2", "Mean quality q(S) of finished tasks vs arrival rate", metrics=("quality_mean",)),
            FigureSpec("F3", "Paper reward per episode vs arrival rate", metrics=("reward_total",)),
            FigureSpec("F7", "Latency-quality trade-off: denoising steps vs response time and quality", "tradeoff"),
        ),
    ),
    "scalability": (
        "Scalability at matched utilisation (uniform N)",
        "N identical servers, Poisson arrivals at 0.07*N/4 tasks/s and 200*N/4 tasks, so the offered load "
        "per server is the same at every N.",
        (
            FigureSpec(
                "F4",
                "Response time and SLO attainment vs cluster size",
                x="n_servers",
                metrics=("response_mean", "response_p90", "slo_attainment"),
                logx=True,
            ),
        ),
    ),
    "hetero_bursty": (
        "Heterogeneous cluster under bursty arrivals (hetero8)",
        "2 fast, 3 paper-speed and 3 slow GPUs (illustrative speed ratios 2.5 : 1 : 0.4), Gamma "
        "inter-arrival times with CV 3, 500 tasks.",
        (
            FigureSpec(
                "F6",
                "Response time and SLO attainment vs mean arrival rate",
                metrics=("response_mean", "response_p90", "slo_attainment"),
            ),
        ),
    ),
    "ablations": (
        "Ablations of EAT",
        "EAT without the diffusion chain (eat_nodiff) and with a wider network (eat_wide), on the paper setting.",
        (
            FigureSpec(
                "F8", "Ablations: response time and quality vs arrival rate", metrics=("response_mean", "quality_mean")
            ),
        ),
    ),
}
ORDER = list(EXPERIMENTS)

PAPER_CLAIMS = (
    "The paper claims EAT reduces inference latency by **up to 56%** against its baselines (arXiv v1) "
    "and response time by **up to 42%** (journal version); neither names the baseline or load."
)

DIFFERENCES = """\
The paper's released code has known defects (see `docs/eat-model.md`); we do not copy them:

| # | The paper's release | What eatbench does instead |
|---|---|---|
| 1 | Training ignores the configured arrival rate (always 0.5 tasks/s). | Each training episode draws its rate uniformly from `train.rate_low..rate_high` (0.01..0.11); evaluation uses the configured rate. |
| 2 | Every training episode replays the same workload (reseeded on reset). | Every training episode draws a new workload seed; evaluation seeds are disjoint from training seeds. |
| 3 | Greedy's action slots are swapped: it always runs the maximum steps. | `greedy` is a real one-step look-ahead on the paper reward over (task, steps, k). |
| 4 | Observations are unnormalised and carry absolute time. | Times are relative to now and scaled; features are clipped (`eatbench/env.py`). |
| 5 | Steps are fractional in simulation, floored on the real system. | Steps are integers in [`engine.min_steps`, `engine.max_steps`] on both backends. |
| 6 | A single seed everywhere; no confidence intervals. | 5 seeds per point; mean and 95% Student-t CI; reductions paired by seed. |
| 7 | The real system renders 1440x1440 while the simulator assumes 512x512. | The sim uses the profile measured at 1440x1440 and tasks are 1440x1440; the GPU backend uses measured profiles at its own resolutions. |

Other choices of ours: decision epochs are event-driven (each arrival and completion;
`engine.decision_mode=slotted` gives the release's 0.1 s slots); heterogeneous clusters use per-server GPU speeds (the paper assumes but never models them; our speed ratios are illustrative); the quality curve is the paper's `q(S)` (which drops at S > 30); SLO = 5x the isolated latency at 20 steps; unfinished tasks count as SLO misses; percentiles are over finished tasks only.
"""  # noqa: E501


def write_report(
    report_dir: str | Path = "reports",
    results_root: str | Path | None = None,
    experiments: Iterable[str] | None = None,
    *,
    title: str = "eatbench: reproduction of EAT (arXiv 2507.10026)",
    curves_dir: str | Path | None = None,
) -> Path:
    """Build ``<report_dir>/REPORT.md`` and its figures from the result files under
    ``results_root`` (default ``<report_dir>/results``).

    :param experiments: only these experiment folders (default: all found).
    :param curves_dir: where training curves are (default: the shipped checkpoints).
    :returns: the path of ``REPORT.md``.
    """
    report_dir = Path(report_dir)
    root = Path(results_root) if results_root is not None else report_dir / "results"
    runs = agg_mod.load_runs(root, experiments)
    fig_dir = report_dir / "figures"
    lines = [f"# {title}", ""]
    lines += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {len(runs)} result files "
        f"under `{_rel(root, report_dir)}` "
        "(regenerate: `eatbench report` or `nox -s report`). Every number is a mean over seeds with the half-width "
        "of its 95% confidence interval (Student t); times are seconds.",
        "",
    ]
    if runs.empty:
        lines += ["**No result files found.** Run `pytest benchmarks` or `nox -s reproduce` first.", ""]
    names = sorted(runs["experiment"].unique(), key=lambda n: (_order(n), n)) if not runs.empty else []
    for name in names:
        sub = runs[runs["experiment"] == name]
        if base_experiment(name) == "ablations" and not any(
            str(s).startswith("eat") for s in sub["scheduler"].unique()
        ):
            lines += ["## Ablations of EAT (F8)", "", "No EAT variant could run (no checkpoints); F8 skipped.", ""]
            continue
        lines += _experiment_section(name, runs[runs["experiment"] == name], fig_dir, report_dir)
    lines += _headline_section(runs)
    lines += _training_section(Path(curves_dir) if curves_dir else agg_mod.CHECKPOINT_DIR, fig_dir, report_dir)
    lines += ["## Where our setting differs from the paper", "", PAPER_CLAIMS, "", DIFFERENCES, ""]
    lines += _provenance_section(runs)
    data_dir = report_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not runs.empty:
        runs.drop(columns=["path"]).to_csv(data_dir / "runs.csv", index=False)
    out = report_dir / "REPORT.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _order(name: str) -> int:
    base = base_experiment(name)
    return ORDER.index(base) if base in ORDER else len(ORDER)


def _rel(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def x_column(name: str, runs: pd.DataFrame) -> str:
    """The x axis of an experiment: its figure spec's, else whichever of rate/N varies."""
    specs = EXPERIMENTS.get(base_experiment(name))
    if specs:
        return specs[2][0].x
    return "n_servers" if runs["n_servers"].nunique() > 1 and runs["rate"].nunique() <= 1 else "rate"


def _experiment_section(name: str, runs: pd.DataFrame, fig_dir: Path, report_dir: Path) -> list[str]:
    from eatbench.report import plots

    title, desc, figures = EXPERIMENTS.get(
        base_experiment(name), (name, "", (FigureSpec("F", "Response time vs the swept setting"),))
    )
    x = x_column(name, runs)
    agg = aggregate_sorted(runs, x)
    seeds = sorted(runs["seed"].unique())
    lines = [f"## {title} — `{name}`", "", desc, ""]
    lines += [
        f"Schedulers: {', '.join(plots.label(s) for s in sorted(runs['scheduler'].unique()))}. "
        f"Seeds: {', '.join(str(s) for s in seeds)} ({len(runs)} runs). "
        f"Backend: {', '.join(runs['backend'].unique())}.",
        "",
    ]
    for spec in figures:
        png = fig_dir / f"{spec.fid.lower()}_{base_experiment(name)}.png"
        if spec.kind == "tradeoff":
            records = agg_mod.load_records(runs)
            if records.empty:
                continue
            plots.plot_tradeoff(records, png, f"{spec.fid}: {spec.caption}")
        else:
            plots.plot_metric_vs(agg, spec.x, spec.metrics, png, f"{spec.fid}: {spec.caption}", logx=spec.logx)
        lines += [f"### {spec.fid}: {spec.caption}", "", f"![{spec.fid}]({_rel(png, report_dir)})", ""]
    lines += [f"### Results table (`{name}`)", ""]
    lines += markdown_table(*results_rows(agg, x))
    lines += ["", _percentile_note(agg), ""]
    lines += _config_block(runs)
    return lines


def aggregate_sorted(runs: pd.DataFrame, x: str) -> pd.DataFrame:
    return agg_mod.aggregate(runs).sort_values(["scheduler", x]).reset_index(drop=True)


def results_rows(agg: pd.DataFrame, x: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the full results table (one row per scheduler and ``x``)."""
    from eatbench.report.plots import label

    metrics = [m for m in TABLE_METRICS if m in agg]
    headers = ["scheduler", x, *metrics, "tasks/seed (min)", "tasks pooled"]
    rows = []
    for _, r in agg.iterrows():
        cells = [label(r["scheduler"]), f"{r[x]:g}"]
        cells += [fmt_ci(r[m], r.get(f"{m}_ci95", math.nan), TABLE_METRICS[m]) for m in metrics]
        cells += [str(int(r["tasks_done_min"])), str(int(r["tasks_done_sum"]))]
        rows.append(cells)
    return headers, rows


def pivot_rows(agg: pd.DataFrame, metric: str, x: str) -> tuple[list[str], list[list[str]]]:
    """A compact table: schedulers as rows, ``x`` values as columns, ``metric`` mean ± CI."""
    from eatbench.report.plots import label

    xs = sorted(agg[x].unique())
    headers = [f"{metric} \\ {x}", *[f"{v:g}" for v in xs]]
    rows = []
    spec = TABLE_METRICS.get(metric, "{:.2f}")
    for sched, grp in agg.groupby("scheduler", sort=True):
        by_x = {r[x]: r for _, r in grp.iterrows()}
        rows.append(
            [label(sched)]
            + [fmt_ci(by_x[v][metric], by_x[v].get(f"{metric}_ci95", math.nan), spec) if v in by_x else "" for v in xs]
        )
    return headers, rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A fixed-width table for the terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*headers), fmt.format(*["-" * w for w in widths]), *(fmt.format(*r) for r in rows)]


def _percentile_note(agg: pd.DataFrame) -> str:
    lo, hi = int(agg["tasks_done_min"].min()), int(agg["tasks_done_sum"].max())
    return (
        "Percentiles (p50/p90/p99) are computed per seed over that seed's finished tasks and then averaged; "
        f"`tasks/seed (min)` is the fewest finished tasks behind one seed's percentile (here {lo} at least), "
        f"`tasks pooled` the finished tasks over all seeds of a point (up to {hi}). "
        "A p99 over fewer than 100 tasks is close to the maximum."
    )


def _config_block(runs: pd.DataFrame) -> list[str]:
    meta = agg_mod.load_meta(runs.iloc[0]["path"])
    cfg = dict(meta.get("config", {}))
    for key in ("seed", "output"):
        cfg.pop(key, None)
    varying = [c for c in ("scheduler", "rate", "n_servers", "seed") if runs[c].nunique() > 1]
    return [
        "<details><summary>Resolved config of one run (swept: " + ", ".join(varying) + ")</summary>",
        "",
        "```json",
        json.dumps(cfg, indent=1, default=str),
        "```",
        "</details>",
        "",
    ]


def headline_target(schedulers: Iterable[str]) -> str | None:
    """The scheduler T1 compares: EAT when its results exist."""
    return "eat" if "eat" in set(schedulers) else None


def _headline_section(runs: pd.DataFrame) -> list[str]:
    from eatbench.report.plots import label

    lines = ["## T1: response-time reduction of EAT vs each baseline", "", PAPER_CLAIMS, ""]
    exp = (
        next((n for n in sorted(runs["experiment"].unique()) if base_experiment(n) == "paper_rates"), None)
        if not runs.empty
        else None
    )
    if exp is None:
        return [*lines, "No `paper_rates` results.", ""]
    sub = runs[runs["experiment"] == exp]
    target = headline_target(sub["scheduler"])
    if target is None:
        return [
            *lines,
            "**EAT results are not available** (no trained checkpoint was found when the sweep ran), so this "
            "table cannot be filled yet. Train with `nox -s reproduce` (or `eatbench train scheduler=eat`) "
            "and regenerate.",
            "",
        ]
    red = agg_mod.reduction_table(sub, target)
    rates = sorted(red["rate"].unique())
    headers = ["baseline \\ rate", *[f"{r:g}" for r in rates], "max"]
    rows = []
    for base, grp in red.groupby("baseline", sort=True):
        by = {r["rate"]: r for _, r in grp.iterrows()}
        best = grp.loc[grp["reduction_pct"].idxmax()] if grp["reduction_pct"].notna().any() else None
        rows.append(
            [label(base)]
            + [fmt_ci(by[r]["reduction_pct"], by[r]["ci95"], "{:.1f}") + "%" if r in by else "" for r in rates]
            + [f"{best['reduction_pct']:.1f}% (rate {best['rate']:g})" if best is not None else "n/a"]
        )
    lines += [
        f"Reduction of mean response time, `100 * (1 - {target} / baseline)` per seed (paired: same task stream), "
        "mean ± 95% CI over seeds; positive = EAT faster.",
        "",
        *markdown_table(headers, rows),
        "",
    ]
    return lines


def _training_section(curves_dir: Path, fig_dir: Path, report_dir: Path) -> list[str]:
    from eatbench.report import plots

    lines = ["## F5: training curves", ""]
    curves = agg_mod.load_training_curves(curves_dir)
    if curves.empty:
        return [
            *lines,
            f"No training curves found under `{curves_dir}` (F5 skipped): train with `nox -s reproduce`.",
            "",
        ]
    png = plots.plot_training_curves(curves, fig_dir / "f5_training.png", "F5: evaluation return vs environment steps")
    seeds = curves.groupby("scheduler")["seed"].nunique()
    lines += [
        "Deterministic evaluation return (paper reward) vs environment steps; band = 95% CI over training seeds "
        f"({', '.join(f'{plots.label(s)}: {n}' for s, n in seeds.items())}).",
        "",
        f"![F5]({_rel(png, report_dir)})",
        "",
    ]
    return lines


def _provenance_section(runs: pd.DataFrame) -> list[str]:
    lines = ["## Provenance", ""]
    if runs.empty:
        return lines
    revs = sorted(runs["git_revision"].astype(str).unique())
    meta = agg_mod.load_meta(runs.iloc[-1]["path"])
    versions = meta.get("versions", {})
    lines += [
        f"Git revision(s) of the runs: {', '.join(f'`{r}`' for r in revs)}.",
        "",
        "Package versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
    ]
    if "machine" in meta:
        lines += [f"Machine: `{json.dumps(meta['machine'], default=str)}`", ""]
    lines += [
        "Every run's `summary.json` holds its full resolved config, seed, backend, git revision and versions; "
        "`data/runs.csv` lists all runs with their summary metrics.",
        "",
    ]
    return lines
