"""The clairvoyant oracle: the whole episode known in advance, scheduled optimally with
OR-Tools CP-SAT, then replayed through the engine like any scheduler's decisions.

Model (the engine's rules, exactly): each task runs on one gang of ``k`` servers (every
k-subset of the cluster is a candidate); a server runs one task at a time; a launch is
warm (no cold start) exactly when, on every server of its gang, the task that ran just
before it is one same task that ran on exactly this gang with the same model (that is the
engine's residency rule: any other launch in between would have dissolved the group);
the cluster starts cold. Every task must run; steps are fixed (``steps``). Objective:
the mean response time (finish - arrival) of all tasks. The solver's proven lower bound
is kept beside the best schedule found, so the optimality gap is known.

The schedule is replayed semi-actively: the oracle launches a task once every task
planned before it on its servers has started, reserving its gang (the engine starts it
when the last member frees), so each task starts at max(arrival, predecessors' ends) and
the engine's own records, durations and cold flags are what count. The oracle ignores the
visible-queue window (it is clairvoyant) and plans on the ``event`` clock.

Install the solver with ``pip install 'eatbench[oracle]'`` (``ortools``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

from eatbench.backends.base import BackendContext
from eatbench.backends.sim import SimBackend
from eatbench.engine import Decision, Engine
from eatbench.schedulers.base import SCHEDULERS, Scheduler
from eatbench.tasks import Task, TaskState

OBJECTIVES = ("response",)
HINT_FROM = ("earliest_finish", "fifo", "round_robin", "least_loaded")  # fixed-steps heuristics
MAX_CANDIDATES = 20000  # (task, gang) pairs; beyond this the model is too large to solve


def _cp_model():
    try:
        from ortools.sat.python import cp_model
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "scheduler=oracle needs OR-Tools (CP-SAT): pip install 'eatbench[oracle]' (or: pip install ortools)"
        ) from err
    return cp_model


@SCHEDULERS.register("oracle")
class OracleScheduler(Scheduler):
    """Clairvoyant optimum by CP-SAT (see the module docstring).

    :param steps: denoising steps of every task.
    :param objective: ``response`` (minimise the mean response time, s).
    :param time_limit_s: solver wall-time limit per episode (s).
    :param workers: CP-SAT subsolvers (LNS, core, fixed search, ...), interleaved on one
        thread: one core, deterministic for a given time limit's worth of work.
    :param scale: time units per second in the model (times are rounded to 1/scale s).
    """

    def __init__(
        self,
        steps: int = 20,
        objective: str = "response",
        time_limit_s: float = 100.0,
        workers: int = 8,
        scale: int = 1000,
    ) -> None:
        super().__init__(steps)
        if objective not in OBJECTIVES:
            raise ValueError(f"scheduler.params.objective={objective!r} is invalid; allowed: {', '.join(OBJECTIVES)}")
        if not time_limit_s > 0:
            raise ValueError(f"scheduler.params.time_limit_s={time_limit_s} is invalid; allowed: seconds > 0")
        if workers < 1:
            raise ValueError(f"scheduler.params.workers={workers} is invalid; allowed: an integer >= 1")
        if scale < 1:
            raise ValueError(f"scheduler.params.scale={scale} is invalid; allowed: an integer >= 1")
        _cp_model()  # fail early, with the install hint, if OR-Tools is missing
        self.objective = objective
        self.time_limit_s = float(time_limit_s)
        self.workers = int(workers)
        self.scale = int(scale)
        self._plan: dict[int, tuple[tuple[int, ...], list[int]]] | None = None
        self._order: list[int] = []
        self._stats: dict[str, float] = {}

    def reset(self, seed: int, k_options: list[int]) -> None:
        super().reset(seed, k_options)
        self._plan, self._order, self._stats = None, [], {}

    # -- replay ---------------------------------------------------------------------
    def decide(self, engine: Engine) -> Decision | None:
        if self._plan is None:
            self._solve(engine)
        assert self._plan is not None
        queued = {t.id for t in engine.queue}
        tasks = engine.tasks
        steps = self.clamp_steps(engine, self.steps)
        for tid in self._order:
            if tid not in queued:
                continue
            servers, preds = self._plan[tid]
            if any(engine.reserved_by[s] >= 0 for s in servers):
                continue
            if all(tasks[p].state in (TaskState.RUNNING, TaskState.DONE, TaskState.FAILED) for p in preds):
                return Decision(tid, steps, servers)
        return None

    def summary_extra(self) -> dict[str, float]:
        """Solver figures for the run's summary (see ``Engine.summary``)."""
        return dict(self._stats)

    # -- a first schedule -------------------------------------------------------------
    def _best_heuristic(self, engine: Engine, steps: int) -> list | None:
        """Records of the best fixed-steps heuristic on a private copy of the episode (the
        solver starts from it, so the oracle is never worse than these heuristics)."""
        best = None
        table = engine.quality_table
        for name in HINT_FROM:
            tasks = [dataclasses.replace(t, state=TaskState.PENDING) for t in engine.tasks]
            backend = SimBackend(BackendContext(engine.cluster, engine.profile, table.__getitem__))
            config = dataclasses.replace(engine.config, decision_mode="event")
            sim = Engine(engine.cluster, tasks, backend, engine.profile, table, config, None)
            sched = SCHEDULERS.create(name, steps=steps)
            sched.reset(0, self.k_options)
            records = sim.run(sched)
            if any(r.status != "done" for r in records):
                continue
            total = sum(r.response for r in records)
            if best is None or total < best[0]:
                best = (total, records)
        return None if best is None else best[1]

    # -- the model ------------------------------------------------------------------
    @staticmethod
    def _demand(m, x, dur, j: int, n_srv: int):
        """Servers task ``j`` occupies (a constant when its k is fixed)."""
        ks = {len(key[1]) for key in dur if key[0] == j}
        if len(ks) == 1:
            return ks.pop()
        d = m.new_int_var(1, n_srv, f"k{j}")
        m.add(d == sum(x[key] * len(key[1]) for key in dur if key[0] == j))
        return d

    def _hint(self, m, engine: Engine, steps: int, x, start, arc, warm_lit) -> None:
        """Hint the best heuristic's schedule (relabelled so that task 0 uses the first k
        servers, as the symmetry break requires)."""
        records = self._best_heuristic(engine, steps)
        if records is None:
            return
        index = {t.id: j for j, t in enumerate(engine.tasks)}
        gang = {index[r.task_id]: tuple(int(s) for s in r.servers.split("-")) for r in records}
        if len(set(engine.kind_of)) == 1:
            g0 = gang[0]
            rest = [s for s in range(engine.n_servers) if s not in g0]
            relabel = {old: new for new, old in enumerate(list(g0) + rest)}
            gang = {j: tuple(sorted(relabel[s] for s in g)) for j, g in gang.items()}
        scale = self.scale
        for r in records:
            j = index[r.task_id]
            m.add_hint(start[j], int(round(r.start * scale)))
            for key, var in x.items():
                if key[0] == j:
                    m.add_hint(var, key[1] == gang[j])
        by_server: list[list[int]] = [[] for _ in range(engine.n_servers)]
        for j in sorted(gang, key=lambda j: records[j].start):
            for s in gang[j]:
                by_server[s].append(j)
        for s, seq in enumerate(by_server):
            pairs = set(zip([-1, *seq], [*seq, -1], strict=True))
            for key, lit in arc[s].items():
                m.add_hint(lit, key in pairs)
        for (i, j, g), lit in warm_lit.items():
            s0 = g[0]
            seq = by_server[s0]
            warm = not records[j].cold_start and gang[j] == g and gang[i] == g and i in seq and j in seq
            m.add_hint(lit, warm and seq.index(j) == seq.index(i) + 1)

    def _solve(self, engine: Engine) -> None:
        cp_model = _cp_model()
        tasks: list[Task] = engine.tasks
        n, n_srv, scale = len(tasks), engine.n_servers, self.scale
        steps = self.clamp_steps(engine, self.steps)
        gangs_of_k = {
            k: list(itertools.combinations(range(n_srv), k)) for k in {kk for t in tasks for kk in self.ks_for(t)}
        }
        if sum(len(gangs_of_k[k]) for t in tasks for k in self.ks_for(t)) > MAX_CANDIDATES:
            raise ValueError(
                f"scheduler=oracle: {n} tasks on {n_srv} servers give more than {MAX_CANDIDATES} (task, gang) "
                "candidates; allowed: smaller episodes or clusters"
            )

        def units(seconds: float) -> int:
            return int(round(seconds * scale))

        kinds = engine.kind_of
        m = cp_model.CpModel()
        arrival = [units(t.arrival) for t in tasks]
        dur: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}  # (task, gang) -> (warm, cold)
        for j, t in enumerate(tasks):
            for k in self.ks_for(t):
                for g in gangs_of_k[k]:
                    ks = [kinds[s] for s in g]
                    dur[j, g] = (
                        units(engine.profile.duration(ks, t.model, t.resolution, steps, False)),
                        units(engine.profile.duration(ks, t.model, t.resolution, steps, True)),
                    )
        horizon = max(arrival) + sum(max(c for (jj, _), (_, c) in dur.items() if jj == j) for j in range(n))
        x = {key: m.new_bool_var(f"x{key}") for key in dur}
        start = [m.new_int_var(arrival[j], horizon, f"s{j}") for j in range(n)]
        end = [m.new_int_var(arrival[j], horizon, f"e{j}") for j in range(n)]
        length = [m.new_int_var(0, horizon, f"d{j}") for j in range(n)]
        for j in range(n):
            m.add_exactly_one(x[key] for key in dur if key[0] == j)
            m.add(end[j] == start[j] + length[j])
        on = [[m.new_bool_var(f"y{j},{s}") for s in range(n_srv)] for j in range(n)]
        for j in range(n):
            for s in range(n_srv):
                m.add(on[j][s] == sum(x[key] for key in dur if key[0] == j and s in key[1]))

        # per server: one task at a time, and the immediate-predecessor relation (circuit)
        arc: list[dict[tuple[int, int], object]] = []
        for s in range(n_srv):
            ivs = [m.new_optional_interval_var(start[j], length[j], end[j], on[j][s], f"i{j},{s}") for j in range(n)]
            m.add_no_overlap(ivs)
            arcs = [(0, 0, m.new_bool_var(f"empty{s}"))]
            lits: dict[tuple[int, int], object] = {}
            for j in range(n):
                arcs.append((j + 1, j + 1, ~on[j][s]))
                first, last = m.new_bool_var(""), m.new_bool_var("")
                arcs += [(0, j + 1, first), (j + 1, 0, last)]
                lits[-1, j], lits[j, -1] = first, last
                for i in range(n):
                    if i != j:
                        lit = m.new_bool_var(f"a{s},{i},{j}")
                        arcs.append((i + 1, j + 1, lit))
                        lits[i, j] = lit
                        m.add(start[j] >= end[i]).only_enforce_if(lit)
            m.add_circuit(arcs)
            arc.append(lits)

        # warm launches: j follows i directly on every server of the same gang, same model
        warm_lit: dict[tuple[int, int, tuple[int, ...]], object] = {}
        warm_of: list[list] = [[] for _ in range(n)]
        for (j, g), (dw, dc) in dur.items():
            terms = []
            for i in range(n):
                if i == j or (i, g) not in dur or tasks[i].model != tasks[j].model or dc <= dw:
                    continue
                w = m.new_bool_var(f"w{i},{j},{g}")
                m.add_implication(w, x[i, g])
                m.add_implication(w, x[j, g])
                for s in g:
                    m.add_implication(w, arc[s][i, j])
                terms.append(w)
                warm_lit[i, j, g] = w
                warm_of[j].append((w, dc - dw))
            if terms:
                m.add_at_most_one(terms)
        for j in range(n):
            m.add(
                length[j]
                == sum(x[key] * dur[key][1] for key in dur if key[0] == j) - sum(w * gain for w, gain in warm_of[j])
            )
        m.minimize(sum(end[j] - arrival[j] for j in range(n)))
        # redundant: the cluster runs at most n_srv servers' worth of gangs at once
        m.add_cumulative(
            [m.new_interval_var(start[j], length[j], end[j], f"c{j}") for j in range(n)],
            [self._demand(m, x, dur, j, n_srv) for j in range(n)],
            n_srv,
        )
        if len(set(kinds)) == 1:  # identical servers: relabel so that task 0 uses the first k
            k0 = tasks[0].k
            if k0 is not None:
                m.add(x[0, tuple(range(k0))] == 1)
        self._hint(m, engine, steps, x, start, arc, warm_lit)

        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = self.time_limit_s
        solver.parameters.num_workers = self.workers
        # several subsolvers take turns on one thread (better schedules on long episodes;
        # workers=1, one plain search, proves small episodes optimal faster)
        solver.parameters.interleave_search = self.workers > 1
        t0 = time.perf_counter()
        status = solver.solve(m)
        solve_s = time.perf_counter() - t0
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            raise RuntimeError(
                f"scheduler=oracle found no schedule within time_limit_s={self.time_limit_s} "
                f"(solver status {solver.status_name(status)}); raise scheduler.params.time_limit_s"
            )
        plan: dict[int, tuple[tuple[int, ...], list[int]]] = {}
        for j in range(n):
            g = next(key[1] for key in dur if key[0] == j and solver.boolean_value(x[key]))
            preds = [
                i for s in g for (i, jj), lit in arc[s].items() if jj == j and i >= 0 and solver.boolean_value(lit)
            ]
            plan[tasks[j].id] = (g, sorted(set(tasks[i].id for i in preds)))
        self._plan = plan
        self._order = [tasks[j].id for j in sorted(range(n), key=lambda j: (solver.value(start[j]), j))]
        obj, bound = solver.objective_value / scale / n, solver.best_objective_bound / scale / n
        self._stats = {
            "oracle_objective": obj,
            "oracle_bound": bound,
            "oracle_gap": (obj - bound) / obj if obj > 0 else 0.0,
            "oracle_optimal": float(status == cp_model.OPTIMAL),
            "oracle_solve_s": solve_s,
        }
        if not math.isfinite(obj):  # pragma: no cover - guarded by the status check
            raise RuntimeError("scheduler=oracle: the solver returned no objective")
