"""Gang placement rules shared by schedulers and the learned schedulers' action decoding:
the candidate gangs of ``earliest_finish`` and the one among them that finishes a task first.
Given the task, both consider only servers with the GPU memory for it (``EngineView.fits``)."""

from __future__ import annotations

import heapq

from eatbench.core.tasks import Task
from eatbench.engine.view import EngineView


def candidate_gangs(view: EngineView, k: int, model: str, task: Task | None = None) -> list[tuple[int, ...]]:
    """Gangs of ``k`` servers worth considering for a task of ``model``: the ``k`` unreserved
    servers that free up first, and every unreserved warm group of size ``k`` for ``model``
    (no reload, even if busy: the gang then waits for it). Empty if fewer than ``k`` are unreserved.
    With ``task``, only servers with the GPU memory for it count (``EngineView.fits``)."""
    available = view.unreserved_servers()
    if task is not None and view.memory_constrained:
        available = view.servers_that_fit(task, k, available)
    if len(available) < k:
        return []
    usable = set(available)
    free_at = view.free_at
    first = tuple(sorted(heapq.nsmallest(k, available, key=lambda s: (free_at(s), s))))
    groups = [first]
    for members, m in view.warm_groups():
        if m == model and len(members) == k and all(s in usable for s in members):
            g = tuple(sorted(members))
            if g != first:
                groups.append(g)
    return groups


def earliest_finish_gang(view: EngineView, task: Task, k: int, steps: int) -> tuple[int, ...] | None:
    """The candidate gang (:func:`candidate_gangs`) on which ``task`` at ``steps`` steps is
    expected to finish first; ``None`` if fewer than ``k`` servers are unreserved."""
    best: tuple[float, tuple[int, ...]] | None = None
    for gang in candidate_gangs(view, k, task.model, task):
        finish = view.estimate(task, gang, steps).finish
        if best is None or finish < best[0]:
            best = (finish, gang)
    return None if best is None else best[1]
