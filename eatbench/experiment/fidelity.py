"""Simulator fidelity: the same experiment on the real (gpu) and the simulated backend.

``run_fidelity`` runs one experiment config (same workload seed, same scheduler, same
latency profile) twice: with ``backend=gpu`` (tasks really run, wall clock) and with
``backend=sim`` (virtual clock, durations from the profile). ``compare_records`` pairs the
two runs' task records by task id and reports, with the real run as ground truth:

* ``exec_mape_pct``: MAPE of the per-task execution time (start to finish, cold start
  included), ``100 * mean(|sim - real| / real)`` over the tasks done in both runs; also
  split into tasks that were warm / cold in the real run, and into tasks that ran alone /
  overlapped another task in the real run (servers sharing a device, or a CPU, slow
  each other down; a profile measured one task at a time does not see that).
* ``response_mean_ape_pct`` / ``response_p90_ape_pct``: absolute percentage error of the
  mean and the 90th percentile of the response time (arrival to finish) over the same
  tasks. Over several seeds, ``aggregate`` reports their mean (a MAPE over seeds) and
  pools the per-task execution errors.
* ``decisions_agree``: share of tasks that got the same servers, steps and coldness in
  both runs. Schedules can diverge, because a real completion that comes earlier or later
  than the profile said changes what is idle at the next decision; response-time errors
  then include that divergence (which is part of what the simulator gets wrong).

``write_fidelity`` stores the result as ``fidelity.json`` (with the resolved config, the
backend description and provenance) and ``fidelity.md`` (figures and the per-task table).
All times are seconds, all errors percent.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eatbench.core.config import BackendConfig, ConfigError, config_to_dict, validate
from eatbench.core.metrics import TaskRecord, percentile
from eatbench.core.provenance import provenance
from eatbench.experiment.runner import check_registered, run_experiment

#: Target of the fidelity figure on real GPUs (percent, per the project's design brief).
TARGET_PCT = 10.0


def ape(sim: float, real: float) -> float:
    """Absolute percentage error of ``sim`` against ground truth ``real`` (percent);
    ``nan`` when either is not finite or ``real`` is 0."""
    if not (math.isfinite(sim) and math.isfinite(real)) or real == 0:
        return math.nan
    return 100.0 * abs(sim - real) / abs(real)


def mape(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean absolute percentage error (percent) over ``(sim, real)`` pairs whose error is
    defined; ``nan`` when none is."""
    errors = [e for e in (ape(s, r) for s, r in pairs) if not math.isnan(e)]
    return statistics.fmean(errors) if errors else math.nan


@dataclass
class SeedComparison:
    """The comparison of one seed's real and simulated run (times in s, errors in %)."""

    seed: int
    n_tasks: int
    n_compared: int
    only_real: list[int]
    only_sim: list[int]
    exec_mape_pct: float
    exec_mape_warm_pct: float
    exec_mape_cold_pct: float
    response_mean_real: float
    response_mean_sim: float
    response_mean_ape_pct: float
    response_p90_real: float
    response_p90_sim: float
    response_p90_ape_pct: float
    response_task_mape_pct: float
    decisions_agree: float
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """Everything but the per-task table."""
        return {k: v for k, v in self.__dict__.items() if k != "tasks"}


