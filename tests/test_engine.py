"""Engine invariants, hand-computed cases and determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest

from eatbench.backends.sim import SimBackend
from eatbench.core.config import ClusterConfig, EngineConfig, ExperimentConfig, GpuKindConfig, WorkloadConfig
from eatbench.core.tasks import Task
from eatbench.engine.backend import BackendContext
from eatbench.engine.cluster import Cluster
from eatbench.engine.loop import Decision, Engine, InvalidDecision
from eatbench.engine.profiles import PaperQuality, paper_profile
from eatbench.experiment.runner import build_engine, k_options, run_experiment
from eatbench.schedulers import SCHEDULERS


class CheckingBackend(SimBackend):
    """A sim backend that asserts the engine's gang rules as jobs come and go."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.busy: dict[int, int] = {}
        self.log: list[tuple[float, str, int, tuple[int, ...]]] = []

    def launch(self, job):
        for s in job.servers:
            assert s not in self.busy, f"server {s} runs task {self.busy[s]} and {job.task.id} at once"
            self.busy[s] = job.task.id
        assert job.start == self.now()
        self.log.append((job.start, "start", job.task.id, job.servers))
        super().launch(job)

    def advance(self, until):
        results = super().advance(until)
        for r in results:
            for s in r.job.servers:
                assert self.busy.pop(s) == r.job.task.id
            self.log.append((r.finish, "end", r.job.task.id, r.job.servers))
        return results


def _config(scheduler: str, seed: int, **workload) -> ExperimentConfig:
    w = dataclasses.replace(WorkloadConfig(), **workload)
    return ExperimentConfig(
        seed=seed, workload=w, scheduler=dataclasses.replace(ExperimentConfig().scheduler, name=scheduler)
    )


def _run_checked(cfg: ExperimentConfig):
    engine = build_engine(cfg)
    backend = CheckingBackend(BackendContext(engine.cluster, engine.profile, PaperQuality(), cfg.seed))
    engine.backend = backend
    scheduler = SCHEDULERS.create(cfg.scheduler.name)
    scheduler.reset(cfg.seed, k_options(cfg, engine.n_servers))
    records = engine.run(scheduler)
    return engine, backend, records


WORKLOADS = [
    dict(arrival="bernoulli", rate=0.07),
    dict(arrival="poisson", rate=0.2, n_tasks=80, initial_queue=0, horizon=None),
    dict(arrival="gamma", cv=3.0, rate=0.1, n_tasks=80, initial_queue=0, horizon=300.0),
    dict(arrival="cosine", rate_low=0.01, rate_high=0.2, n_tasks=None, horizon=600.0, initial_queue=0),
    dict(arrival="poisson", rate=0.1, n_tasks=60, k_choices=None, initial_queue=5, horizon=None),
]


# learned schedulers need a checkpoint; their runs through the engine are in test_rl.py
HEURISTICS = [n for n in SCHEDULERS.names() if SCHEDULERS.get_class(n).__module__ == "eatbench.schedulers.heuristics"]


