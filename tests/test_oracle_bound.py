"""The oracle's relaxation bound is valid: never above the true optimum (brute force) on
tiny instances, whole or cut in parts, and it lifts the reported bound."""

from __future__ import annotations

import pytest

pytest.importorskip("ortools", reason="the oracle needs the [oracle] extra (ortools)")

from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import build_engine, make_scheduler, run_experiment  # noqa: E402
from tests.test_oracle import _brute_force_mean_response  # noqa: E402

TINY = [
    "scheduler=oracle",
    "cluster=uniform",
    "cluster.size=2",
    "workload.k_choices=[1,2]",
    "workload.n_tasks=5",
    "workload.initial_queue=2",
    "output.write=false",
    "scheduler.params.workers=1",
]


@pytest.mark.parametrize(("seed", "rate"), [(1, 0.3), (3, 0.1), (4, 0.05), (5, 0.2)])
def test_the_relaxation_bound_never_exceeds_the_brute_force_optimum(seed, rate):
    cfg = compose_experiment([*TINY, f"seed={seed}", f"workload.rate={rate}"])
    engine = build_engine(cfg)
    sched = make_scheduler(cfg)
    sched.reset(seed, [1, 2])
    n, scale = len(engine.tasks), sched.scale
    optimum = _brute_force_mean_response(engine, 20)
    every = sorted(range(n), key=lambda j: engine.tasks[j].arrival)
    whole, _ = sched._relaxation_bound(engine.view, 20, 10.0, every)
    halves = [sched._relaxation_bound(engine.view, 20, 10.0, part)[0] for part in (every[:2], every[2:])]
    cut, _ = sched._relaxation_bound(
        engine.view, 20, 10.0, every, [(every[:2], int(halves[0])), (every[2:], int(halves[1]))]
    )
    for total in (whole, sum(halves), cut, sched._lower_bound(engine.view, 20) + n):
        assert (total - n) / scale / n <= optimum + 1e-9
    # not a trivial bound: above every task running warm on arrival
    kinds = [engine.kind_of[0]]
    warm = sum(engine.profile.duration(kinds * t.k, t.model, t.resolution, 20, False) for t in engine.tasks) / n
    assert (whole - n) / scale / n > warm + 1.0


def test_the_reported_bound_is_the_best_of_the_solver_and_the_relaxation():
    over = ["workload.n_tasks=6", "workload.initial_queue=3", "workload.rate=0.09", "seed=0"]
    over += ["output.write=false", "scheduler.params.workers=1"]
    over += ["scheduler.params.time_limit_s=2", "+scheduler.params.bound_time_s=2", "scheduler.params.method=cpsat"]
    got = run_experiment(compose_experiment(["scheduler=oracle", *over]), write=False).summary
    assert got["oracle_bound"] == max(got["oracle_solver_bound"], got["oracle_relaxation_bound"])
    assert 0 < got["oracle_relaxation_bound"] <= got["oracle_bound"] <= got["response_mean"] + 1e-9
    # the relaxation's bound is a constraint of the exact model
    assert got["oracle_solver_bound"] >= got["oracle_relaxation_bound"] - 1e-3  # one model unit per task
    assert got["oracle_gap"] == pytest.approx((got["oracle_objective"] - got["oracle_bound"]) / got["oracle_objective"])


def test_bound_time_is_checked():
    from eatbench.schedulers import SCHEDULERS

    with pytest.raises(ValueError, match="scheduler.params.bound_time_s=-1 is invalid; allowed: seconds >= 0"):
        SCHEDULERS.create("oracle", bound_time_s=-1)
