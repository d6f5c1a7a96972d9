"""The clairvoyant oracle (CP-SAT): optimal on small episodes, never worse than any
heuristic on the same task stream, its records replayed through the engine."""

from __future__ import annotations

import itertools
import math

import pytest

pytest.importorskip("ortools", reason="the oracle needs the [oracle] extra (ortools)")

from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import build_engine, run_experiment  # noqa: E402
from eatbench.schedulers import SCHEDULERS  # noqa: E402

HEURISTICS = ["fifo", "random", "round_robin", "least_loaded", "greedy", "earliest_finish"]
SMALL = ["workload.n_tasks=6", "workload.initial_queue=3", "output.write=false"]


def _fixed_steps(name: str) -> list[str]:
    """``steps=20`` for a scheduler that takes it (greedy and random choose their steps)."""
    return [] if name in ("greedy", "random") else ["scheduler.params.steps=20"]


def _summary(name: str, overrides: list[str]) -> dict[str, float]:
    return run_experiment(compose_experiment([f"scheduler={name}", *overrides]), write=False).summary


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_at_fixed_steps_beats_every_heuristic_and_proves_it(seed):
    over = [*SMALL, f"seed={seed}", "workload.rate=0.09"]
    oracle = _summary("oracle", [*over, "scheduler.params.time_limit_s=30", "scheduler.params.workers=1"])
    assert oracle["oracle_optimal"] == 1.0 and oracle["oracle_gap"] < 1e-9
    assert oracle["tasks_done"] == 6
    # the engine's replay of the plan gives exactly the solver's objective
    assert oracle["response_mean"] == pytest.approx(oracle["oracle_objective"], abs=1e-6)
    assert oracle["oracle_bound"] <= oracle["response_mean"] + 1e-6
    for name in HEURISTICS:
        assert oracle["response_mean"] <= _summary(name, [*over, *_fixed_steps(name)])["response_mean"] + 1e-9


def _brute_force_mean_response(engine, steps: int) -> float:
    """Every gang choice and every launch order, list-scheduled by the engine's rules
    (a task starts when it has arrived and its servers are free; warm iff, on each of its
    servers, the previous task ran on exactly this gang)."""
    tasks, n_srv = engine.tasks, engine.n_servers
    gangs = [list(itertools.combinations(range(n_srv), t.k)) for t in tasks]
    best = math.inf
    for choice in itertools.product(*gangs):
        for order in itertools.permutations(range(len(tasks))):
            free = [0.0] * n_srv
            last = [None] * n_srv  # (task, gang) that last ran on each server
            total = 0.0
            for j in order:
                g, t = choice[j], tasks[j]
                start = max([t.arrival] + [free[s] for s in g])
                warm = all(last[s] is not None and last[s] == last[g[0]] and last[s][1] == g for s in g)
                kinds = [engine.kind_of[s] for s in g]
                end = start + engine.profile.duration(kinds, t.model, t.resolution, steps, not warm)
                for s in g:
                    free[s], last[s] = end, (j, g)
                total += end - t.arrival
            best = min(best, total / len(tasks))
    return best


