"""The discrete-event engine: queues, gangs, model residency and decision epochs.

The engine knows no concrete scheduler or backend. It admits arrivals, asks for a
decision at each decision epoch (every arrival and completion; in ``slotted`` mode also
every ``slot`` seconds while tasks wait; in ``release`` mode only on the paper release's
clock, see ``RELEASE_T0``), launches gangs on the backend and turns
completions into ``TaskRecord``s. Two ways to drive it:

    engine.run(scheduler)                    # the runner
    while engine.next_decision():            # the gymnasium env, step by step
        engine.apply(decision_or_None)

Gangs: a task launched on k servers starts only when all k are free; servers still busy
are *reserved* for it meanwhile, and the gang starts (and later ends) as one job.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from eatbench.core.config import EngineConfig, RewardConfig
from eatbench.core.metrics import TaskRecord, summarize
from eatbench.core.tasks import Task, TaskState
from eatbench.engine.backend import Backend, Job, JobResult
from eatbench.engine.cluster import Cluster, Residency
from eatbench.engine.profiles import LatencyProfile
from eatbench.engine.view import EngineView

FREE = -1

#: ``release`` mode reproduces the clock of the paper authors' released simulator
#: (github.com/zzf1955/EAT, ``EAT Simu/_SDEnv``): its clock starts at ``RELEASE_T0`` s
#: and moves only in ticks of ``engine.slot`` s (one per wait; launches take no time), the
#: float tick times accumulated by repeated addition exactly as the release does; a task
#: arriving at ``a`` becomes visible at the first tick after ``a`` (the release stamps a
#: slot's arrival with the slot's start and shows it one tick later; the 10 tasks queued at
#: 0 are first seen at 1.0 s); a gang launched at a tick holds its servers until the tick
#: at which ``duration`` minus one ``slot`` per tick first drops to <= 0 (the release's
#: ``Node.working``), though its record finishes at ``start + duration``; the episode is
#: truncated at the first tick past the horizon.
RELEASE_T0 = 1.0
_RELEASE_EPS = 1e-6  # s: float noise of accumulated tick times is far below this


def release_ticks(duration: float, slot: float) -> int:
    """Ticks a gang of ``duration`` s holds its servers in ``release`` mode: how many
    times the release subtracts ``slot`` from the remaining time before it is <= 0."""
    remain, n = duration, 0
    while remain > 0:
        remain -= slot
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Decision:
    """Launch ``task_id`` with ``steps`` denoising steps on ``servers`` (server indices).

    Servers may be busy; the gang then waits for them (they are reserved meanwhile).
    """

    task_id: int
    steps: int
    servers: tuple[int, ...]


class InvalidDecision(ValueError):
    """A scheduler asked for something the rules forbid; the message says what."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """Expected outcome of a launch: start and duration in seconds, and whether cold."""

    start: float
    duration: float
    cold: bool

    @property
    def finish(self) -> float:
        return self.start + self.duration


class Engine:
    """Runs one episode of a workload on a cluster through a backend.

    :param cluster: the servers.
    :param tasks: every task of the episode, in arrival order.
    :param backend: executes jobs and keeps the clock.
    :param profile: latency profile used for estimates (and by the sim backend).
    :param quality_table: ``q(steps)`` for steps 0..max_steps, used in rewards.
    :param config: decision rules.
    :param horizon: episode end in seconds (``None``: when every task has ended).
    """

    def __init__(
        self,
        cluster: Cluster,
        tasks: list[Task],
        backend: Backend,
        profile: LatencyProfile,
        quality_table: list[float],
        config: EngineConfig,
        horizon: float | None = None,
    ) -> None:
        self.cluster = cluster
        self.tasks = tasks
        self.backend = backend
        self.profile = profile
        self.quality_table = quality_table
        self.config = config
        self.reward_cfg: RewardConfig = config.reward
        self.horizon = math.inf if horizon is None else horizon
        n = len(cluster)
        self.n_servers = n
        self.kind_of = cluster.kind_of
        self.residency = Residency(n)
        self.queue: deque[Task] = deque()
        self.running_task = [FREE] * n  # task id running on each server
        self.reserved_by = [FREE] * n  # task id of a gang waiting for this server
        self.free_at = [0.0] * n  # expected time each server has no commitment left
        self.n_reserved = 0  # servers held by gangs that wait for busy members
        self.pending: dict[int, tuple[Task, tuple[int, ...], int, float]] = {}  # reserved gangs
        self.jobs: dict[int, Job] = {}
        self.records: dict[int, TaskRecord] = {}
        self.busy_time = [0.0] * n
        self.decision_times: list[float] = []
        self.reward_total = 0.0
        self.n_launches = 0
        self._next_arrival = 0
        self._ended = 0  # tasks done or failed
        self._need_advance = False
        self._finished = False
        self.now = 0.0
        self._release = config.decision_mode == "release"
        self._tick = -1  # release mode: index of the current tick (-1: before the first)
        self._holds: list[tuple[int, tuple[int, ...]]] = []  # release: (free tick, servers)
        self._hold_ticks: dict[float, int] = {}  # duration -> release_ticks, cached
        self._start_tick: dict[int, int] = {}  # release: task id -> tick of its start
        self.scheduler = None  # set by run(); its summary_extra() joins the summary
        self.view = EngineView(self)  # what schedulers see (read-only)
        profile.check_tasks_fit(self.kind_of, tasks)  # GPU memory: every task fits some gang

    # -- queries (schedulers reach them through ``self.view``) ---------------------------------------------------------
    def visible(self) -> list[Task]:
        """The first ``window`` queued tasks, oldest first."""
        q = self.queue
        w = self.config.window
        return list(q) if len(q) <= w else [q[i] for i in range(w)]

    def idle_servers(self) -> list[int]:
        """Servers running nothing and reserved by nobody, in index order."""
        rt, rb = self.running_task, self.reserved_by
        return [s for s in range(self.n_servers) if rt[s] == FREE and rb[s] == FREE]

    def default_servers(self, k: int, model: str, resolution: int | None = None) -> tuple[int, ...] | None:
        """The paper's placement rule: the idle warm group of size k for ``model`` if
        there is one, else the first k idle servers; ``None`` if fewer than k are idle.
        With ``resolution`` (px), only servers with the GPU memory for the launch count
        (``LatencyProfile.fits``; every server where the profile has no memory data)."""
        idle = self.idle_servers()
        if resolution is not None and self.profile.has_memory:
            fits, kind_of = self.profile.fits, self.kind_of
            idle = [s for s in idle if fits(kind_of[s], model, resolution, k)]
        else:
            resolution = None  # memory is not considered
        if len(idle) < k:
            return None
        res = self.residency
        for s in idle:
            g = res.warm_group(s)
            if g is not None and len(g[0]) == k and g[1] == model:
                members = tuple(sorted(g[0]))
                if all(self.running_task[m] == FREE and self.reserved_by[m] == FREE for m in members) and (
                    resolution is None
                    or self.profile.misfit([self.kind_of[m] for m in members], model, resolution) is None
                ):
                    return members
        return tuple(idle[:k])

    def estimate(self, task: Task, servers: tuple[int, ...], steps: int) -> Estimate:
        """Expected start, duration and coldness of launching ``task`` now on ``servers``."""
        start, cold, kinds = self._launch_state(task, servers)
        return Estimate(start, self.profile.duration(kinds, task.model, task.resolution, steps, cold), cold)

    def quality(self, steps: int) -> float:
        return self.quality_table[steps]

    def estimates(self, task: Task, servers: tuple[int, ...], steps: Iterable[int]) -> list[Estimate]:
        """:meth:`estimate` for several step counts at once (start and coldness computed once)."""
        start, cold, kinds = self._launch_state(task, servers)
        durations = self.profile.durations(kinds, task.model, task.resolution, steps, cold)
        return [Estimate(start, d, cold) for d in durations]

    def _launch_state(self, task: Task, servers: tuple[int, ...]) -> tuple[float, bool, list[str]]:
        """A launch of ``task`` now on ``servers``: its expected start (s; when the last member
        frees), whether it is cold, and the members' GPU kinds."""
        start = self.now
        free_at = self.free_at
        for s in servers:
            if free_at[s] > start:
                start = free_at[s]
        cold = not self.residency.is_warm(servers, task.model)
        return start, cold, [self.kind_of[s] for s in servers]

    def mean_wait(self, visible: list[Task] | None = None) -> float:
        """Mean time (seconds) the ``visible`` tasks (default: the window) have waited so far."""
        vis = self.visible() if visible is None else visible
        return sum(self.now - t.arrival for t in vis) / len(vis) if vis else 0.0

    def reward(
        self,
        task: Task,
        est: Estimate,
        steps: int,
        visible: list[Task] | None = None,
        mean_wait: float | None = None,
    ) -> float:
        """The paper reward of launching ``task``: ``min(cap, w_t / (w_tt * mean wait of
        the visible queue + response)) + w_q * q(steps)``, times in seconds. ``mean_wait``
        (:meth:`mean_wait`) may be passed when scoring many launches at one epoch."""
        if mean_wait is None:
            mean_wait = self.mean_wait(visible)
        response = est.finish - task.arrival
        r = self.reward_cfg
        denom = r.w_tt * mean_wait + response
        latency_term = r.cap if denom <= 0 else min(r.cap, r.w_t / denom)
        return latency_term + r.w_q * self.quality_table[steps]

    # -- driving ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._finished

    def run(self, scheduler) -> list[TaskRecord]:
        """Run the episode to its end with ``scheduler`` (anything with ``decide(view)``
        taking the engine's read-only ``EngineView`` and returning a ``Decision`` or
        ``None`` to wait)."""
        clock = time.perf_counter
        times = self.decision_times
        self.scheduler = scheduler
        view = self.view
        while self.next_decision():
            t0 = clock()
            decision = scheduler.decide(view)
            times.append(clock() - t0)
            self.apply(decision)
        return self.finalize()

    def next_decision(self) -> bool:
        """Advance to the next decision epoch; ``False`` once the episode has ended."""
        while not self._finished:
            if not self._need_advance and self.queue and self.n_reserved < self.n_servers:
                return True
            self._need_advance = False
            self._advance()
        return False

    def apply(self, decision: Decision | None) -> float:
        """Carry out a decision (``None`` waits until the next epoch). Returns the paper
        reward of the launch (0 for a wait). Raises ``InvalidDecision``."""
        if decision is None:
            self._need_advance = True
            return 0.0
        task = self._queued_task(decision.task_id)
        servers = decision.servers
        self._check(task, decision)
        est = self.estimate(task, servers, decision.steps)
        reward = self.reward(task, est, decision.steps)
        self.reward_total += reward
        self.n_launches += 1
        self.queue.remove(task)
        self.records[task.id].steps = decision.steps
        if all(self.running_task[s] == FREE for s in servers):
            self._start(task, servers, decision.steps)
        else:
            task.state = TaskState.RESERVED
            for s in servers:
                self.reserved_by[s] = task.id
                self.free_at[s] = est.finish
            self.n_reserved += len(servers)
            self.pending[task.id] = (task, servers, decision.steps, est.finish)
        return reward

    def _queued_task(self, task_id: int) -> Task:
        for t in self.queue:
            if t.id == task_id:
                return t
        raise InvalidDecision(f"task {task_id} is not queued (queued: {[t.id for t in self.visible()]} ...)")

    def _check(self, task: Task, d: Decision) -> None:
        cfg = self.config
        if not cfg.min_steps <= d.steps <= cfg.max_steps:
            raise InvalidDecision(f"steps={d.steps} outside [{cfg.min_steps}, {cfg.max_steps}]")
        servers = d.servers
        if not servers or len(set(servers)) != len(servers):
            raise InvalidDecision(f"servers={servers} must be distinct and non-empty")
        if task.k is not None and len(servers) != task.k:
            raise InvalidDecision(f"task {task.id} needs k={task.k} servers, got {servers}")
        for s in servers:
            if not 0 <= s < self.n_servers:
                raise InvalidDecision(f"server {s} does not exist (0..{self.n_servers - 1})")
            if self.reserved_by[s] != FREE:
                raise InvalidDecision(f"server {s} is reserved by task {self.reserved_by[s]}")
        profile = self.profile
        misfit = (
            profile.misfit([self.kind_of[s] for s in servers], task.model, task.resolution)
            if profile.has_memory
            else None
        )
        if misfit is not None:
            i, need, budget = misfit
            s = servers[i]
            raise InvalidDecision(
                f"servers={servers} cannot run task {task.id}: {task.model} at {task.resolution} px on "
                f"k={len(servers)} needs {need:g} GiB per server (profile {self.profile.name!r}), and server {s} "
                f"({self.kind_of[s]}) has {budget:g} GiB (cluster.gpu_kinds.{self.kind_of[s]}.memory_gib)"
            )

    def _start(self, task: Task, servers: tuple[int, ...], steps: int) -> None:
        model = task.model
        cold = not self.residency.is_warm(servers, model)
        if cold:
            dissolved = self.residency.claim(servers, model)
            if dissolved:
                self.backend.dissolve(tuple(sorted(dissolved)))
        now = self.now
        kinds = [self.kind_of[s] for s in servers]
        duration = self.profile.duration(kinds, model, task.resolution, steps, cold)
        job = Job(task, servers, steps, cold, now, duration)
        task.state = TaskState.RUNNING
        if self.reserved_by[servers[0]] == task.id:
            self.n_reserved -= len(servers)
        busy = duration
        if self._release:
            self._start_tick[task.id] = self._tick
            busy = self._held_for(duration) * self.config.slot
        for s in servers:
            self.running_task[s] = task.id
            self.reserved_by[s] = FREE
            self.free_at[s] = now + busy
        self.jobs[task.id] = job
        rec = self.records[task.id]
        rec.start = now
        rec.wait = now - task.arrival
        rec.k = len(servers)
        rec.servers = "-".join(map(str, servers))
        rec.gpu_kinds = "-".join(kinds)
        rec.cold_start = cold
        self.backend.launch(job)

    def _advance(self) -> None:
        """Process the next instant at which something happens."""
        if self._release:
            self._advance_release()
            return
        t_next = self.horizon
        if self._next_arrival < len(self.tasks):
            t_next = min(t_next, self.tasks[self._next_arrival].arrival)
        more_to_come = self.jobs or self._next_arrival < len(self.tasks) or not math.isinf(self.horizon)
        if self.config.decision_mode == "slotted" and self.queue and more_to_come:
            slot = self.config.slot
            t_next = min(t_next, (math.floor(self.now / slot + 1e-9) + 1) * slot)
        if math.isinf(t_next) and not self.jobs:
            self._finish()
            return
        results = self.backend.advance(t_next) if (self.jobs or t_next > self.now) else []
        self.now = self.backend.now()
        for r in results:
            self._complete(r)
        self._admit(self.now)
        tasks = self.tasks
        if self.now >= self.horizon or (self._ended == len(tasks) and self._next_arrival == len(tasks)):
            self._finish()

    def _admit(self, until: float) -> None:
        """Queue every task that arrived at or before ``until`` (s)."""
        tasks = self.tasks
        while self._next_arrival < len(tasks) and tasks[self._next_arrival].arrival <= until:
            t = tasks[self._next_arrival]
            t.state = TaskState.QUEUED
            self.queue.append(t)
            self.records[t.id] = TaskRecord(
                task_id=t.id,
                arrival=t.arrival,
                status="unfinished",
                slo=t.slo,
                resolution=t.resolution,
                model=t.model,
                prompt=t.prompt,
                seed=t.seed,
                k=t.k or 0,
            )
            self._next_arrival += 1

    def _held_for(self, duration: float) -> int:
        """Release mode: ticks a gang of ``duration`` s holds its servers (cached)."""
        n = self._hold_ticks.get(duration)
        if n is None:
            n = self._hold_ticks[duration] = release_ticks(duration, self.config.slot)
        return n

    def _advance_release(self) -> None:
        """Release mode: move tick by tick (skipping ticks at which the queue is empty) to
        the next tick with queued tasks, or to the episode's end."""
        tasks, slot = self.tasks, self.config.slot
        while True:
            self._tick += 1
            t = RELEASE_T0 if self._tick == 0 else self.now + slot
            if t > self.horizon:
                self._finish()
                return
            if self.jobs:
                while True:
                    results = self.backend.advance(t + _RELEASE_EPS)
                    if not results:
                        break
                    self.now = t
                    for r in results:
                        self._complete(r)
            elif t > self.backend.now():
                self.backend.advance(t)
            self.now = t
            if self._holds:
                due = [h for h in self._holds if h[0] <= self._tick]
                if due:
                    self._holds = [h for h in self._holds if h[0] > self._tick]
                    for _, servers in due:
                        self._free(servers)
            self._admit(t - _RELEASE_EPS)
            if self._ended == len(tasks) and self._next_arrival == len(tasks) and not self._holds:
                self._finish()
                return
            if self.queue:
                return

    def _complete(self, result: JobResult) -> None:
        job = result.job
        task = job.task
        del self.jobs[task.id]
        rec = self.records[task.id]
        rec.finish = result.finish
        rec.execution = result.finish - job.start
        rec.response = result.finish - task.arrival
        rec.quality = math.nan if result.quality is None else result.quality
        rec.cold_start_time = math.nan if result.cold_start_time is None else result.cold_start_time
        rec.image_path = str(result.extra.get("image_path", ""))
        if result.error:
            task.state = TaskState.FAILED
            rec.status, rec.error = "failed", result.error
            # the gang's pipeline state is unknown after a failure: it is cold next time
            self.residency.claim(job.servers, "")
        else:
            task.state = TaskState.DONE
            rec.status = "done"
            rec.slo_met = rec.response <= task.slo
        self._ended += 1
        for s in job.servers:
            self.busy_time[s] += result.finish - job.start
        if self._release and not self._finished:
            # the release frees a gang's servers on its own tick count (see RELEASE_T0)
            took = result.finish - job.start
            held = self._held_for(job.expected_duration if abs(took - job.expected_duration) < _RELEASE_EPS else took)
            self._holds.append((max(self._start_tick.pop(task.id) + held, self._tick), job.servers))
            return
        self._free(job.servers)

    def _free(self, servers: tuple[int, ...]) -> None:
        """Servers of an ended gang become free now; waiting gangs that can start do."""
        for s in servers:
            self.running_task[s] = FREE
            if self.reserved_by[s] == FREE:
                self.free_at[s] = self.now
        self._start_ready_gangs()

    def _start_ready_gangs(self) -> None:
        for tid, (task, servers, steps, _) in list(self.pending.items()):
            if all(self.running_task[s] == FREE for s in servers):
                del self.pending[tid]
                self._start(task, servers, steps)

    def _finish(self) -> None:
        self._finished = True
        for r in self.backend.close():
            self._complete(r)
        end = self.now
        for tid, job in self.jobs.items():  # running at the end: partial busy time
            for s in job.servers:
                self.busy_time[s] += max(0.0, end - job.start)
            self.tasks[tid].state = TaskState.UNFINISHED
        for task in list(self.queue) + [p[0] for p in self.pending.values()]:
            task.state = TaskState.UNFINISHED

    def finalize(self) -> list[TaskRecord]:
        """Records of every arrived task, in id order (call once the episode has ended)."""
        return [self.records[i] for i in sorted(self.records)]

    def summary(self) -> dict[str, float]:
        """Summary metrics of the episode, plus the fields the scheduler adds through an
        optional ``summary_extra() -> dict[str, float]`` (e.g. the oracle's bound)."""
        extra = getattr(self.scheduler, "summary_extra", None)
        out = summarize(
            self.finalize(),
            makespan=self.now,
            n_servers=self.n_servers,
            busy_time=self.busy_time,
            decision_times=self.decision_times,
            reward_total=self.reward_total,
        )
        if extra is not None:
            out.update(extra())
        return out
