"""The clairvoyant oracle: the whole episode known in advance, scheduled optimally (at
fixed steps by an exact branch and bound, ``oracle_search``, or OR-Tools CP-SAT; with
chosen steps by CP-SAT), then replayed through the engine like any scheduler's decisions.

Model (the engine's rules, exactly): each task runs on one gang of ``k`` servers (every
k-subset of the cluster is a candidate); a server runs one task at a time; a launch is
warm (no cold start) exactly when, on every server of its gang, the task that ran just
before it is one same task that ran on exactly this gang with the same model (that is the
engine's residency rule: any other launch in between would have dissolved the group);
the cluster starts cold. Every task must run. Two objectives: ``response`` (steps fixed
to ``steps``; minimise the mean response time, finish - arrival, of all tasks) and
``reward`` (steps chosen per task from ``step_grid``; maximise the total paper reward of
the launches, with the engine's decision-time semantics: see ``_solve_reward``). The
proven bound is kept beside the best schedule found, so the optimality gap is known.

Methods for ``response`` (``method``). ``search`` (``oracle_search.BranchAndBound``):
launches in order of start time, each as early as its arrival and its gang allow, with
per-class lower bounds and state dominance, within a deterministic node budget; it
proves the paper's 32-task episodes on 4 servers optimal in a few thousand nodes (about
a second). ``cpsat``: the CP-SAT model below (its own bound is weak on those episodes: the
linear relaxation of the warm/cold indicators misses most cold starts). ``auto`` (the
default): the search, and CP-SAT too, hinted with the search's schedule, when the search
ran out of nodes or the cluster has too many candidate gangs for it; the better schedule
and the larger bound are kept. Summary: ``oracle_search_bound``, ``oracle_search_nodes``,
``oracle_search_s`` when the search ran; ``oracle_solver_bound`` and
``oracle_relaxation_bound`` when CP-SAT ran.

Two valid additions to the CP-SAT ``response`` model. (1) Dominance: interchangeable tasks (same
k, model and resolution) start in arrival order; exchanging two of them exchanges their
whole assignments, so some optimal schedule does. (2) A lower bound from a relaxation
solved beforehand by CP-SAT (``_relaxation_bound``, ``_lower_bound``): gangs forgotten
(the cluster as ``servers`` units of a cumulative resource), warm launches kept as a
matching of each task to an earlier one of the same model and k with no task in between
that must share a server with that gang, which keeps the cold starts forced by switching
between full-cluster and smaller gangs that the exact model's own linear relaxation
misses. Long episodes are cut in two by arrival first (bounds of disjoint task sets add
up). The reported ``oracle_bound`` is max(exact model's bound, relaxation's bound), both
also in the summary (``oracle_solver_bound``, ``oracle_relaxation_bound``), and the
relaxation's bound is a constraint of the exact model. On the paper's 32-task episodes at
high load the relaxation's proof, not its value, is what limits the bound (its own best
solution lies within a few percent of the exact schedule; see the README).

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

from eatbench.backends.sim import SimBackend
from eatbench.core.tasks import Task, TaskState
from eatbench.engine.backend import BackendContext
from eatbench.engine.loop import Decision, Engine
from eatbench.engine.view import EngineView
from eatbench.schedulers.base import SCHEDULERS, Scheduler
from eatbench.schedulers.oracle_search import BranchAndBound, SearchClass, SearchResult

OBJECTIVES = ("response", "reward")
METHODS = ("auto", "search", "cpsat")
SEARCH_MAX_GANGS = 5000  # candidate gangs over the task classes; beyond, auto uses CP-SAT


@dataclasses.dataclass(frozen=True)
class _Launch:
    """A planned launch, shaped like an engine record for ``_hint`` and ``_plan_from``."""

    task_id: int
    start: float
    servers: str
    cold_start: bool
    arrival: float


REWARD_SCALE = 10_000  # reward units per unit of the paper reward in the reward model
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
    """Clairvoyant optimum by exact search or CP-SAT (see the module docstring).

    :param steps: denoising steps of every task.
    :param objective: ``response`` (minimise the mean response time, s) or ``reward``
        (maximise the total paper reward; episodes of at most ``engine.window`` tasks).
    :param time_limit_s: solver work limit per episode, in CP-SAT's deterministic seconds
        (about a second of work each; not wall time, so results do not depend on the machine).
    :param workers: CP-SAT subsolvers (LNS, core, fixed search, ...), interleaved on one
        thread: one core, deterministic for a given time limit's worth of work.
    :param scale: time units per second in the model (times are rounded to 1/scale s;
        the reward objective uses at least 100000).
    :param step_grid: steps the reward objective may choose from (default: every allowed).
    :param break_symmetry: on identical servers, number them in the order of their first
        tasks (finds much better schedules on long episodes; proofs on tiny ones may slow).
    :param bound_time_s: work limit (CP-SAT deterministic seconds) of the relaxation that
        bounds the optimum from below (see ``_lower_bound``), spent before the exact model;
        0 (the default: sweeps stay fast) keeps only the exact model's own bound.
    :param method: fixed steps only: ``search`` (the exact branch and bound of
        ``oracle_search``), ``cpsat`` (the CP-SAT model) or ``auto`` (the search; CP-SAT
        too when the search ran out of nodes, keeping the better schedule and bound).
    :param node_budget: most nodes the search expands (a deterministic work limit).
    """

    def __init__(
        self,
        steps: int = 20,
        objective: str = "response",
        time_limit_s: float = 100.0,
        workers: int = 8,
        scale: int = 1000,
        step_grid: list[int] | None = None,
        break_symmetry: bool = True,
        bound_time_s: float = 0.0,
        method: str = "auto",
        node_budget: int = 50_000,
    ) -> None:
        super().__init__(steps)
        if method not in METHODS:
            raise ValueError(f"scheduler.params.method={method!r} is invalid; allowed: {', '.join(METHODS)}")
        if not (isinstance(node_budget, int) and node_budget >= 1):
            raise ValueError(f"scheduler.params.node_budget={node_budget!r} is invalid; allowed: an integer >= 1")
        if objective not in OBJECTIVES:
            raise ValueError(f"scheduler.params.objective={objective!r} is invalid; allowed: {', '.join(OBJECTIVES)}")
        if not time_limit_s > 0:
            raise ValueError(f"scheduler.params.time_limit_s={time_limit_s} is invalid; allowed: seconds > 0")
        if not bound_time_s >= 0:
            raise ValueError(f"scheduler.params.bound_time_s={bound_time_s} is invalid; allowed: seconds >= 0")
        if workers < 1:
            raise ValueError(f"scheduler.params.workers={workers} is invalid; allowed: an integer >= 1")
        if scale < 1:
            raise ValueError(f"scheduler.params.scale={scale} is invalid; allowed: an integer >= 1")
        _cp_model()  # fail early, with the install hint, if OR-Tools is missing
        self.objective = objective
        self.time_limit_s = float(time_limit_s)
        self.workers = int(workers)
        self.scale = int(scale)
        self.step_grid = [int(v) for v in step_grid] if step_grid else None
        self.break_symmetry = bool(break_symmetry)
        self.bound_time_s = float(bound_time_s)
        self.method = method
        self.node_budget = node_budget
        self._timed: list[tuple[float, int, tuple[int, ...], int]] = []  # reward: planned launches
        self._next = 0
        self._tol = 1e-6
        self._plan: dict[int, tuple[tuple[int, ...], list[int]]] | None = None
        self._order: list[int] = []
        self._stats: dict[str, float] = {}

    def reset(self, seed: int, k_options: list[int]) -> None:
        super().reset(seed, k_options)
        self._plan, self._order, self._stats = None, [], {}
        self._timed, self._next = [], 0

    # -- replay ---------------------------------------------------------------------
    def decide(self, view: EngineView) -> Decision | None:
        if self._plan is None:
            if self.objective == "reward":
                self._solve_reward(view)
            else:
                self._solve(view)
        assert self._plan is not None
        if self.objective == "reward":
            return self._replay_timed(view)
        queued = view.queued_ids()
        steps = self.clamp_steps(view, self.steps)
        for tid in self._order:
            if tid not in queued:
                continue
            servers, preds = self._plan[tid]
            if any(view.is_reserved(s) for s in servers):
                continue
            if all(view.started(p) for p in preds):
                return Decision(tid, steps, servers)
        return None

    def _replay_timed(self, view: EngineView) -> Decision | None:
        """Reward plan: decide each task at its planned instant, in the planned order (the
        reward depends on the queue at the decision); busy servers are reserved."""
        if self._next >= len(self._timed):
            return None
        start, tid, servers, steps = self._timed[self._next]
        if start > view.now + self._tol or tid not in view.queued_ids():
            return None
        if any(view.is_reserved(s) for s in servers):
            return None
        self._next += 1
        return Decision(tid, steps, servers)

    def _run_solver(self, cp_model, model) -> tuple:
        """Solve ``model``: ``(solver, status, wall seconds)``; raises when no schedule was found.

        A deterministic work limit (not wall time) and a fixed seed: the same episode gives the
        same schedule on any machine and under any load. With several workers, subsolvers take
        turns on one thread (better schedules on long episodes; ``workers=1``, one plain
        search, proves small episodes optimal faster)."""
        solver = cp_model.CpSolver()
        solver.parameters.max_deterministic_time = self.time_limit_s
        solver.parameters.random_seed = 0
        solver.parameters.num_workers = self.workers
        solver.parameters.interleave_search = self.workers > 1
        t0 = time.perf_counter()
        status = solver.solve(model)
        solve_s = time.perf_counter() - t0
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            raise RuntimeError(
                f"scheduler=oracle found no schedule within time_limit_s={self.time_limit_s} "
                f"(solver status {solver.status_name(status)}); raise scheduler.params.time_limit_s"
            )
        return solver, status, solve_s

    def summary_extra(self) -> dict[str, float]:
        """Solver figures for the run's summary (see ``Engine.summary``)."""
        return dict(self._stats)

    # -- a first schedule -------------------------------------------------------------
    def _best_heuristic(self, view: EngineView, steps: int) -> list | None:
        """Records of the best fixed-steps heuristic on a private copy of the episode (the
        solver starts from it, so the oracle is never worse than these heuristics)."""
        best = None
        table = list(view.quality_table)
        for name in HINT_FROM:
            tasks = [dataclasses.replace(t, state=TaskState.PENDING) for t in view.episode_tasks()]
            backend = SimBackend(BackendContext(view.cluster, view.profile, table.__getitem__))
            config = dataclasses.replace(view.engine_config(), decision_mode="event")
            sim = Engine(view.cluster, tasks, backend, view.profile, table, config, None)
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

    def _classes(self, tasks: list[Task]) -> list[list[int]]:
        """Indices of interchangeable tasks (same candidate k, model and resolution: the same
        durations on every gang and the same warm rule), each class in arrival order."""
        classes: dict[tuple, list[int]] = {}
        for j, t in enumerate(tasks):
            classes.setdefault((tuple(self.ks_for(t)), t.model, t.resolution), []).append(j)
        return [sorted(js, key=lambda j: (tasks[j].arrival, j)) for js in classes.values()]

    def _hint(self, m, view: EngineView, records: list | None, x, start, arc, warm_lit) -> None:
        """Hint a schedule (the best heuristic's or the search's; servers relabelled in the
        order of their first tasks, as the symmetry break requires; interchangeable tasks
        renamed to launch in arrival order, as the dominance rule requires: the same schedule)."""
        if records is None:
            return
        tasks_all = view.episode_tasks()
        index = {t.id: j for j, t in enumerate(tasks_all)}
        records = sorted(records, key=lambda r: index[r.task_id])
        renamed = list(records)
        for cls in self._classes(tasks_all):
            slots = sorted((records[j] for j in cls), key=lambda r: (r.start, index[r.task_id]))
            for j, r in zip(cls, slots, strict=True):
                renamed[j] = dataclasses.replace(r, task_id=tasks_all[j].id, arrival=tasks_all[j].arrival)
        records = renamed
        gang = {index[r.task_id]: tuple(int(s) for s in r.servers.split("-")) for r in records}
        if self.break_symmetry and len(set(view.gpu_kinds)) == 1:
            n = len(tasks_all)
            first = [n] * view.n_servers
            for j in sorted(gang, key=lambda j: (records[j].start, j), reverse=True):
                for s in gang[j]:
                    first[s] = j
            relabel = {old: new for new, old in enumerate(sorted(range(view.n_servers), key=lambda s: first[s]))}
            gang = {j: tuple(sorted(relabel[s] for s in g)) for j, g in gang.items()}
        scale = self.scale
        for r in records:
            j = index[r.task_id]
            m.add_hint(start[j], int(round(r.start * scale)))
            for key, var in x.items():
                if key[0] == j:
                    m.add_hint(var, key[1] == gang[j])
        by_server: list[list[int]] = [[] for _ in range(view.n_servers)]
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

    def _relaxation_bound(
        self, view: EngineView, steps: int, time_limit_s: float, part: list[int], cuts: list[tuple[list[int], int]] = ()
    ) -> tuple[float, float]:
        """A lower bound on the total response time (model units) of the tasks ``part``
        (indices) in every schedule of the episode, from a relaxation solved by CP-SAT (its
        proven bound counts, so the relaxation need not be solved to optimality).

        The relaxation forgets which servers a task runs on: the tasks of ``part`` hold
        ``k`` of the cluster's servers (a cumulative resource; the other tasks are dropped,
        which only frees servers), last their fastest warm or cold duration over every
        candidate gang, and run warm only after a distinct task of the same model and a
        common k (each task is the warm predecessor of at most one): either one of ``part``
        that ended before, with no task of ``part`` in between that must share a server with
        that gang (a task of k' with k + k' > servers: any task against a full-cluster gang,
        a full-cluster task against any gang), or a dropped one, which cannot end before its
        arrival plus its fastest warm duration. Interchangeable tasks start in arrival order
        (as in the exact model; some optimal schedule does). The restriction of every
        schedule to ``part`` maps onto a solution of the relaxation of at most its total, so
        the bound is valid, and bounds of disjoint parts add up (``cuts``: such bounds of
        subsets of ``part``, as constraints).

        Returns the bound and the deterministic seconds of work spent."""
        cp_model = _cp_model()
        tasks = view.episode_tasks()
        n, n_srv, scale, kinds = len(tasks), view.n_servers, self.scale, view.gpu_kinds
        ks = [self.ks_for(t) for t in tasks]

        def fastest(j: int, cold: bool) -> int:  # rounded down, as arrivals: see _lower_bound
            t = tasks[j]
            return min(
                math.floor(view.profile.duration([kinds[s] for s in g], t.model, t.resolution, steps, cold) * scale)
                for k in ks[j]
                for g in itertools.combinations(range(n_srv), k)
            )

        inside = set(part)
        dw = [fastest(j, False) for j in range(n)]
        dc = [fastest(j, True) for j in range(n)]
        arrival = [math.floor(t.arrival * scale) for t in tasks]
        horizon = max(arrival) + sum(dc)
        m = cp_model.CpModel()
        start = {j: m.new_int_var(arrival[j], horizon, "") for j in part}
        end = {j: m.new_int_var(arrival[j], horizon, "") for j in part}
        length = {j: m.new_int_var(min(dw[j], dc[j]), dc[j], "") for j in part}
        classes = self._classes(tasks)
        order = {j: r for cls in classes for r, j in enumerate(cls)}
        same_class = {j: tuple(cls) for cls in classes for j in cls}
        pred: dict[int, list] = {j: [] for j in part}
        succ: dict[int, list] = {j: [] for j in range(n)}
        for i in range(n):
            for j in part:
                common = set(ks[i]) & set(ks[j])
                if i == j or tasks[i].model != tasks[j].model or not common or dc[j] <= dw[j]:
                    continue
                if same_class[i] == same_class[j] and order[i] > order[j]:
                    continue  # i starts after j (arrival order), so it cannot precede it
                p = m.new_bool_var("")
                if i in inside:
                    m.add(end[i] <= start[j]).only_enforce_if(p)
                else:  # a dropped task: it started at or after its arrival
                    m.add(start[j] >= arrival[i] + dw[i]).only_enforce_if(p)
                for f in part:
                    if f not in (i, j) and min(ks[f]) + min(common) > n_srv:
                        after, before = m.new_bool_var(""), m.new_bool_var("")
                        if i in inside:
                            m.add(end[f] <= start[i]).only_enforce_if(before)
                        else:  # f ended before i started, at most start[j] - dw[i]
                            m.add(end[f] + dw[i] <= start[j]).only_enforce_if(before)
                        m.add(start[f] >= end[j]).only_enforce_if(after)
                        m.add_bool_or([before, after]).only_enforce_if(p)
                pred[j].append(p)
                succ[i].append(p)
        for j in range(n):
            m.add_at_most_one(succ[j])
        for j in part:
            m.add_at_most_one(pred[j])
            m.add(length[j] == dc[j] - (dc[j] - dw[j]) * sum(pred[j]))
            m.add(end[j] == start[j] + length[j])
        m.add_cumulative(
            [m.new_interval_var(start[j], length[j], end[j], "") for j in part],
            [min(ks[j]) for j in part],
            n_srv,
        )
        for cls in classes:
            for a, b in itertools.pairwise([j for j in cls if j in inside]):
                m.add(start[a] <= start[b])
        m.minimize(sum(end[j] - arrival[j] for j in part))
        solver = cp_model.CpSolver()
        solver.parameters.max_deterministic_time = time_limit_s
        solver.parameters.random_seed = 0
        solver.parameters.num_workers = 1  # one plain search: it proves these small models fastest
        for subset, bound in cuts:
            m.add(sum(end[j] - arrival[j] for j in subset) >= bound)
        status = solver.solve(m)
        spent = solver.response_proto.deterministic_time
        if status == cp_model.INFEASIBLE:  # pragma: no cover - every schedule is a solution
            raise RuntimeError("scheduler=oracle: the relaxation has no solution (a bug in the model)")
        lower = sum(dw[j] for j in part)  # every task warm, no wait
        return max(float(lower), float(solver.best_objective_bound)), spent

    def _lower_bound(self, view: EngineView, steps: int) -> float:
        """A lower bound (model units) on the total response of every schedule, from the
        relaxation of ``_relaxation_bound`` within ``bound_time_s`` deterministic seconds.

        Up to 12 tasks, the whole episode is one part. Longer episodes are first cut in
        two by arrival (the first 5/8 of the tasks, then the rest): two small relaxations
        that CP-SAT usually proves optimal, whose bounds add up; then the whole episode's
        relaxation, with the two part bounds as constraints, improves on their sum with the
        budget left. Durations and arrivals are rounded down to model units, so the bound
        holds for the engine's exact times after subtracting one unit per task (the rounding
        of the arrival)."""
        tasks = view.episode_tasks()
        n = len(tasks)
        every = sorted(range(n), key=lambda j: (tasks[j].arrival, j))
        budget = self.bound_time_s
        cuts: list[tuple[list[int], int]] = []
        best = 0.0
        if n > 12:
            cut = math.ceil(5 * n / 8)
            total = 0.0
            for part in (every[:cut], every[cut:]):
                bound, spent = self._relaxation_bound(view, steps, budget / 3, part)
                budget -= spent
                cuts.append((part, math.ceil(bound - 1e-9)))
                total += bound
            best = total
        if budget > 0.5:
            bound, _ = self._relaxation_bound(view, steps, budget, every, cuts)
            best = max(best, bound)
        return best - n

    def _solve_cpsat(self, view: EngineView, hint: list | None) -> None:
        """The CP-SAT model (see the module docstring), hinted with ``hint`` (records-like
        launches: ``task_id``, ``start``, ``servers``, ``cold_start``, ``arrival``)."""
        cp_model = _cp_model()
        tasks: tuple[Task, ...] = view.episode_tasks()
        n, n_srv, scale = len(tasks), view.n_servers, self.scale
        steps = self.clamp_steps(view, self.steps)
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

        kinds = view.gpu_kinds
        m = cp_model.CpModel()
        arrival = [units(t.arrival) for t in tasks]
        dur: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}  # (task, gang) -> (warm, cold)
        for j, t in enumerate(tasks):
            for k in self.ks_for(t):
                for g in gangs_of_k[k]:
                    if not view.fits(t, g):  # GPU memory (always true without memory figures)
                        continue
                    ks = [kinds[s] for s in g]
                    dur[j, g] = (
                        units(view.profile.duration(ks, t.model, t.resolution, steps, False)),
                        units(view.profile.duration(ks, t.model, t.resolution, steps, True)),
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
        first_id: list = []
        for s in range(n_srv):
            ivs = [m.new_optional_interval_var(start[j], length[j], end[j], on[j][s], f"i{j},{s}") for j in range(n)]
            m.add_no_overlap(ivs)
            empty = m.new_bool_var(f"empty{s}")
            arcs = [(0, 0, empty)]
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
            # the id of the server's first task (n + 1: none), for the symmetry break
            first_id.append(sum((j + 1) * lits[-1, j] for j in range(n)) + (n + 1) * empty)

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
        total = sum(end[j] - arrival[j] for j in range(n))
        m.minimize(total)
        relaxed = self._lower_bound(view, steps) if self.bound_time_s > 0 else 0.0
        if relaxed > 0:  # valid: every schedule's total is at least the relaxation's bound
            m.add(total >= math.floor(relaxed))
        # redundant: the cluster runs at most n_srv servers' worth of gangs at once
        m.add_cumulative(
            [m.new_interval_var(start[j], length[j], end[j], f"c{j}") for j in range(n)],
            [self._demand(m, x, dur, j, n_srv) for j in range(n)],
            n_srv,
        )
        if (
            self.break_symmetry and len(set(kinds)) == 1
        ):  # identical servers: number them in the order of their first tasks
            for s in range(n_srv - 1):
                m.add(first_id[s] <= first_id[s + 1])
        # dominance: interchangeable tasks start in arrival order (swapping two of them
        # swaps their whole assignments: same durations, same warm flags, same total)
        for cls in self._classes(tasks):
            for a, b in itertools.pairwise(cls):
                m.add(start[a] <= start[b])
        self._hint(m, view, hint, x, start, arc, warm_lit)

        solver, status, solve_s = self._run_solver(cp_model, m)
        plan: dict[int, tuple[tuple[int, ...], list[int]]] = {}
        for j in range(n):
            g = next(key[1] for key in dur if key[0] == j and solver.boolean_value(x[key]))
            preds = [
                i for s in g for (i, jj), lit in arc[s].items() if jj == j and i >= 0 and solver.boolean_value(lit)
            ]
            plan[tasks[j].id] = (g, sorted(set(tasks[i].id for i in preds)))
        self._plan = plan
        self._order = [tasks[j].id for j in sorted(range(n), key=lambda j: (solver.value(start[j]), j))]
        # the plan as the engine will run it (each task as early as its servers allow: at
        # most the solver's times, which may hold slack when the time limit stopped it)
        obj = min(solver.objective_value / scale / n, self._replayed_mean_response(view, steps))
        solver_bound = solver.best_objective_bound / scale / n
        relaxed_bound = relaxed / scale / n
        bound = max(solver_bound, relaxed_bound)
        self._stats = {
            "oracle_objective": obj,
            "oracle_bound": bound,
            "oracle_solver_bound": solver_bound,
            "oracle_relaxation_bound": relaxed_bound,
            "oracle_gap": max(0.0, (obj - bound) / obj) if obj > 0 else 0.0,
            "oracle_optimal": float(status == cp_model.OPTIMAL),
            "oracle_solve_s": solve_s,
        }
        if not math.isfinite(obj):  # pragma: no cover - guarded by the status check
            raise RuntimeError("scheduler=oracle: the solver returned no objective")

    def _solve(self, view: EngineView) -> None:
        """Fixed steps, minimum mean response: the exact search (``method`` search or auto),
        then CP-SAT (``method`` cpsat, or auto when the search ran out of nodes), keeping
        the better schedule and the larger proven bound."""
        steps = self.clamp_steps(view, self.steps)
        tasks = view.episode_tasks()
        n = len(tasks)
        heuristic = self._best_heuristic(view, steps)
        if self.method == "cpsat" or (self.method == "auto" and not self._search_fits(view)):
            self._solve_cpsat(view, heuristic)
            return
        t0 = time.perf_counter()
        upper = math.inf if heuristic is None else sum(r.finish - r.arrival for r in heuristic)
        result = self._search(view, steps, upper)
        search_s = time.perf_counter() - t0
        if result.launches:
            launches = [
                _Launch(tid, start, "-".join(map(str, g)), cold, 0.0) for tid, g, start, cold in result.launches
            ]
        elif heuristic is not None:
            launches = [_Launch(r.task_id, r.start, r.servers, r.cold_start, r.arrival) for r in heuristic]
        else:
            raise RuntimeError(
                f"scheduler=oracle: the search found no schedule within node_budget={self.node_budget}; "
                "raise scheduler.params.node_budget or use method=cpsat"
            )
        self._plan_from(launches)
        obj = self._replayed_mean_response(view, steps)
        # the search's floats: its bound is the exact total of some schedule's sums, so allow rounding
        search_bound = result.bound / n - 1e-9
        stats = {
            "oracle_search_bound": search_bound,
            "oracle_search_nodes": float(result.nodes),
            "oracle_search_s": search_s,
        }
        if self.method == "auto" and not result.complete:
            plan, order = self._plan, self._order
            self._solve_cpsat(view, launches)
            stats.update(self._stats)
            if obj <= self._stats["oracle_objective"]:
                self._plan, self._order = plan, order
            obj = min(obj, self._stats["oracle_objective"])
            bound = max(search_bound, self._stats["oracle_bound"])
            optimal = self._stats["oracle_optimal"] == 1.0 or obj <= bound + 1e-9
            solve_s = search_s + self._stats["oracle_solve_s"]
        else:
            bound, optimal, solve_s = search_bound, result.complete, search_s
        bound = min(bound, obj)
        stats.update(
            {
                "oracle_objective": obj,
                "oracle_bound": bound,
                "oracle_gap": max(0.0, (obj - bound) / obj) if obj > 0 else 0.0,
                "oracle_optimal": float(optimal),
                "oracle_solve_s": solve_s,
            }
        )
        self._stats = stats

    def _search_classes(self, view: EngineView, steps: int) -> list[SearchClass]:
        """The episode as the search's classes (interchangeable tasks, see ``_classes``)."""
        tasks = view.episode_tasks()
        kinds = view.gpu_kinds
        models: dict[str, int] = {}
        out = []
        for cls in self._classes(tasks):
            t = tasks[cls[0]]
            gangs = [
                g for k in self.ks_for(t) for g in itertools.combinations(range(view.n_servers), k) if view.fits(t, g)
            ]
            warm, cold = (
                tuple(view.profile.duration([kinds[s] for s in g], t.model, t.resolution, steps, c) for g in gangs)
                for c in (False, True)
            )
            out.append(
                SearchClass(
                    arrivals=tuple(tasks[j].arrival for j in cls),
                    tasks=tuple(tasks[j].id for j in cls),
                    model=models.setdefault(t.model, len(models)),
                    gangs=tuple(gangs),
                    warm=warm,
                    cold=cold,
                )
            )
        return out

    def _search(self, view: EngineView, steps: int, upper: float) -> SearchResult:
        """The exact branch and bound (``oracle_search``) from the incumbent total ``upper``
        (s; a schedule as good as it is found again, so the result always carries one
        when the budget allows)."""
        if not self._search_fits(view):
            raise ValueError(
                f"scheduler.params.method={self.method!r} is invalid for this episode (more than "
                f"{SEARCH_MAX_GANGS} candidate gangs over its task classes, or more than 255 models); "
                "allowed: method=cpsat or auto"
            )
        bb = BranchAndBound(self._search_classes(view, steps), view.gpu_kinds, self.node_budget)
        return bb.solve(upper + 1e-6 * max(1.0, upper))

    def _search_fits(self, view: EngineView) -> bool:
        """Whether the search handles the episode: at most ``SEARCH_MAX_GANGS`` candidate
        gangs summed over its task classes (each node tries them all) and 255 models."""
        tasks = view.episode_tasks()
        gangs = sum(math.comb(view.n_servers, k) for cls in self._classes(tasks) for k in self.ks_for(tasks[cls[0]]))
        return gangs <= SEARCH_MAX_GANGS and len({t.model for t in tasks}) <= 255

    def _plan_from(self, launches: list) -> None:
        """The replay plan of launches in start order (each task's gang and the tasks run
        just before it on its servers)."""
        last: dict[int, int] = {}
        plan: dict[int, tuple[tuple[int, ...], list[int]]] = {}
        order = []
        for r in sorted(launches, key=lambda r: r.start):
            g = tuple(int(s) for s in r.servers.split("-"))
            plan[r.task_id] = (g, sorted({last[s] for s in g if s in last}))
            for s in g:
                last[s] = r.task_id
            order.append(r.task_id)
        self._plan, self._order = plan, order

    def _replayed_mean_response(self, view: EngineView, steps: int) -> float:
        """Mean response (s) of the plan run semi-actively by the engine's rules."""
        assert self._plan is not None
        tasks = {t.id: t for t in view.episode_tasks()}
        end: dict[int, float] = {}
        gang_of = {tid: g for tid, (g, _) in self._plan.items()}
        last: dict[int, int] = {}  # server -> task that ran last on it
        total = 0.0
        for tid in self._order:
            g, preds = self._plan[tid]
            t = tasks[tid]
            start = max([t.arrival] + [end[p] for p in preds])
            prev = {last.get(s) for s in g}
            (p,) = prev if len(prev) == 1 else (None,)
            warm = p is not None and gang_of[p] == g and tasks[p].model == t.model
            kinds = [view.gpu_kinds[s] for s in g]
            end[tid] = start + view.profile.duration(kinds, t.model, t.resolution, steps, not warm)
            for s in g:
                last[s] = tid
            total += end[tid] - t.arrival
        return total / len(self._order)

    # -- the reward model -------------------------------------------------------------
    def _solve_reward(self, view: EngineView) -> None:
        """Steps chosen per task, objective the total paper reward of the launches.

        Each task is decided at an engine decision epoch (an arrival or a completion), in
        a chosen order among decisions at the same instant, and starts at the latest of
        its decision and its servers' previous tasks' ends (a reservation, as the engine
        does; those tasks must have started by the decision). Its reward is ``min(cap,
        w_t / (w_tt * mean wait of the queue at the decision, itself included +
        response)) + w_q * q(steps)``, as ``Engine.reward`` computes it, rounded down to
        1/REWARD_SCALE. The queue is taken whole, so episodes may hold at most
        ``engine.window`` tasks; small episodes (a handful of tasks) solve in seconds."""
        cp_model = _cp_model()
        tasks: tuple[Task, ...] = view.episode_tasks()
        n, n_srv, cfg = len(tasks), view.n_servers, view.engine_config()
        scale = max(self.scale, 100_000)  # launches sit on exact epochs: 10 us (0.15625 s/step is exact)
        if n > cfg.window:
            raise ValueError(
                f"scheduler.params.objective='reward' plans episodes of at most engine.window={cfg.window} tasks "
                f"(this one has {n}); allowed: objective=response, or a shorter episode"
            )
        grid = self.step_grid or list(range(cfg.min_steps, cfg.max_steps + 1))
        grid = sorted({min(max(v, cfg.min_steps), cfg.max_steps) for v in grid})
        rc = view.reward_config()

        def units(seconds: float) -> int:
            return int(round(seconds * scale))

        kinds = view.gpu_kinds
        gangs_of_k = {k: list(itertools.combinations(range(n_srv), k)) for t in tasks for k in self.ks_for(t)}
        m = cp_model.CpModel()
        arrival = [units(t.arrival) for t in tasks]
        # (task, gang, steps) -> (warm, cold) durations
        dur = {
            (j, g, st): tuple(
                units(view.profile.duration([kinds[s] for s in g], t.model, t.resolution, st, cold))
                for cold in (False, True)
            )
            for j, t in enumerate(tasks)
            for k in self.ks_for(t)
            for g in gangs_of_k[k]
            if view.fits(t, g)
            for st in grid
        }
        horizon = max(arrival) + sum(max(c for (jj, _, _), (_, c) in dur.items() if jj == j) for j in range(n))
        z = {key: m.new_bool_var(f"z{key}") for key in dur}
        gangs = {(j, g) for (j, g, _) in dur}
        x = {key: m.new_bool_var(f"x{key}") for key in gangs}
        start = [m.new_int_var(arrival[j], horizon, f"s{j}") for j in range(n)]
        end = [m.new_int_var(arrival[j], horizon, f"e{j}") for j in range(n)]
        length = [m.new_int_var(0, horizon, f"d{j}") for j in range(n)]
        for j in range(n):
            m.add_exactly_one(z[key] for key in dur if key[0] == j)
            m.add(end[j] == start[j] + length[j])
        for j, g in gangs:
            m.add(x[j, g] == sum(z[key] for key in dur if key[0] == j and key[1] == g))
        on = [[m.new_bool_var("") for _ in range(n_srv)] for _ in range(n)]
        for j in range(n):
            for s_ in range(n_srv):
                m.add(on[j][s_] == sum(x[key] for key in gangs if key[0] == j and s_ in key[1]))
        arc: list[dict[tuple[int, int], object]] = []
        for s_ in range(n_srv):
            m.add_no_overlap(
                [m.new_optional_interval_var(start[j], length[j], end[j], on[j][s_], "") for j in range(n)]
            )
            arcs = [(0, 0, m.new_bool_var(""))]
            lits: dict[tuple[int, int], object] = {}
            for j in range(n):
                arcs += [(j + 1, j + 1, ~on[j][s_]), (0, j + 1, m.new_bool_var("")), (j + 1, 0, m.new_bool_var(""))]
                for i in range(n):
                    if i != j:
                        lit = lits[i, j] = m.new_bool_var("")
                        arcs.append((i + 1, j + 1, lit))
                        m.add(start[j] >= end[i]).only_enforce_if(lit)
            m.add_circuit(arcs)
            arc.append(lits)
        # warm: the same rule as the response model; the gain may depend on the steps
        gain_terms: list[list] = [[] for _ in range(n)]
        for j, g in gangs:
            terms = []
            for i in range(n):
                if i == j or (i, g) not in gangs or tasks[i].model != tasks[j].model:
                    continue
                w = m.new_bool_var("")
                m.add_implication(w, x[i, g])
                m.add_implication(w, x[j, g])
                for s_ in g:
                    m.add_implication(w, arc[s_][i, j])
                terms.append(w)
                for st in grid:
                    dw, dc = dur[j, g, st]
                    if dc > dw:
                        both = m.new_bool_var("")
                        m.add_bool_and([w, z[j, g, st]]).only_enforce_if(both)
                        m.add_bool_or([~w, ~z[j, g, st]]).only_enforce_if(~both)
                        gain_terms[j].append((both, dc - dw))
            if terms:
                m.add_at_most_one(terms)
        for j in range(n):
            m.add(
                length[j]
                == sum(z[key] * dur[key][1] for key in dur if key[0] == j) - sum(b * v for b, v in gain_terms[j])
            )
        # decisions: at an epoch (an arrival or a completion), in a total order (ties in
        # time broken by it); the gang starts when decided and free: at the latest of the
        # decision and its predecessors' ends (a reservation when they still run), and a
        # predecessor must have started by then (else it would hold the servers reserved)
        decide_t = [m.new_int_var(arrival[j], horizon, f"t{j}") for j in range(n)]
        before = {(i, j): m.new_bool_var("") for i in range(n) for j in range(n) if i != j}
        for i in range(n):
            for j in range(i + 1, n):
                m.add(before[i, j] + before[j, i] == 1)
                m.add(decide_t[i] <= decide_t[j]).only_enforce_if(before[i, j])
                m.add(decide_t[j] <= decide_t[i]).only_enforce_if(before[j, i])
        for a, b, c in itertools.permutations(range(n), 3):
            m.add_implication(before[a, b], before[a, c]).only_enforce_if(before[b, c])
        for j in range(n):
            options = []
            for a in sorted({a for a in arrival if a >= arrival[j]}):
                lit = m.new_bool_var("")
                m.add(decide_t[j] == a).only_enforce_if(lit)
                options.append(lit)
            for i in range(n):
                if i != j:
                    lit = m.new_bool_var("")
                    m.add(decide_t[j] == end[i]).only_enforce_if(lit)
                    options.append(lit)
            m.add_bool_or(options)
            m.add(start[j] >= decide_t[j])
            at = m.new_bool_var("")
            m.add(start[j] == decide_t[j]).only_enforce_if(at)
            options = [at]
            for i in range(n):
                if i == j:
                    continue
                lit = m.new_bool_var("")
                m.add(start[j] == end[i]).only_enforce_if(lit)
                m.add_bool_or([arc[s_][i, j] for s_ in range(n_srv)]).only_enforce_if(lit)
                options.append(lit)
                for s_ in range(n_srv):
                    m.add(start[i] <= decide_t[j]).only_enforce_if(arc[s_][i, j])
                    m.add_implication(arc[s_][i, j], before[i, j])
            m.add_bool_or(options)
        # the queue at j's launch: arrived and not launched before j (j itself included)
        R = REWARD_SCALE
        # w_tt = wtt / den, exactly when w_tt is a whole number
        den = 1 if float(rc.w_tt).is_integer() else 1000
        wtt = int(round(rc.w_tt * den))
        reward_terms = []
        for j in range(n):
            waits = [decide_t[j] - arrival[j]]
            count = [1]
            for mm in range(n):
                if mm == j:
                    continue
                arrived = m.new_bool_var("")
                m.add(decide_t[j] >= arrival[mm]).only_enforce_if(arrived)
                m.add(decide_t[j] < arrival[mm]).only_enforce_if(~arrived)
                q = m.new_bool_var("")
                m.add_bool_and([arrived, before[j, mm]]).only_enforce_if(q)
                m.add_bool_or([~arrived, ~before[j, mm]]).only_enforce_if(~q)
                v = m.new_int_var(0, horizon, "")
                m.add(v == decide_t[j] - arrival[mm]).only_enforce_if(q)
                m.add(v == 0).only_enforce_if(~q)
                waits.append(v)
                count.append(q)
            cnt = m.new_int_var(1, n, f"cnt{j}")
            m.add(cnt == sum(count))
            resp = m.new_int_var(0, horizon, f"r{j}")
            m.add(resp == end[j] - arrival[j])
            prod = m.new_int_var(0, horizon * n, "")
            m.add_multiplication_equality(prod, [resp, cnt])
            # X_j (s) = (w_tt * sum(waits) / cnt + resp) / scale = y / (den * cnt * scale)
            y_max = (wtt + den) * horizon * n
            y = m.new_int_var(0, y_max, f"y{j}")
            m.add(y == wtt * sum(waits) + den * prod)
            lat = m.new_int_var(0, int(rc.cap * R), f"lat{j}")  # R * min(cap, w_t / X_j)
            ly = m.new_int_var(0, int(rc.cap * R) * y_max, "")
            m.add_multiplication_equality(ly, [lat, y])
            m.add(ly <= int(round(rc.w_t * R * den * scale)) * cnt)
            reward_terms.append(lat)
            for (jj, _g, st), lit in z.items():
                if jj == j:
                    reward_terms.append(lit * int(round(rc.w_q * view.quality(st) * R)))
        m.maximize(sum(reward_terms))

        solver, status, solve_s = self._run_solver(cp_model, m)
        order = sorted(range(n), key=lambda j: sum(solver.boolean_value(before[i, j]) for i in range(n) if i != j))
        timed = []
        for j in order:
            (_, g, st) = next(key for key, lit in z.items() if key[0] == j and solver.boolean_value(lit))
            timed.append((solver.value(decide_t[j]) / scale, tasks[j].id, g, st))
        self._timed, self._next, self._tol = timed, 0, 1.0 / scale
        self._plan = {tid: (g, []) for _, tid, g, _ in timed}
        obj, bound = solver.objective_value / R, solver.best_objective_bound / R
        self._stats = {
            "oracle_objective": obj,
            "oracle_bound": bound,
            "oracle_gap": (bound - obj) / obj if obj > 0 else 0.0,
            "oracle_optimal": float(status == cp_model.OPTIMAL),
            "oracle_solve_s": solve_s,
        }
