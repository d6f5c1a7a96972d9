"""The release's observation, built from eatbench's engine state.

The release (``EAT Simu/_SDEnv``) observes ``queue_len + node_num`` rows of 3 numbers,
unnormalised, the queue rows first (the first ``queue_len`` queued tasks, FIFO, zero rows
when fewer are queued), then one row per node in index order:

- task row: ``[arrival stamp (s, release clock), size / 512^2, co_num]``. The release's
  clock starts at 1 s; the 10 tasks queued at the start keep the default stamp 0; a task
  that arrives during the 0.1 s slot starting at release time ``c`` is stamped ``c`` and
  seen from ``c + 0.1`` on. The release's simulator only has 512x512 images, so the size
  feature is always 1.
- node row: ``[remaining busy time (s), group id, available (1/0)]``. Group ids are
  renumbered after every launch: the nodes are bucketed by (group, remaining time) in
  node order, bucket ``j`` gets id ``j + 1`` and nodes without a loaded group (cold) get 0.
  Buckets are exactly the warm groups plus one bucket for all cold nodes, so the ids
  follow from the engine's residency alone (see ``release_group_ids``).

In ``event`` and ``slotted`` modes the eatbench clock starts at 0 and a Bernoulli arrival
at ``t`` is the end of the slot in which it was drawn, so the release stamp of a task is
``t + 1 - slot`` (``t + 1`` for other arrival processes) and 0 for a task present at the
start (``arrival == 0``). In ``release`` mode (the default of the ``authors_*`` configs) the
engine runs on the release's clock (it starts at 1 s and shows a task one tick after its
arrival), so the stamp is the arrival itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from eatbench.engine.view import EngineView

#: the release's clock reads 1 s when the episode starts.
CLOCK_START = 1.0
#: the release's task size feature: size / (512 * 512), always 512 x 512 in its simulator.
SIZE_FEATURE = 1.0


def release_group_ids(view: EngineView) -> list[int]:
    """The release's group id of every server: 0 if cold, else 1 + the position of its
    warm group among the buckets (warm groups and the cold bucket) in server order."""
    buckets: dict[object, int] = {}
    ids = []
    for s in range(view.n_servers):
        group = view.warm_group(s)
        key = group[0] if group is not None else None
        if key not in buckets:
            buckets[key] = len(buckets)
        ids.append(0 if key is None else buckets[key] + 1)
    return ids


class ReleaseObservation:
    """Engine state -> the release's ``(queue_rows + n_servers) x 3`` state (float32).

    :param queue_rows: visible queue rows (``queue_len``, 10 in the release).
    :param n_servers: node rows.
    :param stamp_lag: seconds between a task's release stamp and its eatbench arrival
        (the workload's Bernoulli slot, else 0).
    """

    def __init__(self, queue_rows: int, n_servers: int, stamp_lag: float = 0.0) -> None:
        self.queue_rows = queue_rows
        self.n_servers = n_servers
        self.stamp_lag = stamp_lag
        self.rows = queue_rows + n_servers

    def arrival_stamp(self, arrival: float, release_clock: bool = False) -> float:
        """The release's arrival stamp (s) of a task arriving at ``arrival`` (eatbench s).
        With ``release_clock`` (``engine.decision_mode=release``) the engine already runs on
        the release's clock and shows a task one tick after ``arrival``, as the release
        shows a task one tick after its stamp: the stamp is the arrival itself."""
        if arrival <= 0.0:
            return 0.0
        return arrival if release_clock else arrival + CLOCK_START - self.stamp_lag

    def encode(self, view: EngineView) -> np.ndarray:
        obs = np.zeros((self.rows, 3), dtype=np.float64)
        queue = view.visible()  # the window: as many rows as the release's queue (checked at load)
        release_clock = view.decision_mode == "release"
        for i in range(min(self.queue_rows, len(queue))):
            task = queue[i]
            if task.k is None:
                raise ValueError(
                    f"task {task.id} has no fixed k: the release's policies need workload.k_choices (the release "
                    "draws co_num per task)"
                )
            obs[i] = (self.arrival_stamp(task.arrival, release_clock), SIZE_FEATURE, task.k)
        groups = release_group_ids(view)
        base = self.queue_rows
        for s in range(self.n_servers):
            running = view.is_running(s)
            idle = view.is_idle(s)
            remain = view.time_until_free(s) if running else 0.0
            obs[base + s] = (remain, groups[s], 1.0 if idle else 0.0)
        return obs.astype(np.float32)
