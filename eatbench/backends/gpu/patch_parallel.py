"""Splitting one image's denoising across a gang of ranks (torch.distributed).

What we do (a simpler relative of DistriFusion, not DistriFusion itself):

* Every rank runs the same diffusers pipeline ``__call__`` with the same prompt and seed,
  so every rank holds the *full* latent. Only the UNet call is distributed: the UNet's
  ``forward`` is replaced by ``PatchParallelUNet.forward``.
* **CFG split** (``split_cfg``): with classifier-free guidance the UNet batch is
  ``[uncond, cond]``; with an even world size, ranks ``0 .. W/2-1`` take the uncond half
  and the others the cond half. This is exact (same result as one device).
* **Row patches**: the ranks that share a batch half split the latent's rows into
  contiguous patches, one per rank. A rank runs the UNet on its patch *plus a halo* of
  ``halo`` latent rows above and below (taken from the full current latent), and keeps
  only its own rows of the output. Convolutions and attention therefore see the patch
  and its halo only, and GroupNorm statistics are per patch: the image differs from the
  single-device one (the backend reports the PSNR). With ``halo >= rows`` each rank sees
  the whole latent and the result is exact (redundant compute, useful as a check).
  DistriFusion instead reuses the previous step's activations of the other patches
  (displaced, asynchronous); we keep the halo variant for simplicity.
* After the UNet call, each rank's output slab is **all-gathered** so that every rank
  has the full noise prediction; each rank then runs the scheduler step on the full
  latent, which keeps the latent identical on all ranks (equivalent to all-gathering the
  full latent every step).

Collectives use the default process group (NCCL between distinct GPUs, gloo on CPU or
when ranks share a GPU; gloo traffic goes through host memory).

The inner UNet call can be eager, ``torch.compile``\\d, or replayed from a CUDA graph per
input shape (``GraphedCall``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Partition:
    """Which part of the UNet batch and rows a rank computes.

    :param half: batch half (0 uncond, 1 cond) or ``None`` for the whole batch.
    :param row_start: first latent row owned (inclusive).
    :param row_stop: last latent row owned (exclusive).
    :param ctx_start: first latent row fed to the UNet (own rows minus the halo).
    :param ctx_stop: last latent row fed to the UNet (exclusive).
    """

    half: int | None
    row_start: int
    row_stop: int
    ctx_start: int
    ctx_stop: int


def row_bounds(rows: int, parts: int, align: int) -> list[tuple[int, int]]:
    """Split ``rows`` into ``parts`` contiguous ranges whose edges are multiples of ``align``.

    Ranges may be empty when ``rows/align < parts``; the last range takes the remainder.
    """
    units = rows // align
    base, extra = divmod(units, parts)
    bounds, start = [], 0
    for p in range(parts):
        size = (base + (1 if p < extra else 0)) * align
        stop = rows if p == parts - 1 else start + size
        bounds.append((start, stop))
        start = stop
    return bounds


def partition(
    rank: int,
    world: int,
    batch: int,
    rows: int,
    *,
    split_cfg: bool,
    halo: int,
    align: int,
) -> Partition:
    """The work of ``rank`` out of ``world`` for a UNet input of ``batch`` x ``rows``."""
    use_cfg = split_cfg and world % 2 == 0 and batch % 2 == 0
    group = world // 2 if use_cfg else world
    half = rank // group if use_cfg else None
    p = rank % group
    start, stop = row_bounds(rows, group, align)[p]
    halo = -(-halo // align) * align  # round up to the alignment
    return Partition(half, start, stop, max(0, start - halo), min(rows, stop + halo))


class GraphedCall:
    """Replays a CUDA graph of ``fn`` per distinct set of input shapes.

    Inputs are copied into static buffers, the graph is replayed, and a copy of the static
    output is returned. Only tensors and ``None`` may appear among the arguments (nested
    one level in dicts, as ``added_cond_kwargs``); other values are baked into the graph.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 3) -> None:
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple, tuple[Any, dict, Any]] = {}

    @staticmethod
    def _key(kwargs: dict) -> tuple:
        out = []
        for name, v in sorted(kwargs.items()):
            if isinstance(v, dict):
                out.append((name, GraphedCall._key(v)))
            elif hasattr(v, "shape"):
                out.append((name, tuple(v.shape), str(v.dtype)))
            else:
                out.append((name, repr(v)))
        return tuple(out)

    @staticmethod
    def _clone(kwargs: dict) -> dict:
        return {
            k: GraphedCall._clone(v) if isinstance(v, dict) else v.clone() if hasattr(v, "shape") else v
            for k, v in kwargs.items()
        }

    @staticmethod
    def _copy_into(static: dict, kwargs: dict) -> None:
        for k, v in kwargs.items():
            if isinstance(v, dict):
                GraphedCall._copy_into(static[k], v)
            elif hasattr(v, "shape"):
                static[k].copy_(v)

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        key = self._key(kwargs)
        if key not in self.graphs:
            static_in = self._clone(kwargs)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.fn(**static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(**static_in)
            self.graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self.graphs[key]
        self._copy_into(static_in, kwargs)
        graph.replay()
        if isinstance(static_out, tuple):  # UNet(..., return_dict=False) -> (sample,)
            return tuple(o.clone() if hasattr(o, "clone") else o for o in static_out)
        return static_out.clone()


def _slice_batch(value: Any, half: int | None, batch: int) -> Any:
    """Take batch half ``half`` of a tensor (or of each tensor in a dict) with ``batch`` rows."""
    if half is None or value is None:
        return value
    if isinstance(value, dict):
        return {k: _slice_batch(v, half, batch) for k, v in value.items()}
    if hasattr(value, "shape") and value.dim() > 0 and value.shape[0] == batch:
        n = batch // 2
        return value[half * n : (half + 1) * n]
    return value


class PatchParallelUNet:
    """Replaces ``unet.forward`` by a gang-parallel forward (see the module docstring).

    :param unet: the pipeline's ``UNet2DConditionModel`` (patched in place; ``remove``
        restores it).
    :param split_cfg: split the CFG batch halves between ranks when the world is even.
    :param halo: latent rows of context above and below each patch (``None``: 1/4 of
        the latent height, rounded to the alignment).
    :param inner: ``"eager"``, ``"compile"`` or ``"cuda_graphs"`` for the local UNet call.
    :param sync: called (no arguments) right before the first UNet call's clock is read,
        e.g. ``torch.cuda.synchronize``, so that the first step does not include the tail
        of the asynchronous text encoding.
    :param compile_backend: ``torch.compile`` backend when ``inner="compile"``
        (``inductor``; tests use ``aot_eager`` or ``eager``: same tracing, no codegen).
    """

    def __init__(
        self,
        unet: Any,
        *,
        split_cfg: bool = True,
        halo: int | None = None,
        inner: str = "eager",
        sync: Callable[[], None] | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        self.unet = unet
        self.split_cfg = split_cfg
        self.halo = halo
        self.inner = inner
        self.enabled = True
        self.sync = sync
        self.first_call_t: float | None = None  # perf_counter of the first UNet call
        self.calls = 0  # UNet calls since the last reset of first_call_t (by the caller)
        self.align = 2 ** (len(unet.config.block_out_channels) - 1)
        self._orig_forward = unet.forward  # bound method of the class
        call: Callable[..., Any] = self._orig_forward
        if inner == "compile":
            import torch

            call = torch.compile(self._orig_forward, backend=compile_backend)
        elif inner == "cuda_graphs":
            call = GraphedCall(self._orig_forward)
        elif inner != "eager":
            raise ValueError(f"inner={inner!r}; allowed: eager, compile, cuda_graphs")
        self._local = call
        unet.forward = self.forward

    def compiled_graphs(self) -> int:
        """How many graphs the local call has compiled (``compile``: dynamo's unique
        graphs in this process) or captured (``cuda_graphs``) so far; 0 when eager.
        A change across a measured call means compilation happened inside it."""
        if self.inner == "compile":
            from torch._dynamo.utils import counters

            return int(counters["stats"]["unique_graphs"])
        if self.inner == "cuda_graphs":
            return len(self._local.graphs)
        return 0

    def remove(self) -> None:
        """Restore the UNet's own ``forward``."""
        if self.unet.__dict__.get("forward") == self.forward:
            del self.unet.forward

    @contextlib.contextmanager
    def single_device(self) -> Iterator[None]:
        """Run the local UNet on the full input (no collectives) inside the block."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def _call_local(self, sample: Any, timestep: Any, kwargs: dict) -> Any:
        import torch

        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=sample.device)
        elif timestep.device != sample.device:  # a graph must not copy from host
            timestep = timestep.to(sample.device)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.pop("return_dict", None)
        return self._local(sample=sample, timestep=timestep, return_dict=False, **kwargs)[0]

    def forward(self, sample: Any, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        """The UNet forward with the diffusers signature; returns ``(noise_pred,)`` or an
        output object like the original, always for the *full* input."""
        import time

        import torch.distributed as dist

        if self.first_call_t is None:
            if self.sync is not None:
                self.sync()  # the text encoding queued before this call is not step 0's
            self.first_call_t = time.perf_counter()
        self.calls += 1
        return_dict = kwargs.pop("return_dict", True)
        if args:  # encoder_hidden_states may come positionally
            kwargs["encoder_hidden_states"] = args[0]
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if not self.enabled or world == 1:
            out = self._call_local(sample, timestep, kwargs)
        else:
            out = self._parallel(sample, timestep, kwargs, dist.get_rank(), world)
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        return (out,)

    def _parallel(self, sample: Any, timestep: Any, kwargs: dict, rank: int, world: int) -> Any:
        import torch

        batch, rows = sample.shape[0], sample.shape[2]
        halo = self.halo if self.halo is not None else max(self.align, rows // 4)
        parts = [
            partition(r, world, batch, rows, split_cfg=self.split_cfg, halo=halo, align=self.align)
            for r in range(world)
        ]
        me = parts[rank]
        local_kwargs = {k: _slice_batch(v, me.half, batch) for k, v in kwargs.items()}
        local_t = _slice_batch(timestep, me.half, batch) if torch.is_tensor(timestep) else timestep
        x = _slice_batch(sample, me.half, batch)[:, :, me.ctx_start : me.ctx_stop].contiguous()
        if me.row_stop > me.row_start:
            y = self._call_local(x, local_t, local_kwargs)
            y = y[:, :, me.row_start - me.ctx_start : me.row_stop - me.ctx_start]
        else:  # more ranks than aligned rows: nothing to compute
            y = x[:, :, :0]
        # all_gather needs equal shapes: pad every slab to the largest patch
        sub_batch = batch // 2 if me.half is not None else batch
        max_rows = max(p.row_stop - p.row_start for p in parts)
        slab = y.new_zeros((sub_batch, y.shape[1], max_rows, y.shape[3]))
        slab[:, :, : y.shape[2]] = y
        gathered = _all_gather(slab, world)
        full = sample.new_empty((batch, y.shape[1], rows, sample.shape[3]))
        for p, g in zip(parts, gathered, strict=True):
            n = p.row_stop - p.row_start
            if p.half is None:
                full[:, :, p.row_start : p.row_stop] = g[:, :, :n]
            else:
                b = batch // 2
                full[p.half * b : (p.half + 1) * b, :, p.row_start : p.row_stop] = g[:, :, :n]
        return full


def _all_gather(t: Any, world: int) -> list[Any]:
    """``all_gather`` that also works for CUDA tensors over gloo (through host memory)."""
    import torch.distributed as dist

    if t.is_cuda and dist.get_backend() == "gloo":
        host = t.cpu()
        out = [host.new_empty(host.shape) for _ in range(world)]
        dist.all_gather(out, host)
        return [o.to(t.device, non_blocking=True) for o in out]
    out = [t.new_empty(t.shape) for _ in range(world)]
    dist.all_gather(out, t.contiguous())
    return out


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (PIL or arrays).

    Identical images give 100.0 (a cap, so the value stays JSON-friendly).
    """
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return 100.0
    return min(100.0, 10.0 * float(np.log10(255.0**2 / mse)))