def compare_records(real: Sequence[TaskRecord], sim: Sequence[TaskRecord], seed: int = 0) -> SeedComparison:
    """Pair ``real`` and ``sim`` records by task id and compute the fidelity figures.

    Only tasks ``done`` in both runs are compared; the ids done in only one run are
    listed (``only_real``, ``only_sim``).
    """
    r_by = {r.task_id: r for r in real if r.status == "done"}
    s_by = {r.task_id: r for r in sim if r.status == "done"}
    ids = sorted(r_by.keys() & s_by.keys())
    overlap = overlapping([r for r in real if r.status in ("done", "failed")])
    rows: list[dict[str, Any]] = []
    for i in ids:
        r, s = r_by[i], s_by[i]
        rows.append(
            {
                "task_id": i,
                "arrival": r.arrival,
                "k_real": r.k,
                "k_sim": s.k,
                "servers_real": r.servers,
                "servers_sim": s.servers,
                "steps_real": r.steps,
                "steps_sim": s.steps,
                "cold_real": r.cold_start,
                "cold_sim": s.cold_start,
                "same_decision": (r.servers, r.steps, r.cold_start) == (s.servers, s.steps, s.cold_start),
                "overlap_real": i in overlap,
                "start_real": r.start,
                "start_sim": s.start,
                "exec_real": r.execution,
                "exec_sim": s.execution,
                "exec_err_pct": ape(s.execution, r.execution),
                "cold_start_time_real": r.cold_start_time,
                "response_real": r.response,
                "response_sim": s.response,
                "response_err_pct": ape(s.response, r.response),
            }
        )
    resp_r = [row["response_real"] for row in rows]
    resp_s = [row["response_sim"] for row in rows]
    mean_r = statistics.fmean(resp_r) if resp_r else math.nan
    mean_s = statistics.fmean(resp_s) if resp_s else math.nan
    p90_r, p90_s = percentile(resp_r, 90), percentile(resp_s, 90)

    def exec_mape(select: Any) -> float:
        return mape([(row["exec_sim"], row["exec_real"]) for row in rows if select(row)])

    return SeedComparison(
        seed=seed,
        n_tasks=len({r.task_id for r in real} | {r.task_id for r in sim}),
        n_compared=len(rows),
        only_real=sorted(r_by.keys() - s_by.keys()),
        only_sim=sorted(s_by.keys() - r_by.keys()),
        exec_mape_pct=exec_mape(lambda row: True),
        exec_mape_warm_pct=exec_mape(lambda row: not row["cold_real"]),
        exec_mape_cold_pct=exec_mape(lambda row: row["cold_real"]),
        response_mean_real=mean_r,
        response_mean_sim=mean_s,
        response_mean_ape_pct=ape(mean_s, mean_r),
        response_p90_real=p90_r,
        response_p90_sim=p90_s,
        response_p90_ape_pct=ape(p90_s, p90_r),
        response_task_mape_pct=mape([(row["response_sim"], row["response_real"]) for row in rows]),
        decisions_agree=(sum(row["same_decision"] for row in rows) / len(rows)) if rows else math.nan,
        tasks=rows,
    )


def overlapping(records: Sequence[TaskRecord]) -> set[int]:
    """Ids of the tasks whose [start, finish] interval overlaps another task's (quadratic
    in the number of tasks: fine for the hundreds of a real run)."""
    spans = sorted(
        (r.start, r.finish, r.task_id) for r in records if math.isfinite(r.start) and math.isfinite(r.finish)
    )
    out: set[int] = set()
    for i, (s0, f0, t0) in enumerate(spans):
        for s1, f1, t1 in spans[i + 1 :]:
            if s1 >= f0:
                break  # sorted by start: no later task starts before f0
            if f1 > s0:
                out.update((t0, t1))
    return out


def _nanmean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.fmean(xs) if xs else math.nan


def aggregate(per_seed: Sequence[SeedComparison]) -> dict[str, float]:
    """The headline figures over seeds: per-task execution MAPE pooled over every compared
    task; response mean/p90 MAPE as the mean of the per-seed errors (percent)."""
    rows = [row for c in per_seed for row in c.tasks]

    def pooled(select: Any) -> float:
        return mape([(row["exec_sim"], row["exec_real"]) for row in rows if select(row)])

    return {
        "seeds": len(per_seed),
        "n_compared": len(rows),
        "n_cold_real": sum(1 for row in rows if row["cold_real"]),
        "exec_mape_pct": pooled(lambda row: True),
        "exec_mape_warm_pct": pooled(lambda row: not row["cold_real"]),
        "exec_mape_cold_pct": pooled(lambda row: row["cold_real"]),
        "exec_mape_same_decision_pct": pooled(lambda row: row["same_decision"]),
        "exec_mape_alone_pct": pooled(lambda row: not row["overlap_real"]),
        "exec_mape_overlap_pct": pooled(lambda row: row["overlap_real"]),
        "n_overlap_real": sum(1 for row in rows if row["overlap_real"]),
        "response_mean_mape_pct": _nanmean([c.response_mean_ape_pct for c in per_seed]),
        "response_p90_mape_pct": _nanmean([c.response_p90_ape_pct for c in per_seed]),
        "response_task_mape_pct": mape([(row["response_sim"], row["response_real"]) for row in rows]),
        "decisions_agree": _nanmean([c.decisions_agree for c in per_seed]),
        "target_pct": TARGET_PCT,
    }


@dataclass
class FidelityReport:
    """Fidelity of one experiment over one or more seeds (see the module docstring)."""

    metrics: dict[str, float]
    per_seed: list[SeedComparison]
    config: dict[str, Any]
    backend: dict[str, Any]
    profile: dict[str, Any]
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "per_seed": [c.metrics() for c in self.per_seed],
            "tasks": [{"seed": c.seed, **row} for c in self.per_seed for row in c.tasks],
            "config": self.config,
            "backend": self.backend,
            "profile": self.profile,
            "provenance": self.provenance,
            "notes": self.notes,
        }