@pytest.mark.parametrize("scheduler", HEURISTICS)
@pytest.mark.parametrize("workload", range(len(WORKLOADS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_engine_invariants_hold_for_every_scheduler_and_workload(scheduler, workload, seed):
    cfg = _config(scheduler, seed, **WORKLOADS[workload])
    engine, backend, records = _run_checked(cfg)
    profile = engine.profile

    # every arrived task is either ended or reported unfinished, exactly once
    arrived = [t for t in engine.tasks if t.arrival <= engine.now]
    assert [r.task_id for r in records] == [t.id for t in arrived]
    for r in records:
        assert r.status in ("done", "failed", "unfinished")
        if r.status == "done":
            assert r.arrival <= r.start <= r.finish
            assert math.isclose(r.response, r.wait + r.execution)
            # gang members start and end together: one start and one end per task
            events = [e for e in backend.log if e[2] == r.task_id]
            assert [e[1] for e in events] == ["start", "end"]
            assert events[0][3] == events[1][3] and len(events[0][3]) == r.k
    if cfg.workload.n_tasks is not None and cfg.workload.horizon is None:
        assert all(r.status == "done" for r in records)

    # cold start is charged exactly when the residency rule says so (replayed here)
    group_of: dict[int, tuple[frozenset, str]] = {}
    starts = sorted((r for r in records if not math.isnan(r.start)), key=lambda r: (r.start, backend_order(backend, r)))
    for r in starts:
        servers = tuple(int(s) for s in r.servers.split("-"))
        g = group_of.get(servers[0])
        warm = g is not None and g == (frozenset(servers), r.model)
        assert r.cold_start == (not warm), f"task {r.task_id}"
        for s in servers:
            old = group_of.get(s)
            if old is not None and not warm:
                for m in old[0]:
                    group_of.pop(m, None)
        for s in servers:
            group_of[s] = (frozenset(servers), r.model)
        if r.status == "done":
            kinds = r.gpu_kinds.split("-")
            expected = profile.duration(kinds, r.model, r.resolution, r.steps, r.cold_start)
            assert math.isclose(r.execution, expected, rel_tol=1e-9, abs_tol=1e-9)


def backend_order(backend: CheckingBackend, record) -> int:
    return next(i for i, e in enumerate(backend.log) if e[1] == "start" and e[2] == record.task_id)


def _tiny_engine(tasks, n=4, mode="event") -> Engine:
    cluster = Cluster.from_config(ClusterConfig(gpu_kinds={"paper_gpu": GpuKindConfig()}, servers=["paper_gpu"] * n))
    profile = paper_profile()
    ctx = BackendContext(cluster, profile, PaperQuality())
    cfg = EngineConfig(decision_mode=mode)
    return Engine(cluster, tasks, SimBackend(ctx), profile, PaperQuality().table(32), cfg, None)


def _task(i, arrival=0.0, k=2):
    return Task(i, arrival, "p", 1440, k, math.inf, 0, "sd14")


def test_paper_profile_hand_computed_cold_then_warm():
    engine = _tiny_engine([_task(0), _task(1, arrival=100.0)])
    assert engine.next_decision()
    engine.apply(Decision(0, 20, (0, 1)))
    assert engine.next_decision()  # task 1 arrives at t=100
    engine.apply(Decision(1, 20, (0, 1)))
    assert not engine.next_decision()
    first, second = engine.finalize()
    assert first.cold_start and math.isclose(first.execution, 0.15625 * 20 + 24)  # 27.125 s
    assert not second.cold_start and math.isclose(second.execution, 0.15625 * 20)
    assert math.isclose(second.finish, 100 + 3.125)


def test_cold_launch_dissolves_touched_groups():
    tasks = [_task(0), _task(1, 100.0, k=1), _task(2, 200.0)]
    engine = _tiny_engine(tasks)
    engine.next_decision()
    engine.apply(Decision(0, 10, (0, 1)))  # group {0,1} warm
    engine.next_decision()
    engine.apply(Decision(1, 10, (1,)))  # cold on {1}: dissolves {0,1}
    engine.next_decision()
    engine.apply(Decision(2, 10, (0, 1)))  # {0,1} again: cold, the group was dissolved
    engine.next_decision()
    recs = engine.finalize()
    assert [r.cold_start for r in recs] == [True, True, True]
    k4 = [_task(0, k=4), _task(1, 100.0, k=4)]
    engine = _tiny_engine(k4)
    engine.next_decision()
    engine.apply(Decision(0, 10, (0, 1, 2, 3)))
    engine.next_decision()
    engine.apply(Decision(1, 10, (3, 2, 1, 0)))  # same set in another order: warm
    engine.next_decision()
    assert [r.cold_start for r in engine.finalize()] == [True, False]


def test_gang_waits_for_busy_members_and_reserves_them():
    engine = _tiny_engine([_task(0, k=1), _task(1, 1.0, k=2), _task(2, 1.0, k=1)])
    engine.next_decision()
    engine.apply(Decision(0, 20, (0,)))  # server 0 busy until 24 + 6.3 = 30.3 s
    engine.next_decision()  # t=1: task 1 arrives
    engine.apply(Decision(1, 20, (0, 1)))  # server 1 is free; the gang waits for server 0
    assert engine.reserved_by[1] == 1 and engine.idle_servers() == [2, 3]
    with pytest.raises(InvalidDecision, match="reserved"):
        engine.apply(Decision(2, 20, (1,)))
    engine.apply(Decision(2, 20, (2,)))
    while engine.next_decision():
        engine.apply(None)
    a, b, _ = engine.finalize()
    assert math.isclose(b.start, a.finish) and b.cold_start


@pytest.mark.parametrize(
    "decision, message",
    [
        (Decision(0, 0, (0, 1)), "steps=0"),
        (Decision(0, 33, (0, 1)), "steps=33"),
        (Decision(0, 20, (0,)), "needs k=2"),
        (Decision(0, 20, (0, 0)), "distinct"),
        (Decision(0, 20, (0, 9)), "does not exist"),
        (Decision(5, 20, (0, 1)), "not queued"),
    ],
)
def test_invalid_decisions_are_rejected_with_a_reason(decision, message):
    engine = _tiny_engine([_task(0)])
    engine.next_decision()
    with pytest.raises(InvalidDecision, match=message):
        engine.apply(decision)


def test_slotted_mode_offers_a_decision_every_slot_while_tasks_wait():
    engine = _tiny_engine([_task(0), _task(1)], n=2, mode="slotted")
    times = []
    while engine.next_decision():
        times.append(round(engine.now, 6))
        if len(times) == 1:
            engine.apply(Decision(0, 20, (0, 1)))
        elif engine.idle_servers() == [0, 1]:
            engine.apply(Decision(1, 20, (0, 1)))
        else:
            engine.apply(None)
    assert times[:4] == [0.0, 0.0, 0.1, 0.2]  # a launch is followed by another epoch at once
    assert engine.finalize()[1].start == pytest.approx(27.125, abs=0.1 + 1e-9)


def test_horizon_reports_running_and_queued_tasks_unfinished():
    cfg = _config("fifo", 0, rate=0.5, n_tasks=None, horizon=60.0)
    result = run_experiment(cfg, write=False)
    statuses = {r.status for r in result.records}
    assert "unfinished" in statuses and "done" in statuses
    assert result.summary["tasks_unfinished"] == sum(r.status == "unfinished" for r in result.records)
    assert result.summary["makespan"] == pytest.approx(60.0)


@pytest.mark.parametrize("scheduler", ["greedy", "random", "earliest_finish"])
def test_same_config_and_seed_give_identical_records(scheduler):
    cfg = _config(scheduler, 3, arrival="gamma", cv=2.0, rate=0.1, n_tasks=60, initial_queue=0, horizon=None)
    a = run_experiment(cfg, write=False).records
    b = run_experiment(cfg, write=False).records
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    c = run_experiment(dataclasses.replace(cfg, seed=4), write=False).records
    assert [r.arrival for r in a] != [r.arrival for r in c]


def test_a_scheduler_that_always_waits_ends_the_episode_with_tasks_unfinished():
    for mode in ("event", "slotted"):
        engine = _tiny_engine([_task(0), _task(1, 5.0)], mode=mode)
        while engine.next_decision():
            engine.apply(None)
        assert [r.status for r in engine.finalize()] == ["unfinished", "unfinished"]


def test_residency_dissolve_tears_down_every_touched_group():
    from eatbench.engine.cluster import Residency

    res = Residency(4)
    res.claim((0, 1), "a")
    res.claim((2,), "b")
    assert res.dissolve((1,)) == {0, 1}  # the whole group of server 1
    assert res.warm_groups() == [(frozenset({2}), "b")] and not res.is_warm((0, 1), "a")
    assert res.dissolve((3,)) == set()


def test_uniform_cluster_has_one_gpu_kind():
    c = Cluster.uniform(3, "cpu")
    assert len(c) == 3 and c.kind_of == ["cpu"] * 3 and [s.index for s in c.servers] == [0, 1, 2]
    assert set(c.gpu_kinds) == {"cpu"}
    with pytest.raises(ValueError, match="n=0 is invalid"):
        Cluster.uniform(0, "cpu")
