# ruff: noqa: E501  (prose tables: figure sources, metric definitions, differences)
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

from eatbench.core.metrics import CENSORING_NOTE
from eatbench.core.stats import MIN_SEEDS, N_RESAMPLES
from eatbench.report import aggregate as agg_mod
from eatbench.report.aggregate import TABLE_METRICS, base_experiment, fmt_ci
from eatbench.report.seeds import SEED_EXPERIMENT, seeds_section

#: the committed report's folder; it is only ever written from a clean tree.
COMMITTED_REPORT_DIR = Path(__file__).resolve().parents[2] / "reports"


class ReportError(RuntimeError):
    """The report cannot be written as asked (e.g. the committed report from a dirty tree)."""


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
    "heldout": (
        "Held-out clusters and loads (F9, ours)",
        "Clusters and loads fixed before training and outside the size-agnostic agents' training distribution "
        "(`conf/experiment/heldout.yaml`): 24 servers with an unseen GPU kind (heldout24) and 48 identical servers, "
        "Gamma bursts of CV 4 (training: CV <= 3) at 50% and 80% utilisation, 500 tasks; every scheduler on the "
        "same workload seeds.",
        (FigureSpec("F9", "Held-out clusters and loads", kind="points", metrics=("response_mean",)),),
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
    "oracle_gap": (
        "Distance from the clairvoyant optimum (oracle)",
        "The oracle (`scheduler=oracle`: an exact branch and bound, with OR-Tools CP-SAT where its search runs "
        "out of nodes) knows every arrival in advance and plans the whole episode at a fixed 20 steps, minimising "
        "the mean response time; its schedule is replayed through the engine like any scheduler's. It stops at a "
        "fixed amount of work, so its schedule is the best one found and its proven bound a lower bound on any "
        "schedule's mean response: the optimum lies between the two (they are equal where the proof closed). "
        "Beside it, every heuristic that runs the same fixed 20 steps, on the same task streams "
        "(paper4, the paper workload; the seeds are shared with `paper_rates`).",
        (
            FigureSpec(
                "O1", "Mean response of the fixed-step heuristics and the oracle's best schedule vs arrival rate"
            ),
        ),
    ),
    "authors": (
        "The authors' policies on our engine",
        "The EAT authors' own trained actors (EAT = `adsac`, DSAC, SAC; `EAT Simu/res_policy/2_0.05_0.05_4_10_[1, "
        "2, 4]` of github.com/zzf1955/EAT) run by eatbench's engine with the release's observation and action "
        "decoding (`scheduler=authors_eat|authors_dsac|authors_sac`), beside our EAT, DSAC and SAC and every "
        "heuristic. Every scheduler here runs in the release's decision timing (`engine.decision_mode=release`, "
        "reproduced launch for launch), paper4, the paper workload, paired by seed.",
        (
            FigureSpec(
                "A1",
                "The authors' policies: response time and quality vs arrival rate",
                metrics=("response_mean", "quality_mean"),
            ),
        ),
    ),
}
ORDER = list(EXPERIMENTS)

#: what each figure or table reproduces. The paper's body (its figure numbers) is not
#: available to us, only its abstract and its public release: the mapping names the claim
#: or released evaluation each one checks, or says that it is ours.
FIGURE_SOURCES = (
    (
        "F1",
        "The release's evaluation sweep (N=4, k in {1,2,4}, rate 0.01..0.11 tasks/s): response time. Checks the abstract's latency claim.",
    ),
    (
        "F2",
        "The same sweep: image quality q(S), the paper's quality curve (the latency-quality trade-off it optimises).",
    ),
    ("F3", "The same sweep: the release's reward per episode (what the agents are trained on)."),
    (
        "F4",
        "Ours: scalability in N at matched load (the paper evaluates N=4 only); learned schedulers are the size-agnostic agents (ours).",
    ),
    (
        "F5",
        "The paper's training of EAT, DSAC and SAC: evaluation return vs environment steps; and the size-agnostic agents (ours) over their training seeds.",
    ),
    (
        "T2",
        "Ours: robustness over training seeds (rliable's IQM and probability of improvement) on the held-out points.",
    ),
    (
        "F6",
        "Ours: heterogeneous GPUs and bursty arrivals (heterogeneity is the paper's premise; the release gives every server one speed).",
    ),
    ("F7", "The latency-quality trade-off: which step counts each scheduler chooses, at what response and quality."),
    (
        "F8",
        "Ablations in the spirit of the paper's baselines: EAT without diffusion (ours), DSAC = EAT without attention (the release's DSAC baseline).",
    ),
    (
        "F9",
        "Ours: held-out clusters and loads (not in the size-agnostic agents' training distribution), with the issue's target against EarliestFinish and Random.",
    ),
    (
        "T1",
        "The headline claim: EAT's response-time reduction against each baseline (up to 56% / 42% in the paper), paired by seed.",
    ),
)