def sim_twin(cfg: Any) -> Any:
    """A copy of the ``ExperimentConfig`` ``cfg`` that runs on ``backend=sim`` (everything
    else, seed and scheduler included, unchanged)."""
    twin = copy.deepcopy(cfg)
    twin.backend = BackendConfig(name="sim")
    return twin


def run_fidelity(
    cfg: Any,
    seeds: Sequence[int] | None = None,
    *,
    write_runs: bool | None = None,
    progress: bool = True,
) -> FidelityReport:
    """Run ``cfg`` (an ``ExperimentConfig`` with ``backend.name == "gpu"``) on the gpu
    backend and on its simulated twin for each seed, and compare them.

    The sim run goes first (seconds, and it validates the config and the profile before
    any worker starts). Result files of both runs are written as by ``eatbench run`` when
    ``write_runs`` (default ``cfg.output.write``); a finished run is then reused
    (``output.resume``).

    :param seeds: the seeds (default ``[cfg.seed]``); each changes the workload.
    :param progress: print one line per run.
    """
    cfg = check_registered(validate(cfg))
    if cfg.backend.name != "gpu":
        raise ConfigError(
            f"backend.name={cfg.backend.name!r} is invalid for a fidelity run; allowed: gpu "
            "(the real side; the simulated twin is built from the same config)"
        )
    seeds = list(seeds) if seeds is not None else [cfg.seed]
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"seeds={seeds!r} is invalid; allowed: a non-empty list of integers >= 0")
    per_seed: list[SeedComparison] = []
    backend_desc: dict[str, Any] = {}
    for seed in seeds:
        real_cfg = copy.deepcopy(cfg)
        real_cfg.seed = seed
        sim_cfg = sim_twin(real_cfg)
        sim = run_experiment(sim_cfg, write=write_runs)
        if progress:
            print(f"[fidelity] seed={seed} sim: {len(sim.records)} tasks, mean response {_fmt(sim.summary)}")
        real = run_experiment(real_cfg, write=write_runs)
        if progress:
            print(f"[fidelity] seed={seed} gpu: {len(real.records)} tasks, mean response {_fmt(real.summary)}")
        backend_desc = real.meta.get("backend", {})
        per_seed.append(compare_records(real.records, sim.records, seed))
    notes = []
    if cfg.profile.name != "csv":
        notes.append(
            f"profile={cfg.profile.name}: not a profile measured on this machine (`eatbench profile`); "
            "the error then measures that profile as much as the simulator"
        )
    if backend_desc.get("random_init"):
        notes.append("random weights: latency is real, image quality is not measured")
    if backend_desc.get("shared_devices"):
        notes.append("several servers share one device: their tasks contend for it when they overlap")
    return FidelityReport(
        metrics=aggregate(per_seed),
        per_seed=per_seed,
        config=config_to_dict(cfg),
        backend=backend_desc,
        profile={"name": cfg.profile.name, "path": cfg.profile.path},
        provenance=provenance(),
        notes=notes,
    )


def _fmt(summary: dict) -> str:
    v = summary.get("response_mean", math.nan)
    return f"{v:.2f} s" if isinstance(v, float) and math.isfinite(v) else "n/a"


