"""Tasks (one text-to-image request each) and their lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class TaskState(IntEnum):
    """Lifecycle of a task: QUEUED -> RESERVED -> RUNNING -> DONE | FAILED.

    RESERVED means the task holds a gang of servers and waits for the busy ones to free.
    Any state but DONE/FAILED becomes UNFINISHED when the episode ends.
    """

    PENDING = 0  # created, not yet arrived
    QUEUED = 1
    RESERVED = 2
    RUNNING = 3
    DONE = 4
    FAILED = 5
    UNFINISHED = 6


@dataclass(slots=True, eq=False)
class Task:
    """One text-to-image request.

    :param id: index of the task in its workload (0, 1, ...).
    :param arrival: arrival time in seconds since the episode start.
    :param prompt: the text prompt.
    :param resolution: image side in pixels (square images).
    :param k: number of servers the task must run on (patch parallelism); ``None`` lets the
        scheduler choose.
    :param slo: response-time objective in seconds (``inf`` for none).
    :param seed: seed for the image generation (used by the GPU backend).
    :param model: name of the diffusion model the task asks for.
    """

    id: int
    arrival: float
    prompt: str
    resolution: int
    k: int | None
    slo: float
    seed: int
    model: str
    state: TaskState = TaskState.PENDING

    def copy(self) -> Task:
        """An independent copy (what the read-only engine view hands out; a direct call,
        several times faster than ``dataclasses.replace``)."""
        return Task(
            self.id, self.arrival, self.prompt, self.resolution, self.k, self.slo, self.seed, self.model, self.state
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "arrival": self.arrival,
            "prompt": self.prompt,
            "resolution": self.resolution,
            "k": self.k,
            "slo": self.slo,
            "seed": self.seed,
            "model": self.model,
        }