METRIC_DEFINITIONS = """| metric | definition |
|---|---|
| response | finish - arrival, seconds. Tasks queued at t=0 arrive at t=0 and count. |
| wait | start - arrival, seconds. |
| response_mean, p50/p90/p99 | over **every arrived task** of a seed (unfinished ones censored, below), then the mean over seeds. |
| response_mean_done | the same over finished tasks only (labelled *finished only* wherever shown). |
| completion | finished / arrived tasks; tables show the lowest over a point's seeds; a `†` marks a point where some seed left tasks unfinished (ringed red in figures). |
| quality_mean | mean q(S) over arrived tasks, 0 for a task without an image. |
| SLO attainment | share of arrived tasks finished within their SLO (SLO = 5x the task's isolated latency at 20 steps on the cluster's most common GPU kind, ties broken by cluster order); unfinished tasks miss. |
| reward_total | the paper's reward summed over one episode's launches. |
| cold_start_rate | share of launched tasks that paid a model (re)load. |
| utilisation_mean | mean over servers of busy time / episode length. |
"""

PAPER_CLAIMS = (
    "The paper claims EAT reduces inference latency by **up to 56%** against its baselines (arXiv v1) "
    "and response time by **up to 42%** (journal version); neither names the baseline or load."
)

DIFFERENCES = """\
The paper's released code has known defects (listed in the project's design notes on the EAT model, `shared/docs/eat-model.md` in the steering repository); we do not copy them:

| # | The paper's release | What eatbench does instead |
|---|---|---|
| 1 | Training ignores the configured arrival rate (always 0.5 tasks/s). | Each training episode draws its rate uniformly from `train.rate_low..rate_high` (0.01..0.11); evaluation uses the configured rate. |
| 2 | Every training episode replays the same workload (reseeded on reset). | Every training episode draws a new workload seed; evaluation seeds are disjoint from training seeds. |
| 3 | Greedy's action slots are swapped: it always runs the maximum steps. | `greedy` is a real one-step look-ahead on the paper reward over (task, steps, k). |
| 4 | Observations are unnormalised and carry absolute time. | Times are relative to now and scaled; features are clipped (`eatbench/training/env.py`). |
| 5 | Steps are fractional in simulation, floored on the real system. | Steps are integers in [`engine.min_steps`, `engine.max_steps`] on both backends. |
| 6 | A single seed everywhere; no confidence intervals. | 30 evaluation seeds per point (paired: a seed is one task stream shared by every scheduler); 95% BCa bootstrap intervals over seeds; reductions and pairwise differences paired by seed. |
| 7 | The real system renders 1440x1440 while the simulator assumes 512x512. | The sim uses the profile measured at 1440x1440 and tasks are 1440x1440; the GPU backend uses measured profiles at its own resolutions. |

Other choices of ours: decision epochs are event-driven (each arrival and completion;
`engine.decision_mode=slotted` gives the release's 0.1 s slots); heterogeneous clusters use per-server GPU speeds (the paper assumes but never models them; our speed ratios are illustrative); the quality curve is the paper's `q(S)` (which drops at S > 30); SLO = 5x the isolated latency at 20 steps; every arrived task counts: unfinished tasks are censored at the episode end (see *Metrics*) and count as SLO misses.
"""


