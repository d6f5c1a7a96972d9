"""The read-only view of the engine that schedulers decide on.

A scheduler's ``decide(view)`` gets an :class:`EngineView`, never the engine itself: the
view answers questions (what is queued, which servers are idle, warm or reserved, what a
launch would cost and earn) and hands out nothing through which the engine's state could
change: scalars, tuples, frozensets, copies of tasks and read-only numpy arrays. The engine
alone mutates its state, in ``Engine.apply`` and while it advances.

Times are in seconds of the episode clock; servers are indices ``0 .. n_servers - 1``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from eatbench.core.config import EngineConfig, RewardConfig
    from eatbench.core.tasks import Task
    from eatbench.engine.cluster import Cluster
    from eatbench.engine.loop import Engine, Estimate
    from eatbench.engine.profiles import LatencyProfile

#: a warm group: its member servers and the model their pipeline holds
WarmGroup = tuple[frozenset[int], str]


class EngineView:
    """Read-only questions about one engine's current state (see the module docstring).

    :param engine: the engine to look at; the view reflects its state at every call.
    """

    __slots__ = ("_engine", "_speeds")

    def __init__(self, engine: Engine) -> None:
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_speeds", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"EngineView is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"EngineView is read-only: cannot delete {name!r}")

    def __reduce__(self) -> tuple:
        # pickled with its engine (a training checkpoint pickles the env mid-episode)
        return (EngineView, (self._engine,))

    # -- clock and rules ----------------------------------------------------------------
    @property
    def now(self) -> float:
        """The current time (s)."""
        return self._engine.now

    @property
    def n_servers(self) -> int:
        return self._engine.n_servers

    @property
    def min_steps(self) -> int:
        """Fewest denoising steps a launch may use."""
        return self._engine.config.min_steps

    @property
    def max_steps(self) -> int:
        """Most denoising steps a launch may use."""
        return self._engine.config.max_steps

    @property
    def window(self) -> int:
        """How many queued tasks (oldest first) a scheduler sees in :meth:`visible`."""
        return self._engine.config.window

    @property
    def decision_mode(self) -> str:
        """``event``, ``slotted`` or ``release`` (see ``EngineConfig``)."""
        return self._engine.config.decision_mode

    @property
    def slot(self) -> float:
        """Slot length (s) of the ``slotted`` and ``release`` clocks."""
        return self._engine.config.slot

    def reward_config(self) -> RewardConfig:
        """A copy of the reward weights (``w_t``, ``w_tt``, ``w_q``, ``cap``)."""
        return copy.copy(self._engine.reward_cfg)

    # -- the queue ------------------------------------------------------------------------
    def visible(self) -> tuple[Task, ...]:
        """Copies of the first ``window`` queued tasks, oldest first."""
        return tuple(t.copy() for t in self._engine.visible())

    @property
    def queue_length(self) -> int:
        """Queued tasks, visible or not."""
        return len(self._engine.queue)

    def queued_ids(self) -> frozenset[int]:
        """Ids of every queued task, visible or not (for clairvoyant schedulers)."""
        return frozenset(t.id for t in self._engine.queue)

    def started(self, task_id: int) -> bool:
        """Whether task ``task_id`` has started (it is running or has ended)."""
        rec = self._engine.records.get(task_id)
        return rec is not None and not math.isnan(rec.start)

    def episode_tasks(self) -> tuple[Task, ...]:
        """Copies of every task of the episode, future arrivals included (clairvoyant
        schedulers only: an online scheduler must use :meth:`visible`)."""
        return tuple(t.copy() for t in self._engine.tasks)

    # -- servers ----------------------------------------------------------------------------
    def is_idle(self, server: int) -> bool:
        """Running nothing and reserved by no waiting gang."""
        e = self._engine
        return e.running_task[server] < 0 and e.reserved_by[server] < 0

    def idle_servers(self) -> tuple[int, ...]:
        """Idle servers (:meth:`is_idle`), in index order."""
        return tuple(self._engine.idle_servers())

    def is_running(self, server: int) -> bool:
        """Whether a gang is running on ``server``."""
        return self._engine.running_task[server] >= 0

    def is_reserved(self, server: int) -> bool:
        """Whether a gang waiting for busy members holds ``server`` (no launch may use it)."""
        return self._engine.reserved_by[server] >= 0

    def unreserved_servers(self) -> tuple[int, ...]:
        """Servers a launch may use now (not reserved; possibly running: the gang waits)."""
        rb = self._engine.reserved_by
        return tuple(s for s in range(len(rb)) if rb[s] < 0)

    @property
    def n_running(self) -> int:
        """Gangs running now."""
        return len(self._engine.jobs)

    @property
    def n_reserved(self) -> int:
        """Servers held by waiting gangs."""
        return sum(1 for r in self._engine.reserved_by if r >= 0)

    def free_at(self, server: int) -> float:
        """Expected time (s) ``server`` has no commitment left (the past for an idle one)."""
        return self._engine.free_at[server]

    def time_until_free(self, server: int) -> float:
        """Seconds until :meth:`free_at`, at least 0."""
        e = self._engine
        return max(0.0, e.free_at[server] - e.now)

    def busy_time(self, server: int) -> float:
        """Seconds ``server`` has spent running gangs so far (ended gangs only)."""
        return self._engine.busy_time[server]

    def busy_times(self) -> np.ndarray:
        """:meth:`busy_time` of every server, a read-only float64 array."""
        out = np.array(self._engine.busy_time, dtype=np.float64)
        out.flags.writeable = False
        return out

    def gpu_kind(self, server: int) -> str:
        """The GPU kind name of ``server``."""
        return self._engine.kind_of[server]

    @property
    def gpu_kinds(self) -> tuple[str, ...]:
        """The GPU kind of every server."""
        return tuple(self._engine.kind_of)

    def speed(self, server: int) -> float:
        """Throughput of ``server``'s GPU relative to the base kind (``speed`` multiplied
        along the ``relative_to`` chain; 1.0 where the chain does not end in a number)."""
        speeds = self._speeds
        if speeds is None:
            cluster = self._engine.cluster
            speeds = tuple(absolute_speed(cluster, k) for k in cluster.kind_of)
            object.__setattr__(self, "_speeds", speeds)
        return speeds[server]

    # -- model residency ------------------------------------------------------------------
    def warm_group(self, server: int) -> WarmGroup | None:
        """The warm group ``(members, model)`` that ``server`` belongs to, if any."""
        return self._engine.residency.warm_group(server)

    def warm_groups(self) -> tuple[WarmGroup, ...]:
        """Every distinct warm group, in order of their lowest-indexed member's first sight."""
        return tuple(self._engine.residency.warm_groups())

    def is_warm(self, servers: tuple[int, ...], model: str) -> bool:
        """Whether launching ``model`` on exactly ``servers`` needs no cold start."""
        return self._engine.residency.is_warm(servers, model)

    def default_servers(self, k: int, model: str, resolution: int | None = None) -> tuple[int, ...] | None:
        """The paper's placement rule: the idle warm group of size ``k`` for ``model`` if
        there is one, else the first ``k`` idle servers; ``None`` if fewer than ``k`` are idle.
        Pass the task's ``resolution`` (px) to count only servers with the GPU memory for
        the launch (:meth:`fits`); without it, memory is not considered."""
        return self._engine.default_servers(k, model, resolution)

    # -- GPU memory -------------------------------------------------------------------------
    @property
    def memory_constrained(self) -> bool:
        """Whether the profile has memory figures, so that some gangs may not fit a task
        (if not, :meth:`fits` is always true)."""
        return self._engine.profile.has_memory

    def memory_gib(self, server: int) -> float:
        """The GPU memory (GiB) of ``server`` (``cluster.gpu_kinds.<kind>.memory_gib``)."""
        return self._engine.profile.budget(self._engine.kind_of[server])

    def memory_need(self, task: Task, server: int, k: int) -> float | None:
        """GPU memory (GiB) ``server`` needs to run ``task`` in a gang of ``k``; ``None``:
        the profile does not say (no constraint)."""
        return self._engine.profile.memory(self._engine.kind_of[server], task.model, task.resolution, k)

    def fits(self, task: Task, servers: Iterable[int]) -> bool:
        """Whether every one of ``servers`` (a gang; k = their number) has the GPU memory
        for ``task``: a launch on a gang that does not fit is an invalid decision."""
        kinds = [self._engine.kind_of[s] for s in servers]
        return self._engine.profile.misfit(kinds, task.model, task.resolution) is None

    def servers_that_fit(self, task: Task, k: int, servers: Iterable[int] | None = None) -> tuple[int, ...]:
        """Those of ``servers`` (default: all, in index order) whose GPU has the memory for
        ``task`` in a gang of ``k`` (any ``k`` of them form a gang that :meth:`fits`)."""
        e = self._engine
        pool = range(e.n_servers) if servers is None else servers
        if not e.profile.has_memory:
            return tuple(pool)
        fits, kind_of = e.profile.fits, e.kind_of
        return tuple(s for s in pool if fits(kind_of[s], task.model, task.resolution, k))

    # -- estimates and reward -----------------------------------------------------------
    def estimate(self, task: Task, servers: tuple[int, ...], steps: int) -> Estimate:
        """Expected start, duration (s) and coldness of launching ``task`` now on ``servers``."""
        return self._engine.estimate(task, servers, steps)

    def estimates(self, task: Task, servers: tuple[int, ...], steps: Iterable[int]) -> tuple[Estimate, ...]:
        """:meth:`estimate` for several step counts at once."""
        return tuple(self._engine.estimates(task, servers, steps))

    def quality(self, steps: int) -> float:
        """The quality ``q(steps)`` the reward uses."""
        return self._engine.quality_table[steps]

    @property
    def quality_table(self) -> tuple[float, ...]:
        """``q(steps)`` for steps ``0 .. max_steps``."""
        return tuple(self._engine.quality_table)

    def mean_wait(self, visible: Iterable[Task] | None = None) -> float:
        """Mean time (s) the ``visible`` tasks (default: the window) have waited so far."""
        return self._engine.mean_wait(None if visible is None else list(visible))

    def reward(
        self,
        task: Task,
        est: Estimate,
        steps: int,
        visible: Iterable[Task] | None = None,
        mean_wait: float | None = None,
    ) -> float:
        """The paper reward of launching ``task`` as estimated by ``est`` (``Engine.reward``)."""
        return self._engine.reward(task, est, steps, None if visible is None else list(visible), mean_wait)

    # -- the episode's fixed description (for schedulers that simulate it) -----------------
    @property
    def cluster(self) -> Cluster:
        """The cluster (servers and GPU kinds; treat it as read-only)."""
        return self._engine.cluster

    @property
    def profile(self) -> LatencyProfile:
        """The latency profile estimates come from (treat it as read-only)."""
        return self._engine.profile

    def engine_config(self) -> EngineConfig:
        """A deep copy of the engine's rules (``EngineConfig``)."""
        return copy.deepcopy(self._engine.config)


def absolute_speed(cluster: Cluster, kind: str) -> float:
    """Throughput of GPU ``kind`` relative to the root of its ``relative_to`` chain."""
    speed, seen = 1.0, set()
    while kind and kind not in seen:
        seen.add(kind)
        spec = cluster.gpu_kinds.get(kind)
        if spec is None:
            break
        speed *= spec.speed
        kind = spec.relative_to
    return float(speed) if math.isfinite(speed) else 1.0
