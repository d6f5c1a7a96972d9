"""Heuristic schedulers: each decides validly; the smart ones are smart."""

from __future__ import annotations

import dataclasses
import math
import statistics

import pytest

from eatbench.core.config import ConfigError
from eatbench.engine.loop import Decision
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import run_experiment
from eatbench.schedulers import SCHEDULERS, Scheduler
from eatbench.schedulers.heuristics import GreedyScheduler

HEURISTICS = ["fifo", "random", "round_robin", "least_loaded", "greedy", "earliest_finish"]


def test_every_heuristic_is_registered_with_a_config_file():
    from eatbench.experiment.compose import conf_dir

    for name in HEURISTICS:
        assert name in SCHEDULERS
        assert (conf_dir() / "scheduler" / f"{name}.yaml").is_file()
    with pytest.raises(ValueError, match="unknown scheduler 'edf'; allowed: .*fifo"):
        SCHEDULERS.get_class("edf")


def _mean(name, metric, rate=0.07, seeds=range(5), **over):
    values = []
    for seed in seeds:
        cfg = compose_experiment(
            [f"scheduler={name}", f"workload.rate={rate}", f"seed={seed}", *[f"{k}={v}" for k, v in over.items()]]
        )
        values.append(run_experiment(cfg, write=False).summary[metric])
    return statistics.fmean(values)


def test_greedy_runs_the_reward_maximising_launch():
    cfg = compose_experiment(["scheduler=greedy"])
    from eatbench.experiment.runner import build_engine

    engine = build_engine(cfg)
    engine.next_decision()
    g = GreedyScheduler()
    g.reset(0, [1, 2, 4])
    d = g.decide(engine.view)
    vis = engine.visible()
    best = max(
        engine.reward(t, engine.estimate(t, engine.default_servers(t.k, t.model), s), s, vis)
        for t in vis
        for s in range(1, 33)
    )
    task = next(t for t in vis if t.id == d.task_id)
    assert engine.reward(task, engine.estimate(task, d.servers, d.steps), d.steps, vis) == pytest.approx(best)
    # the release's bug made Greedy always take the maximum steps; ours trades off
    top = engine.config.max_steps
    assert d.steps < top
    at_top = engine.reward(task, engine.estimate(task, d.servers, top), top, vis)
    assert engine.reward(task, engine.estimate(task, d.servers, d.steps), d.steps, vis) > at_top


def test_earliest_finish_reuses_a_warm_group_instead_of_paying_a_cold_start():
    from tests.test_engine import _task, _tiny_engine

    engine = _tiny_engine([_task(0), _task(1, arrival=100.0)])
    s = SCHEDULERS.create("earliest_finish")
    s.reset(0, [1, 2, 4])
    while engine.next_decision():
        engine.apply(s.decide(engine.view))
    first, second = engine.finalize()
    assert first.cold_start and not second.cold_start
    assert first.servers == second.servers == "0-1"  # servers 2-3 were idle longer, but cold


def test_smart_heuristics_beat_random_on_response_time():
    assert _mean("earliest_finish", "response_mean") < _mean("random", "response_mean")
    assert _mean("greedy", "reward_total") > _mean("random", "reward_total")


def test_a_new_scheduler_is_a_class_and_a_name():
    @SCHEDULERS.register("test_last_task")
    class LastTaskScheduler(Scheduler):
        def decide(self, view):
            task = view.visible()[-1]
            servers = view.default_servers(task.k, task.model)
            return None if servers is None else Decision(task.id, self.steps, servers)

    try:
        cfg = compose_experiment(["scheduler.name=test_last_task"])
        result = run_experiment(cfg, write=False)
        assert result.summary["tasks_done"] == 32
    finally:
        SCHEDULERS._classes.pop("test_last_task")


@pytest.mark.parametrize("name", HEURISTICS)
def test_heuristics_complete_every_task_on_heterogeneous_and_large_clusters(name):
    for over in (["cluster=hetero8"], ["cluster=uniform", "cluster.size=32", "workload.k_choices=[1,2,4,8]"]):
        cfg = compose_experiment([f"scheduler={name}", "workload=poisson", "workload.n_tasks=100", *over])
        s = run_experiment(cfg, write=False).summary
        assert s["tasks_done"] == 100 and not math.isnan(s["response_mean"])


def test_fifo_uses_the_configured_steps():
    cfg = compose_experiment(["scheduler=fifo", "scheduler.params.steps=12"])
    records = run_experiment(cfg, write=False).records
    assert {r.steps for r in records} == {12}
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_steps=10))
    with pytest.raises(ConfigError, match=r"scheduler.params.steps=12 is invalid; allowed: .*\(1..10\)"):
        run_experiment(cfg, write=False)  # refused, not silently clamped to 10
