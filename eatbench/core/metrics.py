"""Per-task records and the summary metrics computed from them.

Times are seconds. A summary is a flat dict so that result files, reports, W&B and
pytest-benchmark's ``extra_info`` can all take it as it is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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
        """The record as a flat dict (every field is a scalar, so no deep copy is needed)."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}


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


#: how unfinished tasks enter the response and wait statistics (stated in every report).
CENSORING_NOTE = (
    "Every arrived task counts. A task not finished by the end of the episode (still queued, "
    "reserved or running at the horizon, or failed) enters the response and wait statistics "
    "censored at the episode end: response = end - arrival and wait = (start or end) - arrival, "
    "a lower bound on what it would have taken; it counts as an SLO miss and with quality 0. "
    "`completion_rate` = finished / arrived; `*_done` metrics are over finished tasks only."
)


def censored_times(record: TaskRecord, end: float) -> tuple[float, float]:
    """(response, wait) of one task in seconds, censored at ``end`` when it did not finish."""
    if record.status == "done":
        return record.response, record.wait
    wait = record.start - record.arrival if not math.isnan(record.start) else end - record.arrival
    return max(0.0, end - record.arrival), max(0.0, wait)


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
    """Summary metrics of one run (see :data:`CENSORING_NOTE` for unfinished tasks).

    :param records: one per arrived task.
    :param makespan: seconds from the episode start to its end (last completion or horizon);
        unfinished tasks are censored here.
    :param n_servers: cluster size.
    :param busy_time: seconds each server spent running tasks.
    :param decision_times: wall seconds the scheduler spent per decision.
    :param reward_total: sum of the paper reward over launches (``nan`` if not computed).
    :param warmup_fraction: share of the first-arriving tasks left out of the ``steady_*``
        metrics (raw metrics keep every task).
    """
    recs = list(records)
    end = makespan
    done = [r for r in recs if r.status == "done"]
    times = [censored_times(r, end) for r in recs]
    resp = [t[0] for t in times]
    wait = [t[1] for t in times]
    resp_done = [r.response for r in done]
    execs = [r.execution for r in done]
    # quality: a task without an image scores 0; finished tasks without a measured quality
    # (quality off on the gpu backend) are left out of both quality means
    qual_done = [r.quality for r in done if not math.isnan(r.quality)]
    qual_all = qual_done + [0.0] * (len(recs) - len(done)) if qual_done or not done else []
    launched = [r for r in recs if r.status in ("done", "failed") or not math.isnan(r.start)]
    slo_ok = sum(1 for r in done if r.slo_met)
    span = makespan if makespan > 0 else math.nan
    out: dict[str, float] = {
        "tasks": len(recs),
        "tasks_done": len(done),
        "tasks_failed": sum(1 for r in recs if r.status == "failed"),
        "tasks_unfinished": sum(1 for r in recs if r.status == "unfinished"),
        "completion_rate": len(done) / len(recs) if recs else math.nan,
        "response_mean": _mean(resp),
        "response_p50": percentile(resp, 50),
        "response_p90": percentile(resp, 90),
        "response_p99": percentile(resp, 99),
        "wait_mean": _mean(wait),
        "wait_p50": percentile(wait, 50),
        "wait_p90": percentile(wait, 90),
        "wait_p99": percentile(wait, 99),
        "response_mean_done": _mean(resp_done),
        "response_p90_done": percentile(resp_done, 90),
        "execution_mean": _mean(execs),
        "steps_mean": _mean([r.steps for r in done]),
        "k_mean": _mean([r.k for r in done]),
        "quality_mean": _mean(qual_all),
        "quality_mean_done": _mean(qual_done),
        "quality_available": len(qual_done),
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
    # cluster is still cold and the initial queue drains; unfinished tasks censored as above.
    skip = int(len(recs) * warmup_fraction)
    steady = recs[skip:]
    steady_resp = resp[skip:]
    out["steady_tasks"] = len(steady)
    out["steady_response_mean"] = _mean(steady_resp)
    out["steady_response_p90"] = percentile(steady_resp, 90)
    out["steady_slo_attainment"] = (
        (sum(1 for r in steady if r.status == "done" and r.slo_met) / len(steady)) if steady else math.nan
    )
    out["cold_starts"] = sum(1 for r in launched if r.cold_start)
    for i, b in enumerate(busy_time):
        out[f"utilisation_server{i}"] = b / span
    out["n_servers"] = n_servers
    return out


def aggregate_seeds(summaries: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``metric -> {mean, low, high, n}`` across the summaries of several seeds: the mean and
    its 95% bootstrap interval (:func:`eatbench.core.stats.mean_interval`)."""
    from eatbench.core.stats import mean_interval

    keys = [k for k in summaries[0] if isinstance(summaries[0][k], int | float)] if summaries else []
    out = {}
    for k in keys:
        iv = mean_interval([float(s[k]) for s in summaries if k in s], k)
        out[k] = {"mean": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n}
    return out
