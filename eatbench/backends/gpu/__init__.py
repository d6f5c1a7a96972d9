"""The real-GPU backend (``backend=gpu``): diffusers pipelines in worker processes.

Modules:

* ``backend``: ``GpuBackend``, the ``Backend`` the engine drives (launch / advance / ...).
* ``worker``: the per-server process (cold start, warm reuse, task execution).
* ``pipelines``: local loading and random-weight SD-1.5 / SDXL / tiny pipelines.
* ``patch_parallel``: splitting one image's denoising across a gang (CFG halves and
  row patches, all-gather every step).
* ``profiler``: ``measure_profile`` writes latency-profile CSVs for the sim backend.

Importing this package is cheap: torch, diffusers and transformers load only inside the
workers and the functions that need them.
"""

from eatbench.backends import BACKENDS
from eatbench.backends.gpu.backend import GpuBackend

BACKENDS.register("gpu")(GpuBackend)

__all__ = ["GpuBackend"]