def write_report(
    report_dir: str | Path = "reports",
    results_root: str | Path | None = None,
    experiments: Iterable[str] | None = None,
    *,
    title: str = "eatbench: reproduction of EAT (arXiv 2507.10026)",
    curves_dir: str | Path | None = None,
    allow_dirty: bool = False,
) -> Path:
    """Build ``<report_dir>/REPORT.md`` and its figures from the result files under
    ``results_root`` (default ``<report_dir>/results``).

    :param experiments: only these experiment folders (default: all found).
    :param curves_dir: where training curves are (default: the shipped checkpoints).
    :param allow_dirty: write the committed report (``reports/`` of this repository) even
        from a tree with uncommitted changes; its first line then says so.
    :returns: the path of ``REPORT.md``.
    :raises ReportError: the committed report from a dirty tree without ``allow_dirty``.
    """
    from eatbench.core.provenance import git_revision

    report_dir = Path(report_dir)
    revision = git_revision()
    dirty = revision.endswith("-dirty") or revision == "unknown"
    if dirty and not allow_dirty and report_dir.resolve() == COMMITTED_REPORT_DIR.resolve():
        raise ReportError(
            f"refusing to write the committed report {report_dir}/REPORT.md from a working tree with "
            f"uncommitted changes (revision {revision}): commit first, or allow it (`eatbench report "
            "+allow_dirty=true`, `pytest benchmarks --eat-allow-dirty`; the report then says so on its first line), "
            "or write it elsewhere (`output.root=DIR/results`, `--eat-report=DIR`)"
        )
    root = Path(results_root) if results_root is not None else report_dir / "results"
    runs = agg_mod.load_runs(root, experiments)
    fig_dir = report_dir / "figures"
    lines: list[str] = []
    if dirty:
        lines += [
            f"> **Built from a working tree with uncommitted changes (revision `{revision}`)**: these numbers "
            "are not tied to a commit and must not be cited as a result.",
            "",
        ]
    lines += [f"# {title}", ""]
    run_revs = sorted(runs["git_revision"].astype(str).unique()) if not runs.empty else []
    lines += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} at revision `{revision}` from {len(runs)} result "
        f"files under `{_rel(root, report_dir)}` (regenerate: `eatbench report` or `nox -s report`). "
        f"Runs made at revision(s): {', '.join(f'`{r}`' for r in run_revs) or 'none'}. "
        "Every number is a mean over evaluation seeds with its 95% bootstrap interval `[low, high]` "
        f"(BCa, {N_RESAMPLES} resamples, over seeds; none under {MIN_SEEDS} seeds; clipped to the metric's "
        "range); times are seconds.",
        "",
    ]
    if any(r.endswith("-dirty") for r in run_revs):
        lines += ["> Some runs were made from a working tree with uncommitted changes (`-dirty` above).", ""]
    lines += _learned_provenance_note(runs)
    lines += ["## What each figure reproduces", ""]
    lines += markdown_table(["id", "what it reproduces or adds"], [list(r) for r in FIGURE_SOURCES])
    lines += ["", "## Metrics", "", CENSORING_NOTE, "", METRIC_DEFINITIONS, ""]
    if runs.empty:
        lines += ["**No result files found.** Run `pytest benchmarks` or `nox -s reproduce` first.", ""]
    runs = runs[runs["experiment"] != SEED_EXPERIMENT]  # the training-seed evaluation: its own section (T2)
    names = sorted(runs["experiment"].unique(), key=lambda n: (_order(n), n)) if not runs.empty else []
    for name in names:
        sub = runs[runs["experiment"] == name]
        if base_experiment(name) == "ablations" and not any(
            str(s).startswith("eat") for s in sub["scheduler"].unique()
        ):
            lines += ["## Ablations of EAT (F8)", "", "No EAT variant could run (no checkpoints); F8 skipped.", ""]
            continue
        lines += _experiment_section(name, sub, fig_dir, report_dir, root, oracle_reference(runs, name))
    lines += _headline_section(runs)
    lines += _training_section(Path(curves_dir) if curves_dir else agg_mod.CHECKPOINT_DIR, fig_dir, report_dir)
    lines += seeds_section(root)
    lines += ["## Where our setting differs from the paper", "", PAPER_CLAIMS, "", DIFFERENCES, ""]
    lines += _provenance_section(runs)
    data_dir = report_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not runs.empty:
        runs.drop(columns=["path"]).to_csv(data_dir / "runs.csv", index=False)
    out = report_dir / "REPORT.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out


def _learned_provenance_note(runs: pd.DataFrame) -> list[str]:
    """Say where the shipped checkpoints of the learned schedulers in ``runs`` come from."""
    if runs.empty:
        return []
    from eatbench.report.plots import label

    parts, dirty = [], []
    scheds = sorted(runs["scheduler"].unique())
    ours = _set_provenance_note([s for s in scheds if str(s).endswith("_set")])
    for sched in [s for s in scheds if not str(s).endswith("_set")]:
        revs = []
        for path in sorted(agg_mod.CHECKPOINT_DIR.glob(f"{sched}-*.json")):
            try:
                rev = str(json.loads(path.read_text()).get("git_revision", ""))
            except (OSError, ValueError):
                continue
            revs.append(f"{path.stem}: `{rev[:12]}{'-dirty' if rev.endswith('-dirty') else ''}`")
            if rev.endswith("-dirty"):
                dirty.append(path.stem)
        if revs:
            parts.append(f"{label(sched)} ({', '.join(revs)})")
    if not parts:
        return ours
    if dirty:
        return ours + [
            "> **Learned schedulers (paper layout): one training seed each; some trained from uncommitted "
            "working trees.** Checkpoints: " + "; ".join(parts) + f". From uncommitted trees: {', '.join(dirty)}. "
            "Their numbers are shown for continuity, not as a verdict on the learned schedulers.",
            "",
        ]
    return ours + [
        "> **Learned schedulers (paper layout): one training seed each** (the 5-seed study is the size-agnostic "
        "agents', T2), every checkpoint trained from a committed revision: " + "; ".join(parts) + ". Budgets and "
        "commands are in each checkpoint's `.json` sidecar.",
        "",
    ]


