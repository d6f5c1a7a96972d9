"""Per-task records and the summary metrics computed from them.

Times are seconds. A summary is a flat dict so that result files, reports, W&B and
pytest-benchmark's ``extra_info`` can all take it as it is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """What happened to one task. ``status`` is ``done``, ``failed`` or ``unfinished``
    (still queued or running at the end of the episode); times are ``nan`` when unknown."""

    task_id: int
    arrival: float
    status: str
    start: float = math.nan
    finish: float = math.nan
    wait: float = math.nan
    execution: float = math.nan
    response: float = math.nan
    steps: int = 0
    k: int = 0
    servers: str = ""
    gpu_kinds: str = ""
    cold_start: bool = False
    cold_start_time: float = math.nan
    quality: float = math.nan
    slo: float = math.inf
    slo_met: bool = False
    resolution: int = 0
    model: str = ""
    prompt: str = ""
    seed: int = 0
    error: str = ""
    image_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


RECORD_FIELDS = tuple(TaskRecord.__dataclass_fields__)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); ``nan`` for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def summarize(
    records: Iterable[TaskRecord],
    *,
    makespan: float,
    n_servers: int,
    busy_time: Sequence[float],
    decision_times: Sequence[float] = (),
    reward_total: float = math.nan,
    warmup_fraction: float = 0.1,
) -> dict[str, float]:
    """Summary metrics of one run.

    :param records: one per task.
    :param makespan: seconds from the episode start to its end (last completion or horizon).
    :param n_servers: cluster size.
    :param busy_time: seconds each server spent running tasks.
    :param decision_times: wall seconds the scheduler spent per decision.
    :param reward_total: sum of the paper reward over launches (``nan`` if not computed).
    :param warmup_fraction: share of the first-arriving tasks left out of the ``steady_*``
        metrics (raw metrics keep every task).
    """
    recs = list(records)
    done = [r for r in recs if r.status == "done"]
    resp = [r.response for r in done]
    wait = [r.wait for r in done]
    execs = [r.execution for r in done]
    qual = [r.quality for r in done if not math.isnan(r.quality)]
    launched = [r for r in recs if r.status in ("done", "failed") or not math.isnan(r.start)]
    slo_ok = sum(1 for r in done if r.slo_met)
    span = makespan if makespan > 0 else math.nan
    out: dict[str, float] = {
        "tasks": len(recs),
        "tasks_done": len(done),
        "tasks_failed": sum(1 for r in recs if r.status == "failed"),
        "tasks_unfinished": sum(1 for r in recs if r.status == "unfinished"),
        "response_mean": _mean(resp),
        "response_p50": percentile(resp, 50),
        "response_p90": percentile(resp, 90),
        "response_p99": percentile(resp, 99),
        "wait_mean": _mean(wait),
        "wait_p50": percentile(wait, 50),
        "wait_p90": percentile(wait, 90),
        "wait_p99": percentile(wait, 99),
        "execution_mean": _mean(execs),
        "steps_mean": _mean([r.steps for r in done]),
        "k_mean": _mean([r.k for r in done]),
        "quality_mean": _mean(qual),
        "quality_available": len(qual),
        # SLO attainment over all tasks: unfinished and failed tasks miss their SLO.
        "slo_attainment": slo_ok / len(recs) if recs else math.nan,
        "goodput": slo_ok / span,
        "throughput": len(done) / span,
        "makespan": makespan,
        "utilisation_mean": _mean([b / span for b in busy_time]) if busy_time else math.nan,
        "cold_start_rate": (sum(1 for r in launched if r.cold_start) / len(launched)) if launched else math.nan,
        "decisions": len(decision_times),
        "decision_time_mean_s": _mean(decision_times),
        "decision_time_p99_s": percentile(decision_times, 99),
        "reward_total": reward_total,
    }
    # Steady state: drop the first ``warmup_fraction`` of tasks (by arrival), when the
    # cluster is still cold and the initial queue drains.
    skip = int(len(recs) * warmup_fraction)
    steady = recs[skip:]
    steady_done = [r.response for r in steady if r.status == "done"]
    out["steady_tasks"] = len(steady)
    out["steady_response_mean"] = _mean(steady_done)
    out["steady_response_p90"] = percentile(steady_done, 90)
    out["steady_slo_attainment"] = (
        (sum(1 for r in steady if r.status == "done" and r.slo_met) / len(steady)) if steady else math.nan
    )
    out["cold_starts"] = sum(1 for r in launched if r.cold_start)
    for i, b in enumerate(busy_time):
        out[f"utilisation_server{i}"] = b / span
    out["n_servers"] = n_servers
    return out


# Two-sided 95% Student-t critical values by degrees of freedom (1..30); 1.96 beyond.
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student t); ``nan`` values are
    dropped; the half-width is ``nan`` for fewer than two values."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return math.nan, math.nan
    if len(xs) < 2:
        return xs[0], math.nan
    t = _T95[len(xs) - 2] if len(xs) - 1 <= len(_T95) else 1.96
    return statistics.fmean(xs), t * statistics.stdev(xs) / math.sqrt(len(xs))


def aggregate_seeds(summaries: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``metric -> {mean, ci95, n}`` across the summaries of several seeds."""
    keys = [k for k in summaries[0] if isinstance(summaries[0][k], int | float)] if summaries else []
    out = {}
    for k in keys:
        mean, ci = mean_ci95([float(s[k]) for s in summaries if k in s])
        out[k] = {"mean": mean, "ci95": ci, "n": len(summaries)}
    return out
