"""The server process: one per server, bound to one device, holding one pipeline.

The backend talks to a worker over a duplex ``multiprocessing`` pipe.

The messages are the typed dataclasses below (never tuples indexed by position).

Backend -> worker messages:

* ``RunTask``: run one task as rank ``spec.rank`` of a gang (see ``run_task``).
  When ``spec.init`` is set the worker first does a *cold start*: tear down its old
  process group and pipeline, join the new process group, load the weights to the
  device (random weights: built in the target dtype from a shared seed, checked equal on
  all ranks by one all-gathered checksum instead of one broadcast per parameter), empty
  the allocator cache, and warm up (a 2-step generation at the task's shape, and with
  ``compile``/``cuda_graphs`` at every shape of ``spec.warm_shapes``). All timed.
  With ``compile``/``cuda_graphs``, a warm task at a shape (resolution, images) the
  worker has not run yet is warmed up first and that time is reported as its cold start
  (``shape_warmup_s``), so no compilation or capture lands in a measured pipeline call.
* ``Dissolve()``: tear down the process group and free the pipeline.
* ``Stop()``: tear down and exit.

Worker -> backend messages:

* ``Ready(info)`` once torch/diffusers are imported (info: pid, device, versions).
* ``Started(job_id, rank, t)`` when a task begins (``t``: ``time.monotonic()``).
* ``Done(job_id, rank, payload)`` when it ends (see ``run_task`` for the payload).
* ``Failed(job_id, rank, reason, restart)`` when it fails, sent *before*
  any tear-down (destroying a process group can block on unmatched collectives). After a
  plain out-of-memory error on a single-rank task the worker then frees its pipeline and
  keeps serving (``restart: False``); after any other error (a sticky CUDA error such as
  an illegal address, a failed graph capture, an NCCL error, or anything in a gang) it
  exits at once without tearing down, and the backend starts a fresh process.

All timestamps sent are ``time.monotonic()`` seconds (system-wide on Linux, so comparable
between processes); durations are seconds measured with ``time.perf_counter()`` and, on
CUDA, bracketed by ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any


@dataclass
class WorkerConfig:
    """Fixed settings of one worker process.

    :param server: server index.
    :param device: ``"cpu"`` or ``"cuda:i"``.
    :param dtype: ``fp32``, ``fp16`` or ``bf16``.
    :param inner: local UNet execution: ``eager``, ``compile`` or ``cuda_graphs``.
    :param split_cfg: split CFG halves between ranks (see ``patch_parallel``).
    :param halo: latent rows of context around each patch (``None``: automatic).
    :param cpu_threads: torch intra-op threads in this process.
    :param time_steps: record per-step times (synchronising each step on CUDA).
    :param pg_timeout_s: timeout of collectives (and of the rendezvous) in seconds.
    :param compile_backend: ``torch.compile`` backend for ``inner="compile"``.
    :param memory_fraction: on CUDA, the share of the device's memory this process may
        allocate (``torch.cuda.set_per_process_memory_fraction``; emulates a smaller GPU,
        see ``backend.memory_caps``); ``None``: the whole device. Not applied on cpu.
    """

    server: int
    device: str
    dtype: str = "fp32"
    inner: str = "eager"
    split_cfg: bool = True
    halo: int | None = None
    cpu_threads: int = 1
    time_steps: bool = True
    pg_timeout_s: float = 600.0
    compile_backend: str = "inductor"
    memory_fraction: float | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The pipeline a task needs.

    :param key: identity of the weights (a path, a repo id or ``random:<arch>``); a worker
        holding a pipeline of another key must cold-start.
    :param model_path: local diffusers pipeline directory (``None`` with ``random_init``).
    :param random_init: ``sd15``, ``sdxl`` or ``tiny``: random weights of that architecture.
    :param weights_seed: seed of random weights (equal on every rank of a gang).
    """

    key: str
    model_path: str | None = None
    random_init: str | None = None
    weights_seed: int = 0


