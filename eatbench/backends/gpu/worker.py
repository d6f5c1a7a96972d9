"""The server process: one per server, bound to one device, holding one pipeline.

The backend talks to a worker over a duplex ``multiprocessing`` pipe.

Backend -> worker messages:

* ``("run", spec)``: run one task as rank ``spec["rank"]`` of a gang (see ``RunSpec``).
  When ``spec["init"]`` is set the worker first does a *cold start*: tear down its old
  process group and pipeline, join the new process group, load the weights to the
  device, and warm up (a 2-step generation at the task's resolution). All timed.
* ``("dissolve",)``: tear down the process group and free the pipeline.
* ``("stop",)``: tear down and exit.

Worker -> backend messages:

* ``("ready", info)`` once torch/diffusers are imported (info: pid, device, versions).
* ``("started", job_id, rank, t)`` when a task begins (``t``: ``time.monotonic()``).
* ``("done", job_id, rank, payload)`` when it ends (see ``run_task`` for the payload).
* ``("error", job_id, rank, reason)`` when it fails; the worker has torn down its group.

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
from dataclasses import dataclass, field
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
    :param pg_timeout_s: timeout of collectives in seconds.
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


@dataclass
class _State:
    pipe: Any = None
    parallel: Any = None
    model_key: str | None = None
    pg: bool = False
    clip: dict = field(default_factory=dict)


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
    if cfg.device.startswith("cuda"):
        torch.cuda.set_device(cfg.device)
    info = {
        "pid": os.getpid(),
        "server": cfg.server,
        "device": cfg.device,
        "device_name": torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": cfg.cpu_threads,
    }
    conn.send(("ready", info))
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
            if msg[0] == "stop":
                break
            if msg[0] == "dissolve":
                _teardown(state, cfg)
            elif msg[0] == "run":
                _handle_run(state, cfg, conn, msg[1])
    finally:
        _teardown(state, cfg)


def _teardown(state: _State, cfg: WorkerConfig) -> None:
    """Leave the process group and free the pipeline (and device memory)."""
    import torch
    import torch.distributed as dist

    if state.parallel is not None:
        state.parallel.remove()
    state.pipe = state.parallel = state.model_key = None
    if state.pg and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group is being dropped anyway
            pass
    state.pg = False
    gc.collect()
    if cfg.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _handle_run(state: _State, cfg: WorkerConfig, conn: Any, spec: dict) -> None:
    job_id, rank = spec["job_id"], spec["rank"]
    try:
        payload = run_task(state, cfg, spec, lambda t: conn.send(("started", job_id, rank, t)))
    except BaseException as exc:  # noqa: BLE001 - report every failure, keep serving
        reason = _reason(exc)
        tb = traceback.format_exc(limit=4)
        try:
            _teardown(state, cfg)
        except Exception:  # noqa: BLE001
            pass
        conn.send(("error", job_id, rank, reason + "\n" + tb))
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return
    conn.send(("done", job_id, rank, payload))


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in str(exc).lower():
        return f"out of memory: {exc}".strip()
    return f"{name}: {exc}"


def _cold_start(state: _State, cfg: WorkerConfig, spec: dict) -> dict:
    """Join the gang's process group, load the pipeline, warm up. Returns timings (s)."""
    import torch
    import torch.distributed as dist

    from eatbench.backends.gpu.patch_parallel import PatchParallelUNet
    from eatbench.backends.gpu.pipelines import load_pipeline

    _teardown(state, cfg)
    t0 = time.perf_counter()
    init = spec["init"]
    if spec["world"] > 1:
        dist.init_process_group(
            backend=init["backend"],
            init_method=f"tcp://127.0.0.1:{init['port']}",
            rank=spec["rank"],
            world_size=spec["world"],
            timeout=timedelta(seconds=cfg.pg_timeout_s),
            device_id=torch.device(cfg.device) if init["backend"] == "nccl" else None,
        )
        state.pg = True
        dist.barrier()
    t1 = time.perf_counter()
    model = spec["model"]
    pipe = load_pipeline(
        model_path=model["model_path"],
        random_init=model["random_init"],
        device=cfg.device,
        dtype=cfg.dtype,
        seed=model.get("weights_seed", 0),
    )
    if model["random_init"] and spec["world"] > 1:  # identical random weights on all ranks
        with torch.no_grad():
            modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
            for module in modules:
                for p in module.parameters():
                    _broadcast(p.data)
    _sync(cfg.device)
    t2 = time.perf_counter()
    state.pipe = pipe
    state.model_key = model["key"]
    state.parallel = PatchParallelUNet(pipe.unet, split_cfg=cfg.split_cfg, halo=cfg.halo, inner=cfg.inner)
    _generate(state, cfg, spec, steps=2, decode=spec["rank"] == 0)  # warm-up
    _sync(cfg.device)
    t3 = time.perf_counter()
    return {"pg_init_s": t1 - t0, "load_s": t2 - t1, "warmup_s": t3 - t2, "cold_start_s": t3 - t0}


