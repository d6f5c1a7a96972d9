"""Execution backends, looked up by name (``backend=sim`` or ``backend=gpu``)."""

from eatbench.core.registry import Registry
from eatbench.engine.backend import Backend, BackendContext, Job, JobResult

BACKENDS: Registry[Backend] = Registry("backend")

from eatbench.backends import gpu as _gpu  # noqa: E402,F401  (registers "gpu"; imports torch lazily)
from eatbench.backends import sim as _sim  # noqa: E402,F401  (registers "sim")

__all__ = ["BACKENDS", "Backend", "BackendContext", "Job", "JobResult"]
