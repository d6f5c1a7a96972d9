"""The simulated backend: a virtual clock and profiled durations."""

from __future__ import annotations

import heapq
import math

from eatbench.backends import BACKENDS
from eatbench.engine.backend import Backend, BackendContext, Job, JobResult


@BACKENDS.register("sim")
class SimBackend(Backend):
    """Completes each job exactly ``job.expected_duration`` seconds after its start (the
    latency profile's value) on a virtual clock; quality comes from the quality curve.

    :param context: the run context (uses ``context.quality``).
    """

    name = "sim"

    def __init__(self, context: BackendContext) -> None:
        self._quality = context.quality
        self._quality_cache: dict[int, float] = {}
        self._clock = 0.0
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = 0

    def now(self) -> float:
        return self._clock

    def launch(self, job: Job) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (job.start + job.expected_duration, self._seq, job))

    def running(self) -> int:
        return len(self._heap)

    def advance(self, until: float) -> list[JobResult]:
        heap = self._heap
        if heap and heap[0][0] <= until:
            t = heap[0][0]
            self._clock = t
            out = []
            while heap and heap[0][0] == t:
                _, _, job = heapq.heappop(heap)
                out.append(JobResult(job, t, self._q(job.steps)))
            return out
        if math.isinf(until):
            raise RuntimeError("advance(inf) with no job running would never return")
        self._clock = max(self._clock, until)
        return []

    def _q(self, steps: int) -> float:
        q = self._quality_cache.get(steps)
        if q is None:
            q = self._quality_cache[steps] = float(self._quality(steps))
        return q

    def close(self) -> list[JobResult]:
        self._heap.clear()
        return []
