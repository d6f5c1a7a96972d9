"""The scheduler's read-only view of the engine: it reflects the engine's state and hands
out nothing through which a scheduler could change it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eatbench.backends.sim import SimBackend
from eatbench.core.config import ClusterConfig, EngineConfig, GpuKindConfig
from eatbench.core.tasks import Task
from eatbench.engine.backend import BackendContext
from eatbench.engine.cluster import Cluster
from eatbench.engine.loop import Decision, Engine
from eatbench.engine.profiles import PaperQuality, paper_profile
from eatbench.engine.view import EngineView
from eatbench.schedulers.base import Scheduler


def _engine(tasks: list[Task], n: int = 4) -> Engine:
    kinds = {"paper_gpu": GpuKindConfig(), "fast": GpuKindConfig(speed=2.0, relative_to="paper_gpu")}
    cluster = Cluster.from_config(ClusterConfig(gpu_kinds=kinds, servers=["paper_gpu", "fast"] * (n // 2)))
    profile = paper_profile().with_gpu_kinds(cluster.gpu_kinds)
    ctx = BackendContext(cluster, profile, PaperQuality())
    return Engine(cluster, tasks, SimBackend(ctx), profile, PaperQuality().table(32), EngineConfig(), None)


def _task(i: int, arrival: float = 0.0, k: int = 2) -> Task:
    return Task(i, arrival, "p", 1440, k, math.inf, 0, "sd14")


def _busy_engine() -> Engine:
    """t=1: task 0 runs on {0, 1} (warm group for sd14 from then on), task 1 holds {1, 2}
    reserved waiting for server 1, tasks 2 and 3 are queued."""
    engine = _engine([_task(0), _task(1, 1.0), _task(2, 1.0, k=1), _task(3, 1.0, k=1)])
    engine.next_decision()
    engine.apply(Decision(0, 20, (0, 1)))
    engine.next_decision()
    engine.apply(Decision(1, 20, (1, 2)))
    assert engine.next_decision()
    return engine


def test_the_view_answers_from_the_engine_state():
    engine = _busy_engine()
    view = engine.view
    assert view.now == engine.now == 1.0 and view.n_servers == 4
    assert [t.id for t in view.visible()] == [2, 3] and view.queue_length == 2
    assert view.queued_ids() == frozenset({2, 3})
    assert view.started(0) and not view.started(1) and not view.started(2)
    assert view.idle_servers() == (3,) and view.is_idle(3) and not view.is_idle(0)
    assert view.is_running(0) and not view.is_running(2)
    assert view.is_reserved(1) and view.is_reserved(2) and not view.is_reserved(0)
    assert view.unreserved_servers() == (0, 3) and view.n_reserved == 2 and view.n_running == 1
    assert view.free_at(0) == engine.free_at[0] and view.time_until_free(0) == engine.free_at[0] - 1.0
    assert view.time_until_free(3) == 0.0
    assert view.gpu_kinds == ("paper_gpu", "fast", "paper_gpu", "fast") and view.gpu_kind(1) == "fast"
    assert view.speed(0) == 1.0 and view.speed(1) == 2.0
    assert view.warm_group(0) == (frozenset({0, 1}), "sd14") and view.warm_group(3) is None
    assert view.warm_groups() == ((frozenset({0, 1}), "sd14"),)
    assert view.is_warm((1, 0), "sd14") and not view.is_warm((0,), "sd14")
    assert view.default_servers(1, "sd14") == engine.default_servers(1, "sd14") == (3,)
    assert (view.min_steps, view.max_steps, view.window) == (1, 32, engine.config.window)
    task = view.visible()[0]
    assert view.estimate(task, (3,), 10) == engine.estimate(task, (3,), 10)
    assert view.estimates(task, (3,), [5, 10]) == tuple(engine.estimates(task, (3,), [5, 10]))
    est = view.estimate(task, (3,), 10)
    assert view.reward(task, est, 10) == engine.reward(task, est, 10)
    assert view.mean_wait() == engine.mean_wait() and view.quality(10) == engine.quality(10)
    assert [t.id for t in view.episode_tasks()] == [0, 1, 2, 3]


def test_a_scheduler_cannot_change_the_engine_through_the_view():
    engine = _busy_engine()
    view = engine.view
    before = (engine.now, list(engine.busy_time), list(engine.free_at), list(engine.reserved_by))
    for name, value in [("now", 5.0), ("n_servers", 1), ("min_steps", 3), ("_engine", None), ("anything", 1)]:
        with pytest.raises(AttributeError):
            setattr(view, name, value)
    with pytest.raises(AttributeError):
        del view._engine
    busy = view.busy_times()
    assert isinstance(busy, np.ndarray) and not busy.flags.writeable
    with pytest.raises(ValueError):
        busy[0] = 100.0
    for task in view.visible():  # copies: changing them leaves the engine's tasks alone
        task.arrival, task.k, task.model = -1.0, 4, "other"
    for task in view.episode_tasks():
        task.arrival = -1.0
    assert [(t.arrival, t.k, t.model) for t in engine.visible()] == [(1.0, 1, "sd14"), (1.0, 1, "sd14")]
    assert all(t.arrival >= 0 for t in engine.tasks)
    for answer in (view.visible(), view.idle_servers(), view.unreserved_servers(), view.warm_groups()):
        assert isinstance(answer, tuple)
    members, _ = view.warm_group(0)
    assert isinstance(members, frozenset)
    rc = view.reward_config()
    rc.w_q = 123.0
    cfg = view.engine_config()
    cfg.max_steps = 2
    assert engine.reward_cfg.w_q != 123.0 and engine.config.max_steps == 32
    assert (engine.now, list(engine.busy_time), list(engine.free_at), list(engine.reserved_by)) == before


def test_engine_run_hands_schedulers_the_view_not_the_engine():
    seen: list[object] = []

    class Oldest(Scheduler):
        def decide(self, view):
            seen.append(view)
            task = view.visible()[0]
            servers = view.default_servers(task.k, task.model)
            return None if servers is None else Decision(task.id, self.steps, servers)

    engine = _engine([_task(0), _task(1, 1.0)])
    records = engine.run(Oldest())
    assert [r.status for r in records] == ["done", "done"]
    assert seen and all(isinstance(v, EngineView) and v is engine.view for v in seen)


def test_task_copy_keeps_every_field_and_is_independent():
    import dataclasses

    from eatbench.core.tasks import Task, TaskState

    t = Task(7, 1.5, "p", 768, 2, 9.0, 11, "m", TaskState.QUEUED)
    c = t.copy()
    assert c is not t
    assert all(getattr(c, f.name) == getattr(t, f.name) for f in dataclasses.fields(Task))
    c.state = TaskState.DONE
    assert t.state == TaskState.QUEUED