def test_brute_force_enumeration_confirms_the_optimum_on_a_tiny_instance():
    over = [
        "cluster=uniform",
        "cluster.size=2",
        "workload.k_choices=[1,2]",
        "workload.n_tasks=5",
        "workload.initial_queue=2",
        "workload.rate=0.1",
        "seed=3",
        "output.write=false",
        "scheduler.params.workers=1",
    ]
    cfg = compose_experiment(["scheduler=oracle", *over])
    engine = build_engine(cfg)
    assert sorted({t.k for t in engine.tasks}) == [1, 2], "the instance mixes gang sizes"
    expected = _brute_force_mean_response(engine, 20)
    got = run_experiment(cfg, write=False).summary
    assert got["oracle_optimal"] == 1.0
    assert got["response_mean"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_with_the_reward_objective_earns_at_least_every_schedulers_reward(seed):
    # every scheduler chooses from the same steps (18..20; the fixed-steps ones run 20)
    over = [
        "workload.n_tasks=4",
        "workload.initial_queue=2",
        "workload.rate=0.09",
        f"seed={seed}",
        "engine.min_steps=18",
        "engine.max_steps=20",
        "output.write=false",
    ]
    oracle = _summary(
        "oracle",
        [*over, "scheduler.params.objective=reward", "scheduler.params.workers=1", "scheduler.params.time_limit_s=30"],
    )
    assert oracle["oracle_optimal"] == 1.0 and oracle["tasks_done"] == 4
    # the engine's reward of the replayed plan is the model's (rewards rounded to 1e-4 per launch)
    assert oracle["reward_total"] == pytest.approx(oracle["oracle_objective"], abs=1e-3)
    for name in HEURISTICS:
        other = _summary(name, [*over, *_fixed_steps(name)])["reward_total"]
        assert oracle["reward_total"] >= other - 1e-3, name


def test_oracle_rejects_bad_parameters():
    with pytest.raises(ValueError, match="scheduler.params.objective='latency' is invalid; allowed: response, reward"):
        SCHEDULERS.create("oracle", objective="latency")
    with pytest.raises(ValueError, match="time_limit_s=0 is invalid"):
        SCHEDULERS.create("oracle", time_limit_s=0)


def test_the_oracles_replay_passes_the_engine_invariants():
    from eatbench.engine.backend import BackendContext
    from eatbench.engine.profiles import PaperQuality
    from eatbench.experiment.runner import make_scheduler
    from tests.test_engine import CheckingBackend

    cfg = compose_experiment(["scheduler=oracle", *SMALL, "seed=2", "workload.rate=0.11", "scheduler.params.workers=1"])
    cfg.scheduler.params["break_symmetry"] = False  # the plain model (the others run the default)
    engine = build_engine(cfg)
    backend = CheckingBackend(BackendContext(engine.cluster, engine.profile, PaperQuality(), cfg.seed))
    engine.backend = backend
    sched = make_scheduler(cfg)
    sched.reset(cfg.seed, [1, 2, 4])
    records = engine.run(sched)
    assert all(r.status == "done" for r in records) and len(records) == 6
    group_of: dict[int, frozenset] = {}
    for r in sorted(records, key=lambda r: r.start):
        assert r.arrival <= r.start <= r.finish
        events = [e for e in backend.log if e[2] == r.task_id]
        assert [e[1] for e in events] == ["start", "end"] and len(events[0][3]) == r.k
        servers = frozenset(int(s) for s in r.servers.split("-"))
        warm = group_of.get(min(servers)) == servers
        assert r.cold_start == (not warm), f"task {r.task_id}"
        if not warm:
            for s in servers:
                for m in group_of.pop(s, frozenset()):
                    group_of.pop(m, None)
        for s in servers:
            group_of[s] = servers
        expected = engine.profile.duration(r.gpu_kinds.split("-"), r.model, r.resolution, r.steps, r.cold_start)
        assert math.isclose(r.execution, expected, rel_tol=1e-9, abs_tol=1e-9)
    assert engine.summary()["oracle_optimal"] == 1.0


def test_the_reward_objective_refuses_episodes_longer_than_the_window():
    cfg = compose_experiment(["scheduler=oracle", "scheduler.params.objective=reward", "output.write=false"])
    with pytest.raises(ValueError, match="objective='reward' plans episodes of at most engine.window=10 tasks"):
        run_experiment(cfg, write=False)


@pytest.mark.parametrize(
    "method, objective",
    [("search", "response"), ("cpsat", "response"), ("auto", "reward")],
)
def test_the_oracle_places_tasks_only_where_the_gpu_memory_fits(tmp_path, method, objective):
    """With a profile's memory figures, every method plans only gangs that fit (the engine
    refuses any other launch) and stays at least as good as the memory-aware heuristics."""
    from eatbench.engine.profiles import LatencyProfile
    from tests.test_memory import _overrides, _violations, _write_profile

    path = _write_profile(tmp_path / "mem.csv")
    over = _overrides(path, "workload.n_tasks=5", "workload.initial_queue=2", "workload.k_choices=[1,2]", "seed=3")
    if objective == "reward":
        over += ["engine.min_steps=18", "engine.max_steps=20"]
    solver = ["scheduler.params.workers=1", "scheduler.params.time_limit_s=20"]
    cfg = compose_experiment(
        [
            *over,
            "scheduler=oracle",
            f"scheduler.params.method={method}",
            f"scheduler.params.objective={objective}",
            *solver,
        ]
    )
    result = run_experiment(cfg, write=False)
    profile = LatencyProfile.from_csv(path).with_gpu_kinds(cfg.cluster.gpu_kinds)
    assert result.summary["tasks_done"] == 5 and _violations(result.records, profile) == []
    assert result.summary["oracle_optimal"] == 1.0
    metric = "reward_total" if objective == "reward" else "response_mean"
    sign = -1 if objective == "reward" else 1
    for name in ("fifo", "earliest_finish"):
        other = _summary(name, [*over, "scheduler.params.steps=20"])[metric]
        assert sign * result.summary[metric] <= sign * other + 1e-3, name