def _set_provenance_note(scheds: list[str]) -> list[str]:
    """Where the size-agnostic agents' (ours) checkpoints come from: the shipped one is training
    seed 0 of those under ``seeds/``; their sidecars' revisions."""
    from eatbench.report.plots import label

    parts = []
    for sched in scheds:
        revs: dict[int, str] = {}
        for path in sorted((agg_mod.CHECKPOINT_DIR / agg_mod.SEEDS_SUBDIR).glob(f"{sched}-any-seed*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            revs[int(info.get("seed", -1))] = str(info.get("git_revision", ""))[:12]
        if revs:
            rev_text = ", ".join(f"`{r}`" for r in sorted(set(revs.values())))
            parts.append(f"{label(sched)}: {len(revs)} training seed(s) (revision {rev_text})")
    if not parts:
        return []
    return [
        "> Size-agnostic agents (ours): the shipped checkpoint (`<arch>-any.pt`, used in the figures) is training "
        "seed 0; every training seed is in `eatbench/data/checkpoints/seeds/` (T2). " + "; ".join(parts) + ".",
        "",
    ]


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


def _experiment_section(
    name: str, runs: pd.DataFrame, fig_dir: Path, report_dir: Path, root: Path, reference: pd.DataFrame | None = None
) -> list[str]:
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
        f"Seeds: {_seed_text(seeds)} ({len(runs)} runs). "
        f"Backend: {', '.join(runs['backend'].unique())}.",
        "",
    ]
    lines += _absent_lines(name, runs, root)
    lines += _unfinished_lines(agg, x)
    for spec in figures:
        png = fig_dir / f"{spec.fid.lower()}_{base_experiment(name)}.png"
        if spec.kind == "points":  # F9: drawn with its tables (eatbench.report.heldout)
            continue
        if spec.kind == "tradeoff":
            records = agg_mod.load_records(runs)
            if records.empty:
                continue
            plots.plot_tradeoff(records, png, f"{spec.fid}: {spec.caption}")
        else:
            plots.plot_metric_vs(
                agg, spec.x, spec.metrics, png, f"{spec.fid}: {spec.caption}", logx=spec.logx, reference=reference
            )
        lines += [f"### {spec.fid}: {spec.caption}", "", f"![{spec.fid}]({_rel(png, report_dir)})", ""]
    if base_experiment(name) == "heldout":
        from eatbench.report.heldout import heldout_lines

        lines += heldout_lines(runs, fig_dir, report_dir)
    if base_experiment(name) == "authors":
        lines += _authors_lines(runs)
    if base_experiment(name) == "oracle_gap":
        lines += _oracle_lines(runs)
    lines += [f"### Results table (`{name}`)", ""]
    lines += markdown_table(*results_rows(agg, x))
    lines += ["", _percentile_note(agg), ""]
    lines += _config_block(runs)
    return lines


def _seed_text(seeds: Sequence[int]) -> str:
    seeds = [int(s) for s in seeds]
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _absent_lines(name: str, runs: pd.DataFrame, root: Path) -> list[str]:
    """Why schedulers the experiment lists have no results (from the sweep's ``skipped.json``)."""
    from eatbench.report.plots import label

    path = root / name / "skipped.json"
    if not path.is_file():
        return []
    try:
        skipped = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    present = set(runs["scheduler"])
    rows = [f"- {label(s)}: {why}" for s, why in sorted(skipped.items()) if s not in present]
    return ["Schedulers the experiment lists but that have no results here, and why:", "", *rows, ""] if rows else []


def _unfinished_lines(agg: pd.DataFrame, x: str) -> list[str]:
    from eatbench.report.plots import label

    bad = agg[agg["completion_min"] < 1.0]
    if bad.empty:
        return ["Every scheduler finished every arrived task at every point.", ""]
    items = [
        f"{label(r['scheduler'])} at {x}={r[x]:g} ({int(r['unfinished_sum'])} tasks over {int(r['seeds'])} seeds, "
        f"lowest completion {r['completion_min']:.0%})"
        for _, r in bad.iterrows()
    ]
    return [
        "**Tasks left unfinished** (censored at the episode end in every statistic, marked `†` in tables and "
        "ringed in figures): " + "; ".join(items) + ".",
        "",
    ]


def aggregate_sorted(runs: pd.DataFrame, x: str) -> pd.DataFrame:
    return agg_mod.aggregate(runs).sort_values(["scheduler", x]).reset_index(drop=True)


def _cell(r: pd.Series, metric: str, spec: str) -> str:
    text = fmt_ci(r[metric], r.get(f"{metric}_lo", math.nan), r.get(f"{metric}_hi", math.nan), spec)
    return text + (" †" if r.get("completion_min", 1.0) < 1.0 else "")


def results_rows(agg: pd.DataFrame, x: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the full results table (one row per scheduler and ``x``)."""
    from eatbench.report.plots import label

    metrics = [m for m in TABLE_METRICS if m in agg]
    headers = ["scheduler", x, *metrics, "completion (min)", "tasks/seed (min)", "tasks pooled"]
    rows = []
    for _, r in agg.iterrows():
        cells = [label(r["scheduler"]), f"{r[x]:g}"]
        cells += [_cell(r, m, TABLE_METRICS[m]) for m in metrics]
        cells += [f"{r['completion_min']:.0%}", str(int(r["tasks_min"])), str(int(r["tasks_sum"]))]
        rows.append(cells)
    return headers, rows


def pivot_rows(agg: pd.DataFrame, metric: str, x: str) -> tuple[list[str], list[list[str]]]:
    """A compact table: schedulers as rows, ``x`` values as columns, ``metric`` mean [interval]."""
    from eatbench.report.plots import label

    xs = sorted(agg[x].unique())
    headers = [f"{metric} \\ {x}", *[f"{v:g}" for v in xs]]
    rows = []
    spec = TABLE_METRICS.get(metric, "{:.2f}")
    for sched, grp in agg.groupby("scheduler", sort=True):
        by_x = {r[x]: r for _, r in grp.iterrows()}
        rows.append([label(sched)] + [_cell(by_x[v], metric, spec) if v in by_x else "" for v in xs])
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
    lo, hi = int(agg["tasks_min"].min()), int(agg["tasks_sum"].max())
    return (
        "Percentiles (p50/p90/p99) are computed per seed over that seed's arrived tasks (unfinished ones "
        "censored) and then averaged over seeds; "
        f"`tasks/seed (min)` is the fewest tasks behind one seed's percentile (here {lo} at least), "
        f"`tasks pooled` the tasks over all seeds of a point (up to {hi}). "
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

    lines = [
        "## T1: response-time reduction of EAT vs each baseline, and every pairwise comparison",
        "",
        PAPER_CLAIMS,
        "",
    ]
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
        lines += [
            "**EAT results are not available** (no trained checkpoint was found when the sweep ran), so the "
            "EAT-vs-baseline table cannot be filled. Train with `nox -s reproduce` (or `eatbench train "
            "scheduler=eat`) and regenerate.",
            "",
        ]
    else:
        red = agg_mod.reduction_table(sub, target)
        rates = sorted(red["rate"].unique())
        headers = ["baseline \\ rate", *[f"{r:g}" for r in rates]]
        rows, verdicts = [], []
        for base, grp in red.groupby("baseline", sort=True):
            by = {r["rate"]: r for _, r in grp.iterrows()}
            rows.append(
                [label(base)]
                + [
                    fmt_ci(by[r]["reduction_pct"], by[r]["low"], by[r]["high"], "{:.1f}")
                    + ("*" if by[r]["separated"] else "")
                    if r in by
                    else ""
                    for r in rates
                ]
            )
            verdicts.append(_verdict(label(target), label(base), grp))
        lines += [
            f"Reduction of mean response time (every arrived task, censored), `100 * (1 - mean({target}) / "
            "mean(baseline))` over the seeds both ran (paired: one seed is one task stream), with a paired 95% "
            "bootstrap interval; positive = EAT faster; `*` = separated at 95% (the interval excludes 0).",
            "",
            *markdown_table(headers, rows),
            "",
            "Headline verdicts (the paper claims up to 56% / 42%):",
            "",
            *verdicts,
            "",
        ]
    lines += _pairwise_lines(sub)
    lines += _oracle_distance_lines(sub, runs)
    return lines


def _reduction_cell(r: pd.Series) -> str:
    return fmt_ci(r["reduction_pct"], r["low"], r["high"], "{:.1f}") + ("*" if r["separated"] else "")


def _verdict(target: str, base: str, grp: pd.DataFrame) -> str:
    """One sentence: the largest resolved reduction of ``target`` against ``base``, or none."""
    sep = grp[grp["separated"]]
    better = sep[sep["reduction_pct"] > 0]
    worse = sep[sep["reduction_pct"] < 0]
    unresolved = len(grp) - len(sep)
    parts = []
    if not better.empty:
        b = better.loc[better["reduction_pct"].idxmax()]
        parts.append(
            f"faster at {len(better)} rate(s), at most {b['reduction_pct']:.1f}% "
            f"[{b['low']:.1f}, {b['high']:.1f}] (rate {b['rate']:g})"
        )
    if not worse.empty:
        w = worse.loc[worse["reduction_pct"].idxmin()]
        parts.append(
            f"slower at {len(worse)} rate(s), by up to {-w['reduction_pct']:.1f}% "
            f"[{-w['high']:.1f}, {-w['low']:.1f}] (rate {w['rate']:g})"
        )
    parts.append(f"not separated at {unresolved} rate(s)")
    return f"- {target} vs {base}: " + "; ".join(parts) + "."


def _pairwise_lines(sub: pd.DataFrame) -> list[str]:
    """Every scheduler against every other at each rate (mean response, paired differences)."""
    from eatbench.report.plots import label

    pw = agg_mod.pairwise_table(sub)
    if pw.empty:
        return []
    scheds = sorted(sub["scheduler"].unique())
    lines = [
        "### T1b: every scheduler against every other (paired)",
        "",
        "Cell = mean over shared seeds of (row's mean response - column's), seconds; `*` = separated at 95% "
        "(paired bootstrap interval excludes 0); negative = the row scheduler is faster.",
        "",
    ]
    for rate, grp in pw.groupby("rate", sort=True):
        cell = {(r["scheduler"], r["other"]): r for _, r in grp.iterrows()}
        headers = [f"rate {rate:g}", *[label(s) for s in scheds]]
        rows = []
        for a in scheds:
            row = [label(a)]
            for b in scheds:
                r = cell.get((a, b))
                row.append("" if r is None else f"{r['diff']:+.1f}" + ("*" if r["separated"] else ""))
            rows.append(row)
        lines += [*markdown_table(headers, rows), ""]
    return lines


ORACLE_EXPERIMENT = "oracle_gap"


def _oracle_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The oracle's runs of the ``oracle_gap`` experiment (its own results if ``runs`` hold
    several variants of it)."""
    if runs.empty:
        return runs
    sel = runs[(runs["experiment"].map(base_experiment) == ORACLE_EXPERIMENT) & (runs["scheduler"] == "oracle")]
    if (sel["experiment"] == ORACLE_EXPERIMENT).any():
        sel = sel[sel["experiment"] == ORACLE_EXPERIMENT]
    elif sel["experiment"].nunique() > 1:
        sel = sel[sel["experiment"] == sorted(sel["experiment"].unique())[0]]
    return sel if "oracle_bound" in sel else sel.iloc[0:0]


def oracle_reference(runs: pd.DataFrame, name: str) -> pd.DataFrame | None:
    """The oracle's mean over its seeds at each rate (and its bound), drawn as a reference
    line in the paper-sweep figures; ``None`` when there are no oracle results."""
    if base_experiment(name) not in ("paper_rates", ORACLE_EXPERIMENT):
        return None
    orc = _oracle_runs(runs)
    if orc.empty:
        return None
    ref = orc.groupby("rate", as_index=False).mean(numeric_only=True)
    ref["seeds"] = orc.groupby("rate")["seed"].nunique().to_numpy()
    return ref


def oracle_distance(sub: pd.DataFrame, orc: pd.DataFrame, x: str = "rate") -> pd.DataFrame:
    """Each scheduler's distance (s) from the oracle on the seeds both ran, at each ``x``:
    ``to_best`` = mean response - the oracle's best schedule (the distance from the optimum is
    at least this when positive), ``to_bound`` = mean response - the proven bound (the distance
    is at most this)."""
    rows = []
    o = orc.set_index([x, "seed"])
    for (sched, xv), grp in sub[sub["scheduler"] != "oracle"].groupby(["scheduler", x], sort=True):
        pairs = [(r["response_mean"], o.loc[(xv, r["seed"])]) for _, r in grp.iterrows() if (xv, r["seed"]) in o.index]
        if not pairs:
            continue
        resp = sum(p[0] for p in pairs) / len(pairs)
        best = sum(float(p[1]["response_mean"]) for p in pairs) / len(pairs)
        bound = sum(float(p[1]["oracle_bound"]) for p in pairs) / len(pairs)
        rows.append(
            {
                "scheduler": sched,
                x: xv,
                "seeds": len(pairs),
                "response": resp,
                "to_best": resp - best,
                "to_bound": resp - bound,
            }
        )
    return pd.DataFrame(rows, columns=["scheduler", x, "seeds", "response", "to_best", "to_bound"])


def _oracle_table(dist: pd.DataFrame, orc: pd.DataFrame) -> list[str]:
    from eatbench.report.plots import label

    rates = sorted(set(dist["rate"]) | set(orc["rate"]))
    ref = orc.groupby("rate")
    headers = ["scheduler \\ rate", *[f"{r:g}" for r in rates]]
    censored = _oracle_censored_rates(orc)
    rows = [
        ["Oracle: best found [proven bound], gap"]
        + [
            f"{ref.get_group(r)['response_mean'].mean():.1f} [{ref.get_group(r)['oracle_bound'].mean():.1f}], "
            f"{ref.get_group(r)['oracle_gap'].mean():.0%}" + (" †" if r in censored else "")
            if r in ref.groups
            else ""
            for r in rates
        ]
    ]
    for sched, grp in dist.groupby("scheduler", sort=True):
        by = {r["rate"]: r for _, r in grp.iterrows()}
        rows.append(
            [label(sched)] + [f"{by[r]['to_best']:+.1f} [{by[r]['to_bound']:+.1f}]" if r in by else "" for r in rates]
        )
    return markdown_table(headers, rows)


def _oracle_censored_rates(orc: pd.DataFrame) -> set[float]:
    """Rates where an oracle episode left tasks unfinished at the episode end."""
    if "tasks_unfinished" not in orc:
        return set()
    return set(orc.loc[orc["tasks_unfinished"] > 0, "rate"])


def _censoring_note(orc: pd.DataFrame) -> str:
    """Why the bound may exceed the best schedule's mean response (the `†` cells)."""
    rates = sorted(_oracle_censored_rates(orc))
    if not rates:
        return ""
    return (
        f" `†` (rate {', '.join(f'{r:g}' for r in rates)}): an oracle episode there leaves a task unfinished at the "
        "episode end; the mean response (of every scheduler) censors it at the end, while the oracle's objective "
        "and bound count it in full, so there the bound can exceed the censored best."
    )


def _oracle_lines(runs: pd.DataFrame) -> list[str]:
    orc = _oracle_runs(runs)
    if orc.empty:
        return [
            "No oracle results (install `eatbench[oracle]` and run `python -m eatbench.experiment.sweep oracle_gap`).",
            "",
        ]
    dist = oracle_distance(runs, orc)
    optimal = int(orc["oracle_optimal"].sum()) if "oracle_optimal" in orc else 0
    return [
        "### O1b: headroom of every fixed-step heuristic",
        "",
        "Cell = the scheduler's mean response minus the oracle's best schedule, and `[minus the oracle's proven "
        "bound]`, seconds, over the seeds both ran. The true distance from the optimum lies between the two. The "
        f"oracle's proof closed on {optimal} of {len(orc)} episodes; `gap` = (best - bound) / best."
        + _censoring_note(orc),
        "",
        *_oracle_table(dist, orc),
        "",
    ]


def _oracle_distance_lines(sub: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """T1c: every paper_rates scheduler against the oracle, on the seeds they share."""
    orc = _oracle_runs(runs)
    if orc.empty:
        return [
            "### T1c: distance from the clairvoyant optimum",
            "",
            "No oracle results: run `python -m eatbench.experiment.sweep oracle_gap` (needs `eatbench[oracle]`; about a "
            "second of one core per paper episode) and regenerate.",
            "",
        ]
    dist = oracle_distance(sub, orc)
    seeds = sorted(orc["seed"].unique())
    return [
        "### T1c: distance from the clairvoyant optimum",
        "",
        f"Every scheduler of the paper sweep on the seeds it shares with the oracle ({_seed_text(seeds)}): mean "
        "response minus the oracle's best schedule `[minus its proven bound]`, seconds. The oracle runs a fixed 20 "
        "steps; a scheduler that chooses fewer steps can be faster than it. Small samples: no intervals."
        + _censoring_note(orc),
        "",
        *_oracle_table(dist, orc),
        "",
    ]


AUTHORS = ("authors_eat", "authors_dsac", "authors_sac")
OURS_FOR_AUTHORS = {"authors_eat": "eat", "authors_dsac": "dsac", "authors_sac": "sac"}
AUTHORS_HOWTO = (
    "To produce it: fetch the release (github.com/zzf1955/EAT), put `adsac_policy.pth`, `dsac_policy.pth` and "
    "`sac_policy.pth` from `EAT Simu/res_policy/2_0.05_0.05_4_10_[1, 2, 4]/` in one folder, then "
    "`EATBENCH_EAT_RELEASE=<folder> python -m eatbench.experiment.sweep authors --jobs 2` and `eatbench report` "
    '(README, "The authors\' policies").'
)


def _authors_lines(runs: pd.DataFrame) -> list[str]:
    from eatbench.report.plots import label

    present = [a for a in AUTHORS if a in set(runs["scheduler"])]
    if not present:
        return [
            "**The authors' files were not found when this sweep ran**, so only our schedulers are shown. "
            + AUTHORS_HOWTO,
            "",
        ]
    lines = ["### The authors' files", ""]
    for a in present:
        meta = agg_mod.load_meta(runs[runs["scheduler"] == a].iloc[0]["path"])
        prov = meta.get("scheduler_provenance", {})
        lines.append(
            f"- {label(a)}: `{Path(str(prov.get('checkpoint', '?'))).name}`, "
            f"SHA-256 `{prov.get('checkpoint_sha256', '?')}` (from {prov.get('release', 'the release')}, "
            f"`{prov.get('release_file', '?')}`)"
        )
    lines += ["", "### A1b: paired comparisons", ""]
    lines += [
        "Reduction of mean response time (every arrived task, censored) of the row's first scheduler against the "
        "second, `100 * (1 - mean(a) / mean(b))` over shared seeds with a paired 95% bootstrap interval; "
        "positive = the authors' policy is faster; `*` = separated at 95%.",
        "",
    ]
    rates = sorted(runs["rate"].unique())
    rows, verdicts = [], []
    for a in present:
        red = agg_mod.reduction_table(runs, a)
        for base in (OURS_FOR_AUTHORS[a], "earliest_finish", "greedy", "random"):
            grp = red[red["baseline"] == base]
            if grp.empty:
                continue
            by = {r["rate"]: r for _, r in grp.iterrows()}
            rows.append([f"{label(a)} vs {label(base)}"] + [_reduction_cell(by[r]) if r in by else "" for r in rates])
            verdicts.append(_verdict(label(a), label(base), grp))
    lines += markdown_table(["comparison \\ rate", *[f"{r:g}" for r in rates]], rows)
    lines += ["", "What follows for the paper's claim (computed from the table above):", "", *verdicts, ""]
    return lines


def _training_section(curves_dir: Path, fig_dir: Path, report_dir: Path) -> list[str]:
    """F5: the size-agnostic agents (ours; a band over their training seeds; return and mean
    response) and the fixed-layout agents (the paper's layout) in a separate figure."""
    from eatbench.report import plots

    lines = ["## F5: training curves", ""]
    curves = agg_mod.load_training_curves(curves_dir)
    if curves.empty:
        return [
            *lines,
            f"No training curves found under `{curves_dir}` (F5 skipped): train with `nox -s reproduce`.",
            "",
        ]
    ours = curves["scheduler"].astype(str).str.endswith("_set")
    for sub, name, what, cols in (
        (curves[ours], "f5_training_set.png", "size-agnostic agents (ours)", agg_mod.CURVE_COLUMNS),
        (curves[~ours], "f5_training.png", "fixed-layout agents (the paper's layout)", ("eval_return",)),
    ):
        if sub.empty:
            lines += [f"No training curves of the {what}.", ""]
            continue
        png = plots.plot_training_curves(sub, fig_dir / name, f"F5: {what}, evaluation vs environment steps", cols)
        seeds = sub.groupby("scheduler")["seed"].nunique()
        shown = " and mean response (s)" if len(cols) > 1 else ""
        lines += [
            f"**{what[0].upper() + what[1:]}**: deterministic evaluation return (paper reward){shown} vs environment "
            "steps; line = mean over training seeds, band = its 95% bootstrap interval (none under 3 seeds) "
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