def _broadcast(t: Any) -> None:
    import torch.distributed as dist

    if t.is_cuda and dist.get_backend() == "gloo":
        host = t.cpu()
        dist.broadcast(host, 0)
        t.copy_(host)
    else:
        dist.broadcast(t, 0)


def _generate(
    state: _State, cfg: WorkerConfig, spec: dict, *, steps: int, decode: bool
) -> tuple[Any, list[float], float]:
    """Run the pipeline; returns (output, per-step seconds, pipeline seconds)."""
    import torch

    marks: list[float] = []

    def on_step_end(pipe: Any, i: int, t: Any, kw: dict) -> dict:
        if cfg.time_steps:
            _sync(cfg.device)
            marks.append(time.perf_counter())
        return kw

    state.parallel.first_call_t = None
    generator = torch.Generator("cpu").manual_seed(int(spec["seed"]))
    _sync(cfg.device)
    t0 = time.perf_counter()
    out = state.pipe(
        prompt=spec["prompt"],
        height=spec["resolution"],
        width=spec["resolution"],
        num_inference_steps=steps,
        guidance_scale=spec["guidance_scale"],
        num_images_per_prompt=spec.get("batch", 1),
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


def run_task(state: _State, cfg: WorkerConfig, spec: dict, started: Any) -> dict:
    """Run one task (cold start first if ``spec["init"]``); returns the ``done`` payload.

    Payload keys: ``t_end`` (monotonic time the image/latent was ready), ``loaded``
    (whether weights were loaded for this task), ``cold_start_s`` and its parts,
    ``pipeline_s`` (the pipeline call), ``step_s`` (per-step seconds), ``image_path``,
    ``quality`` (CLIP score or ``None``), ``psnr_vs_single_db`` (when asked, rank 0),
    ``quality_s`` (seconds spent on the quality measurement).
    """
    started(time.monotonic())
    payload: dict[str, Any] = {"loaded": False, "cold_start_s": 0.0}
    if spec["init"] is not None or state.pipe is None or state.model_key != spec["model"]["key"]:
        if spec["init"] is None:  # should not happen: the backend tracks residency
            raise RuntimeError("worker is not warm for this gang and no cold start was asked")
        payload.update(_cold_start(state, cfg, spec))
        payload["loaded"] = True
    decode = spec["rank"] == 0
    out, step_s, total = _generate(state, cfg, spec, steps=spec["steps"], decode=decode)
    payload.update(t_end=time.monotonic(), pipeline_s=total, step_s=step_s)
    payload.update(image_path=None, quality=None, quality_s=0.0)
    if decode:
        image = out.images[0]
        t_q = time.perf_counter()
        if spec.get("image_path"):
            payload["image_path"] = _save_image(image, spec)
        if spec.get("clip_model_path") and spec["model"]["random_init"] is None:
            from eatbench.quality import clip_scores

            payload["quality"] = clip_scores([image], [spec["prompt"]], spec["clip_model_path"], device=cfg.device)[0]
        if spec.get("check_psnr") and spec["world"] > 1:
            from eatbench.backends.gpu.patch_parallel import psnr

            with state.parallel.single_device():
                ref, _, _ = _generate(state, cfg, spec, steps=spec["steps"], decode=True)
            payload["psnr_vs_single_db"] = psnr(image, ref.images[0])
        payload["quality_s"] = time.perf_counter() - t_q
    return payload


def _save_image(image: Any, spec: dict) -> str:
    """Save the PNG with prompt/seed/steps as text chunks and a JSON sidecar."""
    from PIL import PngImagePlugin

    path = spec["image_path"]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    meta = {
        "task": spec["task_id"],
        "prompt": spec["prompt"],
        "seed": spec["seed"],
        "steps": spec["steps"],
        "resolution": spec["resolution"],
        "k": spec["world"],
        "model": spec["model"]["key"],
    }
    info = PngImagePlugin.PngInfo()
    for k, v in meta.items():
        info.add_text(k, str(v))
    image.save(path, pnginfo=info)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f)
    return path


if __name__ == "__main__":  # pragma: no cover - spawned via multiprocessing only
    sys.exit("run through eatbench.backends.gpu.backend")