@dataclass(frozen=True, slots=True)
class GroupInit:
    """How a cold gang forms its process group: rendezvous ``port`` on 127.0.0.1 and the
    ``torch.distributed`` backend (``nccl`` or ``gloo``)."""

    port: int
    backend: str


@dataclass(frozen=True, slots=True)
class RunTask:
    """Backend -> worker: run one task as rank ``rank`` of a gang of ``world`` servers.

    :param job_id: the backend's job number (echoed in the replies).
    :param task_id: the task's id.
    :param rank: this worker's rank (its position in the gang).
    :param world: gang size k.
    :param init: set for a cold start (a new process group), ``None`` for a warm task.
    :param model: the pipeline to use.
    :param prompt: text prompt.
    :param seed: generation seed.
    :param resolution: image side (px).
    :param steps: denoising steps.
    :param batch: images per task.
    :param guidance_scale: classifier-free guidance scale.
    :param image_path: rank 0: return the image for the backend to save there.
    :param clip_model_path: local CLIP model for the quality score (``None``: no score).
    :param check_psnr: rank 0 of a gang also renders the single-device image.
    :param warm_shapes: extra (resolution, batch) shapes to warm up at a cold start.
    :param inject: a fault to raise (tests of the error paths), ``None`` normally.
    """

    job_id: int
    task_id: int
    rank: int
    world: int
    init: GroupInit | None
    model: ModelSpec
    prompt: str
    seed: int
    resolution: int
    steps: int
    batch: int = 1
    guidance_scale: float = 7.5
    image_path: str | None = None
    clip_model_path: str | None = None
    check_psnr: bool = False
    warm_shapes: tuple[tuple[int, int], ...] = ()
    inject: dict | None = None


@dataclass(frozen=True, slots=True)
class Dissolve:
    """Backend -> worker: tear down the process group and free the pipeline."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Backend -> worker: tear down and exit."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker -> backend: started (``info``: pid, server, device, device_name, versions,
    cpu_threads)."""

    info: dict


@dataclass(frozen=True, slots=True)
class Started:
    """Worker -> backend: rank ``rank`` of job ``job_id`` began at monotonic time ``t`` (s)."""

    job_id: int
    rank: int
    t: float


@dataclass(frozen=True, slots=True)
class Done:
    """Worker -> backend: rank ``rank`` of job ``job_id`` ended (``payload``: see ``run_task``)."""

    job_id: int
    rank: int
    payload: dict


@dataclass(frozen=True, slots=True)
class Failed:
    """Worker -> backend: rank ``rank`` of job ``job_id`` failed with ``reason``;
    ``restart``: whether the worker exits and must be replaced."""

    job_id: int
    rank: int
    reason: str
    restart: bool = True


@dataclass
class _State:
    pipe: Any = None
    parallel: Any = None
    model_key: str | None = None
    pg: bool = False
    clip: dict = field(default_factory=dict)
    shapes: set = field(default_factory=set)  # (resolution, images) run since the last cold start


class InjectedFault(RuntimeError):
    """A failure raised on purpose (tests of the error paths; ``RunTask.inject``)."""


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: rely on the getppid poll
        pass


