"""The backend interface: how a launched task's completion comes about.

The engine owns arrivals, queues, gangs and residency; a backend owns only the clock and
the execution of launched jobs. The sim backend advances a virtual clock to the next
profiled completion; the gpu backend runs diffusers pipelines and reads the wall clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eatbench.core.tasks import Task

if TYPE_CHECKING:
    from eatbench.engine.cluster import Cluster
    from eatbench.engine.profiles import LatencyProfile


@dataclass(slots=True, frozen=True)
class Job:
    """A task launched on a gang of servers.

    :param task: the task.
    :param servers: server indices of the gang (len == k), all free at ``start``.
    :param steps: number of denoising steps.
    :param cold: whether the gang must load the model first (residency said so).
    :param start: start time in seconds (backend clock).
    :param expected_duration: the latency profile's estimate in seconds (what the sim
        backend uses as the exact duration; a real backend may use it as a timeout hint).
    """

    task: Task
    servers: tuple[int, ...]
    steps: int
    cold: bool
    start: float
    expected_duration: float


@dataclass(slots=True)
class JobResult:
    """What a backend reports when a job ends.

    :param job: the job.
    :param finish: finish time in seconds (backend clock).
    :param quality: image quality (the quality curve in sim; a measured CLIP score on gpu;
        ``None`` when it cannot be measured, never invented).
    :param error: why the job failed, ``None`` if it succeeded.
    :param cold_start_time: measured seconds spent loading/starting the gang, when known.
    :param extra: backend-specific fields copied into the task record (image path, ...).
    """

    job: Job
    finish: float
    quality: float | None
    error: str | None = None
    cold_start_time: float | None = None
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    """Executes jobs and keeps the clock. One instance per experiment run."""

    #: name written into result files ("sim", "gpu").
    name: str = "backend"

    @abstractmethod
    def now(self) -> float:
        """Current time in seconds since the episode start."""

    @abstractmethod
    def launch(self, job: Job) -> None:
        """Start ``job`` now. Must not block for the job's duration."""

    @abstractmethod
    def advance(self, until: float) -> list[JobResult]:
        """Move the clock forward to the earliest job completion at or before ``until``
        and return every job that ended at that instant; if none ends by ``until``, move
        the clock to ``until`` and return ``[]``. ``until`` may be ``inf`` only while a
        job is running."""

    def running(self) -> int:
        """Number of jobs launched and not yet reported."""
        return 0

    def dissolve(self, servers: tuple[int, ...]) -> None:  # noqa: B027 - optional hook
        """Residency hint: the warm groups on ``servers`` are dissolved (a real backend
        tears down their pipelines / process groups). Called before the launch that
        caused it."""

    def close(self) -> list[JobResult]:
        """End the episode: stop whatever still runs and return nothing further. Called
        once; jobs still running are recorded as unfinished by the engine."""
        return []

    def describe(self) -> dict:
        """Facts about the execution platform written into result files."""
        return {"backend": self.name}


@dataclass(slots=True)
class BackendContext:
    """What a backend is built with (besides its own ``params`` from the config).

    :param cluster: the servers and their GPU kinds (``Cluster.uniform(n, kind)`` for
        a one-kind gang, e.g. the profiler's).
    :param profile: the latency profile used for estimates (``None``: the backend needs
        none, e.g. the gpu backend measuring a profile).
    :param quality: ``q(steps)``, e.g. an ``eatbench.engine.profiles.QualityCurve`` (the sim
        backend's quality; ``None`` for a backend that measures quality).
    :param seed: the experiment seed.
    :param out_dir: where the backend may write files (images, logs); ``None`` = nowhere.
    """

    cluster: Cluster
    profile: LatencyProfile | None
    quality: Callable[[int], float] | None
    seed: int = 0
    out_dir: str | None = None
