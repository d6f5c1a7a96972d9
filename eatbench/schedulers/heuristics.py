"""Hand-written schedulers. Each fits on a screen; the engine does the bookkeeping.

Each places a task only on servers with the GPU memory for it (``EngineView.fits``; every
server when the profile has no memory figures)."""

from __future__ import annotations

import heapq

from eatbench.engine.loop import Decision
from eatbench.engine.placement import candidate_gangs
from eatbench.engine.view import EngineView
from eatbench.schedulers.base import SCHEDULERS, Scheduler


@SCHEDULERS.register("fifo")
class FifoScheduler(Scheduler):
    """The oldest task, a fixed number of steps, the paper's placement rule (the idle
    warm group of size k, else the first k idle servers); the smallest allowed k that fits."""

    def decide(self, view: EngineView) -> Decision | None:
        task = view.visible()[0]
        for k in self.ks_for(task):
            servers = view.default_servers(k, task.model, task.resolution)
            if servers is not None:
                return Decision(task.id, self.clamp_steps(view, self.steps), servers)
        return None


@SCHEDULERS.register("random")
class RandomScheduler(Scheduler):
    """A random visible task, random k, random idle servers and random steps in
    [min_steps, max_steps]; waits when the chosen task does not fit.

    It draws the steps, so it takes no ``steps`` parameter.

    :param wait_prob: probability of waiting at an epoch where a launch is possible.
    """

    def __init__(self, wait_prob: float = 0.0) -> None:
        super().__init__()
        if isinstance(wait_prob, bool) or not isinstance(wait_prob, (int, float)) or not 0 <= wait_prob < 1:
            raise ValueError(f"scheduler.params.wait_prob={wait_prob!r} is invalid; allowed: a probability 0 <= p < 1")
        self.wait_prob = wait_prob

    def decide(self, view: EngineView) -> Decision | None:
        rng = self.rng
        visible = view.visible()
        task = visible[int(rng.integers(len(visible)))]
        ks = self.ks_for(task)
        k = ks[int(rng.integers(len(ks)))]
        idle = view.servers_that_fit(task, k, view.idle_servers())
        if len(idle) < k or (self.wait_prob and rng.random() < self.wait_prob):
            return None
        servers = tuple(sorted(int(s) for s in rng.choice(idle, size=k, replace=False)))
        return Decision(task.id, int(rng.integers(view.min_steps, view.max_steps + 1)), servers)


@SCHEDULERS.register("round_robin")
class RoundRobinScheduler(Scheduler):
    """The oldest task on the next k idle servers after the last one used, cyclically."""

    def __init__(self, steps: int = 20) -> None:
        super().__init__(steps)
        self._next = 0

    def reset(self, seed: int, k_options: list[int]) -> None:
        super().reset(seed, k_options)
        self._next = 0

    def decide(self, view: EngineView) -> Decision | None:
        task = view.visible()[0]
        for k in self.ks_for(task):
            idle = view.servers_that_fit(task, k, view.idle_servers())
            if len(idle) >= k:
                n = view.n_servers
                ordered = sorted(idle, key=lambda s: (s - self._next) % n)[:k]
                self._next = (ordered[-1] + 1) % n
                return Decision(task.id, self.clamp_steps(view, self.steps), tuple(sorted(ordered)))
        return None


@SCHEDULERS.register("least_loaded")
class LeastLoadedScheduler(Scheduler):
    """The oldest task on the k idle servers that have done the least work so far."""

    def decide(self, view: EngineView) -> Decision | None:
        task = view.visible()[0]
        for k in self.ks_for(task):
            idle = view.servers_that_fit(task, k, view.idle_servers())
            if len(idle) >= k:
                busy = view.busy_times()
                chosen = heapq.nsmallest(k, idle, key=lambda s: (busy[s], s))
                return Decision(task.id, self.clamp_steps(view, self.steps), tuple(sorted(chosen)))
        return None


@SCHEDULERS.register("greedy")
class GreedyScheduler(Scheduler):
    """The paper's Greedy baseline, without the release's slot-swap bug: a one-step
    look-ahead that launches the (visible task, steps, k) with the highest paper reward
    on the default placement, among servers idle now; waits if nothing fits.

    It chooses the steps itself, so it takes no ``steps`` parameter.

    :param step_grid: step counts to consider (default: every step in the allowed range).
    """

    def __init__(self, step_grid: list[int] | None = None) -> None:
        super().__init__()
        if step_grid is not None and (
            not isinstance(step_grid, (list, tuple))
            or not step_grid
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in step_grid)
        ):
            raise ValueError(
                f"scheduler.params.step_grid={step_grid!r} is invalid; allowed: a non-empty list of step counts "
                "(integers >= 1) or null"
            )
        self.step_grid = list(step_grid) if step_grid else None

    def decide(self, view: EngineView) -> Decision | None:
        grid = self.step_grid or range(view.min_steps, view.max_steps + 1)
        visible = view.visible()
        mean_wait = view.mean_wait(visible)  # the same for every launch scored at this epoch
        best: tuple[float, Decision] | None = None
        for task in visible:
            for k in self.ks_for(task):
                servers = view.default_servers(k, task.model, task.resolution)
                if servers is None:
                    continue
                for steps, est in zip(grid, view.estimates(task, servers, grid), strict=True):
                    r = view.reward(task, est, steps, mean_wait=mean_wait)
                    if best is None or r > best[0]:
                        best = (r, Decision(task.id, steps, servers))
        return None if best is None else best[1]


@SCHEDULERS.register("earliest_finish")
class EarliestFinishScheduler(Scheduler):
    """Earliest finish time: the (visible task, k, gang) whose expected completion is
    soonest, at a fixed step count. Gangs considered for each k: every warm group of size
    k for the task's model (no reload, even if busy: the gang then waits for it) and the k
    unreserved servers that free up first. Ties go to the older task."""

    def decide(self, view: EngineView) -> Decision | None:
        steps = self.clamp_steps(view, self.steps)
        candidates: dict[tuple[int, str, int], list[tuple[int, ...]]] = {}
        best: tuple[float, Decision] | None = None
        for task in view.visible():
            for k in self.ks_for(task):
                key = (k, task.model, task.resolution)
                groups = candidates.get(key)
                if groups is None:
                    groups = candidates[key] = candidate_gangs(view, k, task.model, task)
                for servers in groups:
                    finish = view.estimate(task, servers, steps).finish
                    if best is None or finish < best[0]:
                        best = (finish, Decision(task.id, steps, servers))
        return None if best is None else best[1]