def worker_main(cfg: WorkerConfig, conn: Any, parent_pid: int) -> None:
    """Entry point of the spawned process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _set_parent_death_signal()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
    import torch

    torch.set_num_threads(cfg.cpu_threads)
    import diffusers
    import transformers

    from eatbench.backends.gpu.pipelines import quiet_libraries

    quiet_libraries()
    # resolve diffusers' / transformers' lazy modules now, so that the first cold start
    # measures loading weights, not importing Python modules
    from diffusers import (  # noqa: F401
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: F401

    if cfg.device.startswith("cuda"):
        torch.cuda.set_device(cfg.device)
    apply_memory_cap(cfg)
    info = {
        "pid": os.getpid(),
        "server": cfg.server,
        "device": cfg.device,
        "memory_fraction": cfg.memory_fraction if cfg.device.startswith("cuda") else None,
        "device_name": torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": cfg.cpu_threads,
    }
    conn.send(Ready(info))
    state = _State()
    try:
        while True:
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:
                    break
                continue
            try:
                msg = conn.recv()
            except EOFError:
                break
            if isinstance(msg, Stop):
                break
            if isinstance(msg, Dissolve):
                _teardown(state, cfg)
            elif isinstance(msg, RunTask) and _handle_run(state, cfg, conn, msg) == "exit":
                try:
                    conn.close()
                finally:
                    os._exit(3)  # no tear-down: the state may be broken; the backend respawns us
    finally:
        _teardown(state, cfg)


def apply_memory_cap(cfg: WorkerConfig) -> bool:
    """Cap this process's CUDA allocations at ``cfg.memory_fraction`` of its device (an
    allocation beyond it raises the allocator's out-of-memory error, which fails the task
    and keeps the worker, as for a real card of that size). Returns whether a cap was set:
    never on cpu, nor without a fraction."""
    if cfg.memory_fraction is None or not cfg.device.startswith("cuda"):
        return False
    import torch

    torch.cuda.set_per_process_memory_fraction(cfg.memory_fraction, cfg.device)
    return True


def _teardown(state: _State, cfg: WorkerConfig) -> None:
    """Leave the process group and free the pipeline (and device memory)."""
    import torch
    import torch.distributed as dist

    if state.parallel is not None:
        state.parallel.remove()
    state.pipe = state.parallel = state.model_key = None
    state.shapes = set()
    if state.pg and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group is being dropped anyway
            pass
    state.pg = False
    gc.collect()
    if cfg.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _handle_run(state: _State, cfg: WorkerConfig, conn: Any, spec: RunTask) -> str | None:
    """Run one task and report it; returns ``"exit"`` when this process must be replaced."""
    job_id, rank = spec.job_id, spec.rank
    try:
        payload = run_task(state, cfg, spec, lambda t: conn.send(Started(job_id, rank, t)))
    except BaseException as exc:  # noqa: BLE001 - report every failure first
        restart = needs_restart(exc, in_gang=state.pg or spec.world > 1)
        reason = _reason(exc) + "\n" + traceback.format_exc(limit=4)
        try:  # report first: tearing down may block on the peers' unmatched collectives
            conn.send(Failed(job_id, rank, reason, restart))
        except (OSError, ValueError):
            pass
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if restart:
            return "exit"
        inject = _injected(spec)
        if inject.get("teardown_delay_s"):
            time.sleep(float(inject["teardown_delay_s"]))  # a slow tear-down, for tests
        try:
            _teardown(state, cfg)
        except Exception:  # noqa: BLE001 - the pipeline is dropped either way
            pass
        return None
    conn.send(Done(job_id, rank, payload))
    return None


def is_plain_oom(exc: BaseException) -> bool:
    """An allocation that failed cleanly (the caching allocator's out-of-memory error),
    as opposed to a CUDA error raised by a kernel (``CUDA error: ...``), which is sticky."""
    text = str(exc).lower()
    if "cuda error" in text or "cublas_status" in text or "nccl" in text:
        return False
    return "OutOfMemory" in type(exc).__name__ or "out of memory" in text


def needs_restart(exc: BaseException, in_gang: bool) -> bool:
    """Whether the worker process must be replaced after ``exc``: always, except after a
    plain out-of-memory error outside a gang (peers in a gang may be stuck in a collective,
    and a sticky CUDA error poisons every later call in the process)."""
    return in_gang or not is_plain_oom(exc)


def _reason(exc: BaseException) -> str:
    if is_plain_oom(exc):
        return f"out of memory: {exc}".strip()
    return f"{type(exc).__name__}: {exc}"


def _injected(spec: RunTask) -> dict:
    """The fault ``spec.inject`` asks this rank to raise, or ``{}``."""
    inject = spec.inject or {}
    if inject and inject.get("rank", 0) in (None, spec.rank):
        return inject
    return {}


def _raise_injected(inject: dict) -> None:
    import torch

    kind = inject.get("kind", "error")
    if kind == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    if kind == "sticky":
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
    raise InjectedFault(f"injected failure ({kind})")


def memory_stats(device: str) -> dict[str, float]:
    """Peak memory of this process in GiB: on CUDA the allocator's peaks since the last
    cold start (``peak_alloc_gib``, ``peak_reserved_gib``) and what is allocated now;
    on cpu the peak resident set size (``peak_rss_gib``)."""
    gib = float(2**30)
    if device.startswith("cuda"):
        import torch

        return {
            "peak_alloc_gib": torch.cuda.max_memory_allocated(device) / gib,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / gib,
            "alloc_gib": torch.cuda.memory_allocated(device) / gib,
        }
    import resource

    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / gib}


def _weights_checksums(pipe: Any) -> Any:
    """Per-parameter (sum, L2 norm) in float64 of every module of ``pipe``, as one tensor."""
    import torch

    vals = []
    with torch.no_grad():
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                for p in module.parameters():
                    vals.append(p.sum(dtype=torch.float64))
                    vals.append(torch.linalg.vector_norm(p, dtype=torch.float64))
    return torch.stack(vals)


def _same_weights_everywhere(pipe: Any, world: int) -> bool:
    """One all-gather of the weights' checksums: whether every rank built the same weights."""
    from eatbench.backends.gpu.patch_parallel import _all_gather

    sums = _weights_checksums(pipe)
    gathered = _all_gather(sums, world)
    return all(bool((g.to(sums.device) == sums).all()) for g in gathered)


def _cold_start(state: _State, cfg: WorkerConfig, spec: RunTask) -> dict:
    """Join the gang's process group, load the pipeline, warm up. Returns timings (s)."""
    import torch
    import torch.distributed as dist

    from eatbench.backends.gpu.patch_parallel import PatchParallelUNet
    from eatbench.backends.gpu.pipelines import load_pipeline

    _teardown(state, cfg)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(cfg.device)
    t0 = time.perf_counter()
    init = spec.init
    assert init is not None, "a cold start needs RunTask.init"
    if spec.world > 1:
        dist.init_process_group(
            backend=init.backend,
            init_method=f"tcp://127.0.0.1:{init.port}",
            rank=spec.rank,
            world_size=spec.world,
            timeout=timedelta(seconds=cfg.pg_timeout_s),
            device_id=torch.device(cfg.device) if init.backend == "nccl" else None,
        )
        state.pg = True
        dist.barrier()
    t1 = time.perf_counter()
    model = spec.model
    pipe = load_pipeline(
        model_path=model.model_path,
        random_init=model.random_init,
        device=cfg.device,
        dtype=cfg.dtype,
        seed=model.weights_seed,
    )
    broadcast = False
    if model.random_init and spec.world > 1:
        # same seed, same device kind and dtype: same weights; one checksum all-gather proves
        # it, and only a mismatch (e.g. different GPU models) falls back to broadcasting
        broadcast = not _same_weights_everywhere(pipe, spec.world)
        if broadcast:
            with torch.no_grad():
                for module in pipe.components.values():
                    if isinstance(module, torch.nn.Module):
                        for p in module.parameters():
                            _broadcast(p.data)
    gc.collect()
    if cfg.device.startswith("cuda"):
        torch.cuda.empty_cache()  # nothing of the build stays reserved
    _sync(cfg.device)
    t2 = time.perf_counter()
    mem_loaded = memory_stats(cfg.device)
    state.pipe = pipe
    state.model_key = model.key
    state.parallel = PatchParallelUNet(
        pipe.unet,
        split_cfg=cfg.split_cfg,
        halo=cfg.halo,
        inner=cfg.inner,
        sync=lambda: _sync(cfg.device),
        compile_backend=cfg.compile_backend,
    )
    shapes = [_shape(spec)]
    if cfg.inner != "eager":  # compile / capture every shape the workload can ask for, now
        shapes += [(int(r), int(b)) for r, b in spec.warm_shapes if (int(r), int(b)) != shapes[0]]
    for res, batch in shapes:
        _generate(state, cfg, replace(spec, resolution=res, batch=batch), steps=2, decode=spec.rank == 0)
        state.shapes.add((res, batch))
    _sync(cfg.device)
    t3 = time.perf_counter()
    return {
        "pg_init_s": t1 - t0,
        "load_s": t2 - t1,
        "warmup_s": t3 - t2,
        "compile_s": (t3 - t2) if cfg.inner != "eager" else 0.0,
        "warmup_shapes": [list(s) for s in shapes],
        "cold_start_s": t3 - t0,
        "weights_broadcast": broadcast,
        "mem_after_load_gib": mem_loaded,
    }


def _shape(spec: RunTask) -> tuple[int, int]:
    """The (resolution, images per task) of a task: what compiled code and graphs key on."""
    return (int(spec.resolution), int(spec.batch))


def _broadcast(t: Any) -> None:
    import torch.distributed as dist

    if t.is_cuda and dist.get_backend() == "gloo":
        host = t.cpu()
        dist.broadcast(host, 0)
        t.copy_(host)
    else:
        dist.broadcast(t, 0)


def _generate(
    state: _State, cfg: WorkerConfig, spec: RunTask, *, steps: int, decode: bool, inject: dict | None = None
) -> tuple[Any, list[float], float]:
    """Run the pipeline; returns (output, per-step seconds, pipeline seconds).

    Step ``i``'s time runs from the end of step ``i - 1`` (for step 0: the first UNet call,
    after a device synchronisation, so the text encoding's tail is not in it) to the end
    of step ``i``. One entry per scheduler iteration: PNDM (SD-1.5's scheduler) iterates
    ``steps + 1`` times for ``steps`` inference steps; ``state.parallel.calls`` counts the
    UNet calls."""
    import torch

    marks: list[float] = []

    def on_step_end(pipe: Any, i: int, t: Any, kw: dict) -> dict:
        if cfg.time_steps:
            _sync(cfg.device)
            marks.append(time.perf_counter())
        if inject and int(inject.get("step", 0)) == i:
            _raise_injected(inject)
        return kw

    state.parallel.first_call_t = None
    state.parallel.calls = 0
    generator = torch.Generator("cpu").manual_seed(int(spec.seed))
    _sync(cfg.device)
    t0 = time.perf_counter()
    out = state.pipe(
        prompt=spec.prompt,
        height=spec.resolution,
        width=spec.resolution,
        num_inference_steps=steps,
        guidance_scale=spec.guidance_scale,
        num_images_per_prompt=spec.batch,
        generator=generator,
        output_type="pil" if decode else "latent",
        callback_on_step_end=on_step_end,
    )
    _sync(cfg.device)
    total = time.perf_counter() - t0
    step_s: list[float] = []
    if marks and state.parallel.first_call_t is not None:
        edges = [state.parallel.first_call_t, *marks]
        step_s = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    return out, step_s, total


def run_task(state: _State, cfg: WorkerConfig, spec: RunTask, started: Any) -> dict:
    """Run one task (cold start first if ``spec.init``); returns the ``Done`` payload.

    Payload keys: ``t_end`` (monotonic time the image/latent was ready), ``loaded``
    (whether weights were loaded for this task), ``cold_start_s`` and its parts
    (``pg_init_s``, ``load_s``, ``warmup_s``, ``compile_s``, ``shape_warmup_s``),
    ``weights`` (``random`` or ``pretrained``), ``pipeline_s`` (the pipeline call),
    ``step_s`` (per-step seconds), ``unet_calls``, ``compiled_in_task`` (graphs compiled
    or captured inside the measured call: 0 unless something is wrong), ``memory``
    (``memory_stats``), ``image`` (rank 0, when ``spec.image_path``: the uint8 HxWx3
    array; the backend writes the PNG, so the server is not kept busy by it), ``quality``
    (CLIP score or ``None``), ``psnr_vs_single_db`` (when asked, rank 0), ``quality_s``
    (seconds of CLIP and PSNR after the image was ready; the server is busy meanwhile).
    """
    import numpy as np

    started(time.monotonic())
    model = spec.model
    payload: dict[str, Any] = {
        "loaded": False,
        "cold_start_s": 0.0,
        "shape_warmup_s": 0.0,
        "weights": "random" if model.random_init else "pretrained",
    }
    if spec.init is not None or state.pipe is None or state.model_key != model.key:
        if spec.init is None:  # should not happen: the backend asks the residency model
            raise RuntimeError("worker is not warm for this gang and no cold start was asked")
        payload.update(_cold_start(state, cfg, spec))
        payload["loaded"] = True
    decode = spec.rank == 0
    shape = _shape(spec)
    if cfg.inner != "eager" and shape not in state.shapes:  # a new shape is a (partial) cold start
        t_w = time.perf_counter()
        _generate(state, cfg, spec, steps=2, decode=decode)
        _sync(cfg.device)
        state.shapes.add(shape)
        payload["shape_warmup_s"] = time.perf_counter() - t_w
        payload["compile_s"] = payload.get("compile_s", 0.0) + payload["shape_warmup_s"]
        payload["cold_start_s"] += payload["shape_warmup_s"]
    graphs = state.parallel.compiled_graphs()
    out, step_s, total = _generate(state, cfg, spec, steps=spec.steps, decode=decode, inject=_injected(spec))
    payload.update(t_end=time.monotonic(), pipeline_s=total, step_s=step_s)
    payload.update(unet_calls=state.parallel.calls, compiled_in_task=state.parallel.compiled_graphs() - graphs)
    state.shapes.add(shape)
    payload.update(image=None, quality=None, quality_s=0.0)
    if decode:
        image = out.images[0]
        if spec.image_path:
            payload["image"] = np.asarray(image.convert("RGB"), dtype=np.uint8)
        t_q = time.perf_counter()
        if spec.clip_model_path and spec.model.random_init is None:
            from eatbench.backends.gpu.quality import clip_scores

            payload["quality"] = clip_scores([image], [spec.prompt], spec.clip_model_path, device=cfg.device)[0]
        if spec.check_psnr and spec.world > 1:
            from eatbench.backends.gpu.patch_parallel import psnr

            with state.parallel.single_device():
                ref, _, _ = _generate(state, cfg, spec, steps=spec.steps, decode=True)
            payload["psnr_vs_single_db"] = psnr(image, ref.images[0])
        payload["quality_s"] = time.perf_counter() - t_q
    payload["memory"] = memory_stats(cfg.device)
    return payload


def save_image(image: Any, path: str, meta: dict) -> str:
    """Save ``image`` (PIL, or a uint8 HxWx3 array) as a PNG at ``path`` with ``meta``
    (prompt, seed, steps, ...) as text chunks and a JSON sidecar; returns ``path``."""
    from PIL import Image, PngImagePlugin

    if not hasattr(image, "save"):
        image = Image.fromarray(image)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for k, v in meta.items():
        info.add_text(k, str(v))
    image.save(path, pnginfo=info)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f)
    return path


if __name__ == "__main__":  # pragma: no cover - spawned via multiprocessing only
    sys.exit("run through eatbench.backends.gpu.backend")
