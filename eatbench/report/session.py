"""The state of one ``pytest benchmarks`` session (the plugin keeps it in ``config.stash``).

``EatbenchSession`` runs sweeps on demand (each experiment once per session; finished jobs
are reused from their result files), remembers single runs of the ``run_experiment``
fixture, and at the end writes the markdown report and W&B runs and prints metric tables.
Heavy modules (pandas, matplotlib, wandb) are imported only when used.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from eatbench.experiment.runner import RunResult
    from eatbench.experiment.sweep import SweepResult

#: metrics of the terminal summary: (title, metric).
SUMMARY_METRICS = (
    ("mean response time (s)", "response_mean"),
    ("p50 response time (s)", "response_p50"),
    ("p90 response time (s)", "response_p90"),
    ("p99 response time (s)", "response_p99"),
    ("mean quality q(S)", "quality_mean"),
    ("SLO attainment", "slo_attainment"),
)


@dataclass(frozen=True)
class SessionOptions:
    """What the command line asked for (see ``eatbench.plugin.add_eatbench_options``)."""

    backend: str = "sim"
    experiment: str = "paper_rates"
    overrides: tuple[str, ...] = ()
    seeds: int = 30
    report_dir: Path = Path("reports")
    wandb: str = "offline"
    quick: bool = False
    allow_dirty: bool = False
    schedulers: tuple[str, ...] = ()  # --eat-scheduler: added to every sweep's own schedulers
    jobs: int = 2  # sweep worker processes (the same result files whatever the number)


@dataclass
class SweepRecord:
    """A sweep run in this session, with its wall time (seconds)."""

    result: SweepResult
    wall_s: float


@dataclass
class EatbenchSession:
    """Sweeps and runs of one pytest session, and what to report at its end."""

    options: SessionOptions
    sweeps: dict[str, SweepRecord] = field(default_factory=dict)
    runs: list[tuple[str, RunResult]] = field(default_factory=list)
    report_path: Path | None = None
    wandb_note: str = ""
    errors: list[str] = field(default_factory=list)
    #: ``(total runs, experiment) -> bar`` (``update``, ``set_postfix_str``, ``close``) showing a
    #: sweep's progress (the plugin's, through pytest's terminal); ``None``: no progress shown.
    progress: Any = None
    #: called with ``(name, SweepRecord)`` when a sweep of this session finishes.
    on_sweep: Any = None
    #: each sweep's result by (experiment, overrides); ``sweeps`` merges those of one result set
    sweep_results: dict[tuple, SweepResult] = field(default_factory=dict)

    def seed_count(self) -> int:
        """The number of seeds per point this session's sweeps use."""
        from eatbench.experiment.sweep import QUICK_SEEDS

        return min(self.options.seeds, QUICK_SEEDS) if self.options.quick else self.options.seeds

    @property
    def results_root(self) -> Path:
        return self.options.report_dir / "results"

    def overrides(self, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Hydra overrides for every config of the session: the backend (if not sim), the
        ``--eat-override`` values, then ``extra``."""
        backend = [] if self.options.backend == "sim" else [f"backend={self.options.backend}"]
        return [*backend, *self.options.overrides, *extra]

    def sweep(self, experiment: str | None = None, extra: tuple[str, ...] = ()) -> SweepResult:
        """Run (or reuse) the sweep of ``experiment`` (default: ``--eat-experiment``)."""
        from eatbench.experiment.sweep import run_sweep, swept_keys, variant_name

        experiment = experiment or self.options.experiment
        overrides = self.overrides(extra)
        key = variant_name(experiment, overrides, swept_keys(experiment))
        # sweeps differing only in their schedulers or seeds share one result set (``key``)
        done = (experiment, tuple(sorted(overrides)))
        if done not in self.sweep_results:
            t0 = time.perf_counter()
            result = run_sweep(
                experiment,
                overrides,
                root=self.results_root,
                seeds=self.options.seeds,
                quick=self.options.quick,
                progress=self.progress or False,
                schedulers=self.options.schedulers,
                jobs=self.options.jobs,
            )
            record = SweepRecord(result, time.perf_counter() - t0)
            self.sweep_results[done] = result
            self.sweeps[key] = _merged(self.sweeps.get(key), record)
            if self.on_sweep is not None:
                self.on_sweep(key, record)
        return self.sweep_results[done]

    def table(self, name: str) -> pd.DataFrame:
        """The per-run table (``aggregate.load_runs``) of a sweep of this session."""
        from eatbench.report.aggregate import load_runs

        return load_runs(self.results_root, [name])

    # -- end of session -------------------------------------------------------------------
    def finish(self) -> None:
        """Write ``REPORT.md`` and W&B runs for the sweeps of this session (never raises)."""
        if not self.sweeps:
            return
        names = list(self.sweeps)
        try:
            from eatbench.report.markdown import write_report

            self.report_path = write_report(
                self.options.report_dir, self.results_root, names, allow_dirty=self.options.allow_dirty
            )
        except Exception as err:  # a report failure must not hide the benchmark results
            self.errors.append(f"report: {type(err).__name__}: {err}")
        if self.options.wandb != "disabled":
            from eatbench.report.wandb_log import log_experiments

            try:
                logged = log_experiments(
                    self.results_root,
                    names,
                    mode=self.options.wandb,
                    wandb_dir=self.options.report_dir,
                    figures_dir=self.options.report_dir / "figures",
                )
                self.wandb_note = f"W&B ({self.options.wandb}): {logged.runs} runs under {logged.wandb_dir}" + (
                    f"; {len(logged.errors)} W&B errors (local JSONL kept): {logged.errors[0]}" if logged.errors else ""
                )
            except Exception as err:
                warnings.warn(f"eatbench: W&B logging failed ({err}); local results are complete", stacklevel=1)
                self.errors.append(f"wandb: {err}")

    def summary_lines(self) -> list[str]:
        """The terminal summary: per sweep, metric tables (schedulers x swept value)."""
        from eatbench.report.aggregate import aggregate, base_experiment
        from eatbench.report.markdown import pivot_rows, text_table, x_column
        from eatbench.report.plots import label

        lines: list[str] = []
        for name, rec in self.sweeps.items():
            res = rec.result
            runs = self.table(name)
            if runs.empty:
                continue
            x = x_column(name, runs)
            agg = aggregate(runs)
            seeds = sorted(int(s) for s in runs["seed"].unique())
            lines.append(
                f"{name} ({base_experiment(name)}): {len(res.results)} runs ({res.reused} reused) "
                f"in {rec.wall_s:.1f} s; "
                f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); mean [95% bootstrap interval] over seeds; "
                f"every arrived task counts (unfinished censored); tasks per seed: "
                f"{int(agg['tasks_min'].min())}..{int(agg['tasks_min'].max())}"
            )
            for why in res.skipped.items():
                lines.append(f"  skipped {label(why[0])}: {why[1]}")
            for _, r in agg[agg["completion_min"] < 1].iterrows():
                lines.append(
                    f"  unfinished: {label(r['scheduler'])} at {x}={r[x]:g} left {int(r['unfinished_sum'])} tasks "
                    f"(lowest completion {r['completion_min']:.0%})"
                )
            for title, metric in SUMMARY_METRICS:
                lines.append(f"  {title}")
                lines += ["    " + row for row in text_table(*pivot_rows(agg, metric, x))]
            lines.append("")
        if self.runs:
            lines.append("single runs (run_experiment fixture):")
            headers = ["test", "scheduler", "seed", "done/tasks", "resp mean", "resp p90", "quality", "SLO"]
            rows = [
                [
                    test,
                    r.config.scheduler.name,
                    str(r.config.seed),
                    f"{r.summary['tasks_done']:.0f}/{r.summary['tasks']:.0f}",
                    f"{r.summary['response_mean']:.1f}",
                    f"{r.summary['response_p90']:.1f}",
                    f"{r.summary['quality_mean']:.3f}",
                    f"{r.summary['slo_attainment']:.1%}",
                ]
                for test, r in self.runs
            ]
            lines += ["    " + row for row in text_table(headers, rows)]
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        if self.wandb_note:
            lines.append(self.wandb_note)
        lines += [f"error: {e}" for e in self.errors]
        return lines


def _merged(old: SweepRecord | None, new: SweepRecord) -> SweepRecord:
    """Two sweeps of one result set (other schedulers or seeds) as one record."""
    if old is None:
        return new
    from eatbench.experiment.sweep import SweepResult

    a, b = old.result, new.result
    merged = SweepResult(
        a.experiment, [*a.results, *b.results], {**a.skipped, **b.skipped}, a.reused + b.reused, a.root
    )
    return SweepRecord(merged, old.wall_s + new.wall_s)


def flat_metrics(
    runs: pd.DataFrame, x: str, metrics: tuple[str, ...] = ("response_mean", "response_p90")
) -> dict[str, Any]:
    """``{"<scheduler>@<x>=<v>/<metric>": mean}`` (a flat dict of the figures' numbers)."""
    from eatbench.report.aggregate import aggregate

    out: dict[str, Any] = {}
    for _, r in aggregate(runs).iterrows():
        for m in metrics:
            out[f"{r['scheduler']}@{x}={r[x]:g}/{m}"] = round(float(r[m]), 4)
    return out
