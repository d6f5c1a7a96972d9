"""Execution backends, looked up by name (``backend=sim`` or ``backend=gpu``)."""

from eatbench.backends.base import Backend, BackendContext, Job, JobResult
from eatbench.registry import Registry

BACKENDS: Registry[Backend] = Registry("backend")

from eatbench.backends import sim as _sim  # noqa: E402,F401  (registers "sim")

try:  # the gpu backend registers itself; it imports torch/diffusers lazily
    from eatbench.backends import gpu as _gpu  # noqa: E402,F401
except ImportError:  # pragma: no cover - only while the gpu package is absent
    pass

__all__ = ["BACKENDS", "Backend", "BackendContext", "Job", "JobResult"]
