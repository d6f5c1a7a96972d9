"""The release's action decoding (``AIGCEnv.get_task`` in ``EAT Simu/_SDEnv/env.py``).

An action ``a`` in [-1, 1]^(2 + queue_rows) is mapped to ``u = (a + 1) / 2`` and read as
``[execute, steps, score_1 .. score_queue_rows]`` (the release's co_num is fixed per task):

- the task is the arg-max score slot over all ``queue_rows`` slots (first on ties); a slot
  past the end of the queue is an invalid choice: a wait;
- execute when ``u[0] >= 0.5``, else a wait;
- steps = ``32 * u[1]`` in the release (a float); here rounded half up to an integer and
  clamped to [``engine.min_steps``, ``engine.max_steps``];
- placement: the first ``k`` available nodes, unless an available warm group has exactly
  ``k`` members: then the first such group (in node order); fewer than ``k`` available
  nodes is an invalid choice: a wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eatbench.engine.loop import Decision

if TYPE_CHECKING:
    from eatbench.engine.view import EngineView

#: the release's ``max_draw_steps``: steps = 32 x u[1].
MAX_DRAW_STEPS = 32


@dataclass(frozen=True)
class ReleaseChoice:
    """What an action asks for before the engine state is consulted.

    :param execute: launch (else wait).
    :param steps: the release's fractional steps, ``32 * u[1]``.
    :param slot: the chosen queue slot (0-based).
    """

    execute: bool
    steps: float
    slot: int


def read_action(action: np.ndarray, queue_rows: int) -> ReleaseChoice:
    """Split a raw action the way the release does."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (2 + queue_rows,):
        raise ValueError(f"action shape {action.shape} is invalid; allowed: ({2 + queue_rows},)")
    u = (action + 1.0) / 2.0
    return ReleaseChoice(bool(u[0] >= 0.5), float(u[1] * MAX_DRAW_STEPS), int(np.argmax(u[2:])))


def integer_steps(steps: float, min_steps: int, max_steps: int) -> int:
    """The release's fractional steps rounded half up and clamped to the engine's range."""
    return min(max(int(math.floor(steps + 0.5)), min_steps), max_steps)


def release_placement(view: EngineView, k: int, model: str) -> tuple[int, ...] | None:
    """The release's placement rule on the engine's state (``None``: fewer than ``k``
    available servers). Available = running nothing and reserved by nobody."""
    available = view.idle_servers()
    if len(available) < k:
        return None
    groups: dict[frozenset[int], list[int]] = {}
    for s in available:
        g = view.warm_group(s)
        if g is not None and g[1] == model:
            groups.setdefault(g[0], []).append(s)
    for members in groups.values():
        if len(members) == k:
            return tuple(members)
    return tuple(available[:k])


def decode(view: EngineView, action: np.ndarray, queue_rows: int) -> Decision | None:
    """The decision the release takes for ``action`` in the engine's current state."""
    choice = read_action(action, queue_rows)
    queue = view.visible()  # the window: as many rows as the release's queue (checked at load)
    if choice.slot >= min(len(queue), queue_rows) or not choice.execute:
        return None
    task = queue[choice.slot]
    if task.k is None:
        raise ValueError(f"task {task.id} has no fixed k: the release's policies need workload.k_choices")
    servers = release_placement(view, task.k, task.model)
    if servers is None:
        return None
    return Decision(task.id, integer_steps(choice.steps, view.min_steps, view.max_steps), servers)
