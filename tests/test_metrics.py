"""Summary metrics and confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eatbench.core.metrics import TaskRecord, aggregate_seeds, censored_times, percentile, summarize


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    xs = rng.exponential(size=101).tolist()
    for q in (50, 90, 99):
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    assert math.isnan(percentile([], 50))


def _rec(i, status="done", response=10.0, wait=2.0, slo=12.0, cold=False, quality=0.2):
    return TaskRecord(
        task_id=i,
        arrival=0.0,
        status=status,
        start=wait,
        finish=response,
        wait=wait,
        execution=response - wait,
        response=response,
        steps=20,
        k=2,
        quality=quality,
        slo=slo,
        slo_met=response <= slo,
        cold_start=cold,
    )


def test_summary_counts_slo_goodput_and_unfinished():
    recs = [_rec(0), _rec(1, response=20.0, cold=True), TaskRecord(task_id=2, arrival=5.0, status="unfinished")]
    s = summarize(recs, makespan=40.0, n_servers=2, busy_time=[20.0, 10.0], decision_times=[1e-5, 3e-5])
    assert s["tasks_done"] == 2 and s["tasks_unfinished"] == 1
    assert s["slo_attainment"] == pytest.approx(1 / 3)  # unfinished tasks miss their SLO
    assert s["goodput"] == pytest.approx(1 / 40) and s["throughput"] == pytest.approx(2 / 40)
    assert s["utilisation_server0"] == 0.5 and s["utilisation_mean"] == pytest.approx(0.375)
    assert s["cold_start_rate"] == 0.5 and s["response_mean_done"] == 15.0
    # the unfinished task (arrived at 5 s) is censored at the episode end, 40 s
    assert s["response_mean"] == pytest.approx((10.0 + 20.0 + 35.0) / 3)
    assert s["completion_rate"] == pytest.approx(2 / 3) and s["tasks"] == 3
    assert s["quality_mean"] == pytest.approx(0.4 / 3) and s["quality_mean_done"] == pytest.approx(0.2)
    assert s["decision_time_mean_s"] == pytest.approx(2e-5)


def test_aggregate_seeds_gives_mean_bootstrap_interval_and_n():
    agg = aggregate_seeds([{"a": 1.0}, {"a": 3.0}])
    assert agg["a"]["mean"] == 2.0 and agg["a"]["n"] == 2
    assert math.isnan(agg["a"]["low"]) and math.isnan(agg["a"]["high"])  # no interval under 3 seeds
    agg = aggregate_seeds([{"a": float(v)} for v in range(10)])
    assert agg["a"]["low"] < 4.5 < agg["a"]["high"] and agg["a"]["n"] == 10


def test_censored_times_of_unfinished_tasks():
    queued = TaskRecord(task_id=0, arrival=10.0, status="unfinished")
    running = TaskRecord(task_id=1, arrival=10.0, status="unfinished", start=30.0)
    assert censored_times(queued, 100.0) == (90.0, 90.0)
    assert censored_times(running, 100.0) == (90.0, 20.0)
    done = _rec(2, response=12.0, wait=3.0)
    assert censored_times(done, 100.0) == (12.0, 3.0)


def test_steady_state_metrics_leave_out_the_warm_up_tasks():
    recs = [_rec(i, response=100.0 if i < 2 else 10.0, cold=i < 2) for i in range(20)]
    s = summarize(recs, makespan=200.0, n_servers=1, busy_time=[100.0], warmup_fraction=0.1)
    assert s["response_mean"] == pytest.approx((2 * 100 + 18 * 10) / 20)
    assert s["steady_response_mean"] == 10.0 and s["steady_tasks"] == 18 and s["cold_starts"] == 2