def _num(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def render_markdown(report: FidelityReport, title: str = "Simulator fidelity", preamble: str = "") -> str:
    """The report as markdown: headline errors, per-seed figures and the per-task table."""
    m = report.metrics
    cfg = report.config
    w, s = cfg["workload"], cfg["scheduler"]
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble.rstrip(), ""]
    lines += [
        f"Experiment `{cfg['experiment']}`: scheduler `{s['name']}` {s['params']}, cluster `{cfg['cluster']['name']}` "
        f"({len(cfg['cluster']['servers']) or cfg['cluster']['size']} servers), workload `{w['name']}` "
        f"({w['arrival']}, rate {w['rate']} tasks/s, {w['n_tasks']} tasks, model {w['model']}, "
        f"resolutions {w['resolutions']}, k {w['k_choices']}), profile `{report.profile['name']}`"
        + (f" (`{report.profile['path']}`)" if report.profile.get("path") else "")
        + ".",
        "",
        f"Real side: backend `gpu` on {report.backend.get('devices')} "
        f"({', '.join(report.backend.get('device_names') or []) or '?'}), dtype {report.backend.get('dtype')}, "
        f"{report.backend.get('cpu_threads_per_worker')} torch thread(s) per worker, "
        f"torch {report.backend.get('torch')}, diffusers {report.backend.get('diffusers')}.",
        "",
        "## Errors of the simulator (real run = ground truth)",
        "",
        "| figure | error | target |",
        "|---|---:|---:|",
        f"| per-task execution time, MAPE | {_num(m['exec_mape_pct'], 1)} % | <= {TARGET_PCT:g} % |",
        f"| - warm tasks only | {_num(m['exec_mape_warm_pct'], 1)} % | |",
        f"| - cold tasks only | {_num(m['exec_mape_cold_pct'], 1)} % | |",
        f"| - tasks with the same decision in both runs | {_num(m['exec_mape_same_decision_pct'], 1)} % | |",
        f"| - tasks that ran alone (real run) | {_num(m['exec_mape_alone_pct'], 1)} % | |",
        f"| - tasks that overlapped another task (real run) | {_num(m['exec_mape_overlap_pct'], 1)} % | |",
        f"| mean response time, MAPE over seeds | {_num(m['response_mean_mape_pct'], 1)} % | <= {TARGET_PCT:g} % |",
        f"| p90 response time, MAPE over seeds | {_num(m['response_p90_mape_pct'], 1)} % | <= {TARGET_PCT:g} % |",
        f"| per-task response time, MAPE | {_num(m['response_task_mape_pct'], 1)} % | |",
        f"| decisions identical (servers, steps, cold) | {_num(100 * m['decisions_agree'], 0)} % | |",
        "",
        f"{m['n_compared']} tasks compared ({m['n_cold_real']} cold and {m['n_overlap_real']} overlapping another "
        f"task in the real run) over {m['seeds']} seed(s).",
        "",
        "| seed | tasks compared | exec MAPE % | mean response real / sim (s) | error % "
        "| p90 response real / sim (s) | error % | only real / only sim |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.per_seed:
        lines.append(
            f"| {c.seed} | {c.n_compared} | {_num(c.exec_mape_pct, 1)} | {_num(c.response_mean_real)} / "
            f"{_num(c.response_mean_sim)} | {_num(c.response_mean_ape_pct, 1)} | {_num(c.response_p90_real)} / "
            f"{_num(c.response_p90_sim)} | {_num(c.response_p90_ape_pct, 1)} | {c.only_real or '-'} / "
            f"{c.only_sim or '-'} |"
        )
    if report.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report.notes]
    lines += [
        "",
        "## Per task",
        "",
        "Times in seconds; execution = start to finish (cold start included); response = arrival to finish.",
        "",
        "| seed | task | arrival | k | servers real / sim | cold real / sim | steps | overlap | exec real "
        "| exec sim | exec err % | response real | response sim | response err % |",
        "|---:|---:|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.per_seed:
        for row in c.tasks:
            k = row["k_real"] if row["k_real"] == row["k_sim"] else f"{row['k_real']} / {row['k_sim']}"
            steps = (
                row["steps_real"]
                if row["steps_real"] == row["steps_sim"]
                else f"{row['steps_real']} / {row['steps_sim']}"
            )
            lines.append(
                f"| {c.seed} | {row['task_id']} | {_num(row['arrival'])} | {k} | {row['servers_real']} / "
                f"{row['servers_sim']} | {_num(row['cold_real'])} / {_num(row['cold_sim'])} | {steps} | "
                f"{_num(row['overlap_real'])} | "
                f"{_num(row['exec_real'], 3)} | {_num(row['exec_sim'], 3)} | {_num(row['exec_err_pct'], 1)} | "
                f"{_num(row['response_real'], 3)} | {_num(row['response_sim'], 3)} | "
                f"{_num(row['response_err_pct'], 1)} |"
            )
    return "\n".join(lines) + "\n"


def _json_default(o: object) -> object:
    return str(o)


def _clean(o: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_fidelity(
    report: FidelityReport,
    out_dir: str | Path,
    *,
    markdown_path: str | Path | None = None,
    title: str = "Simulator fidelity",
    preamble: str = "",
) -> tuple[Path, Path]:
    """Write ``<out_dir>/fidelity.json`` and the markdown (default
    ``<out_dir>/fidelity.md``); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "fidelity.json"
    json_path.write_text(json.dumps(_clean(report.to_dict()), indent=1, default=_json_default))
    md_path = Path(markdown_path) if markdown_path is not None else out / "fidelity.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render_markdown(report, title=title, preamble=preamble))
    return json_path, md_path
