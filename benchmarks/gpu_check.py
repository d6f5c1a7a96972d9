"""Prepared GPU check for the gpu backend (one script, JSON lines out, ~5-8 min on one H100).

Usage (``benchmarks/gpu_session.sh OUT_DIR`` wraps it for a first run on a GPU node)::

    python benchmarks/gpu_check.py --out results/gpu_check.jsonl            # CUDA machine
    python benchmarks/gpu_check.py --out /tmp/gpu_check.jsonl --tiny        # CPU, seconds
    python benchmarks/gpu_check.py --out /tmp/env.jsonl --env-only          # imports only, seconds

The repository root is put on ``sys.path`` (no ``PYTHONPATH`` needed). The ``env`` record
comes first; when torch, diffusers or ``eatbench.backends.gpu`` cannot be imported it
says which and the script exits 2 at once. Every section runs under its own time limit
(``--section-timeout-s``, SIGALRM: an overrunning section is stopped, its workers are
killed, and the script goes on) and the backend's deadlines are small and settable
(``--task-timeout-s`` 120, ``--cold-timeout-s`` 180, ``--collective-timeout-s`` 120).
The exit status is 1 when any section failed or was stopped, else 0.

What it measures (SD-1.5 architecture, random weights, fp16, 512 px, CFG on; ``--tiny``:
the tiny pipeline, fp32, 64 px on cpu):

1. ``env``: devices and versions.
2. ``pipeline_eager``: the pure diffusers pipeline in this process: per-step seconds
   (each step bracketed by ``torch.cuda.synchronize``), warm-up excluded.
3. ``pipeline_cuda_graphs`` / ``pipeline_compile``: the same with the UNet call replayed
   from a CUDA graph / ``torch.compile``\\d (capture/compile time reported separately),
   plus the PSNR of the image against eager.
4. ``backend_*``: the same work through ``GpuBackend`` worker processes: start-up, the
   measured cold start (parts), warm tasks, and the backend overhead share
   ``(reported - pipeline) / reported``: ``reported`` runs from ``launch`` until the
   backend holds the result, ``pipeline`` is the worker's own pipeline call. Two servers:
   with >= 2 GPUs they get one each (NCCL), with one GPU they share it (gloo through
   host memory); a k=2 gang reports its PSNR against the single-device image.
5. ``backend_cuda_graphs``: k=1 through the backend with ``cuda_graphs=True``.

Every section is guarded: an exception is written as ``{"what": ..., "error": ...}`` and
the script goes on. ``--budget-s`` skips the remaining sections when time runs out.
Random weights throughout: cold starts here are *random-weight* cold starts (weights built
from a seed on the GPU), labelled so in the records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

T0 = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script: the eatbench package of this checkout
    sys.path.insert(0, str(REPO))

#: names of the sections that failed or were stopped (the exit status)
FAILED: list[str] = []


class SectionTimeout(Exception):
    """A section ran past ``--section-timeout-s``."""


@contextlib.contextmanager
def time_limit(seconds: float, name: str) -> Iterator[None]:
    """Raise ``SectionTimeout`` in this (main) thread after ``seconds`` (SIGALRM)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"section {name!r} ran past its {seconds:g} s limit and was stopped")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Out:
    """Appends one JSON object per line to ``path`` (flushed) and echoes it."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.f = open(path, "a")  # noqa: SIM115 - closed at exit

    def __call__(self, what: str, **fields: Any) -> None:
        rec = {"what": what, **fields, "t": round(time.monotonic() - T0, 2)}
        line = json.dumps(rec, default=str)
        self.f.write(line + "\n")
        self.f.flush()
        print(line, flush=True)


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {}
    return {
        "median_ms": round(1e3 * statistics.median(xs), 3),
        "min_ms": round(1e3 * min(xs), 3),
        "max_ms": round(1e3 * max(xs), 3),
        "n": len(xs),
    }


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed_generate(
    pipe: Any, parallel: Any, device: str, res: int, steps: int, seed: int = 0
) -> tuple[Any, list, float]:
    """One generation; returns (PIL image, per-step seconds, pipeline seconds)."""
    import torch

    marks: list[float] = []

    def cb(p: Any, i: int, t: Any, kw: dict) -> dict:
        _sync(device)
        marks.append(time.perf_counter())
        return kw

    parallel.first_call_t = None
    _sync(device)
    t0 = time.perf_counter()
    out = pipe(
        prompt="a photograph of an astronaut riding a horse",
        height=res,
        width=res,
        num_inference_steps=steps,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=cb,
    )
    _sync(device)
    total = time.perf_counter() - t0
    edges = [parallel.first_call_t, *marks]
    return out.images[0], [b - a for a, b in zip(edges, edges[1:], strict=False)], total


def section(out: Out, name: str, a: argparse.Namespace, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` unless the time budget is spent, stopped after ``a.section_timeout_s``
    (or what is left of the budget, if less); record a failure and go on."""
    left = a.budget_s - (time.monotonic() - T0)
    if left <= 0:
        out(name, skipped=f"time budget {a.budget_s} s spent")
        return None
    limit = min(a.section_timeout_s, left) if a.section_timeout_s > 0 else left
    t = time.monotonic()
    try:
        with time_limit(limit, name):
            result = fn(*args, **kwargs)
        out(f"{name}_section", ok=True, seconds=round(time.monotonic() - t, 2))
        return result
    except (Exception, SectionTimeout) as exc:  # noqa: BLE001 - a check script reports and continues
        FAILED.append(name)
        out(
            name,
            error=f"{type(exc).__name__}: {exc}",
            stopped=isinstance(exc, SectionTimeout),
            seconds=round(time.monotonic() - t, 2),
            traceback=traceback.format_exc(limit=6),
        )
        return None


def pipeline_checks(out: Out, a: argparse.Namespace, device: str, arch: str, dtype: str) -> None:
    from eatbench.backends.gpu.patch_parallel import PatchParallelUNet, psnr
    from eatbench.backends.gpu.pipelines import load_pipeline, quiet_libraries

    quiet_libraries()
    t = time.perf_counter()
    pipe = load_pipeline(model_path=None, random_init=arch, device=device, dtype=dtype)
    _sync(device)
    out(
        "pipeline_built",
        arch=arch,
        dtype=dtype,
        seconds=round(time.perf_counter() - t, 3),
        unet_params_m=round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 1),
    )
    par = PatchParallelUNet(pipe.unet, sync=lambda: _sync(device))
    timed_generate(pipe, par, device, a.res, 2)  # warm-up
    steps, times, images = [], [], []
    for _ in range(a.repeats):
        img, st, total = timed_generate(pipe, par, device, a.res, a.steps)
        steps += st
        times.append(total)
        images.append(img)
    eager_img = images[0]
    out(
        "pipeline_eager",
        res=a.res,
        steps=a.steps,
        batch=2,
        step=_stats(steps),
        pipeline_s=statistics.median(times),
        fixed_s=statistics.median(times) - statistics.median(steps) * a.steps,
    )
    par.remove()
    modes = []
    if device.startswith("cuda"):
        modes.append("cuda_graphs")
    if device.startswith("cuda") or a.compile_cpu:
        modes.append("compile")
    for mode in modes:
        if time.monotonic() - T0 > a.budget_s:
            out(f"pipeline_{mode}", skipped="time budget spent")
            continue
        par = None
        try:
            par = PatchParallelUNet(pipe.unet, inner=mode, sync=lambda: _sync(device))
            t = time.perf_counter()
            timed_generate(pipe, par, device, a.res, 2)  # capture / compile
            setup_s = time.perf_counter() - t
            steps, totals = [], []
            for _ in range(a.repeats):
                img, st, total = timed_generate(pipe, par, device, a.res, a.steps)
                steps += st
                totals.append(total)
            out(
                f"pipeline_{mode}",
                res=a.res,
                steps=a.steps,
                step=_stats(steps),
                setup_s=round(setup_s, 2),
                pipeline_s=statistics.median(totals),
                psnr_vs_eager_db=round(psnr(img, eager_img), 2),
            )
        except Exception as exc:  # noqa: BLE001
            FAILED.append(f"pipeline_{mode}")
            out(f"pipeline_{mode}", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
        finally:
            if par is not None:
                par.remove()
    del pipe
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def backend_checks(
    out: Out, a: argparse.Namespace, devices: list[str], arch: str, dtype: str, tag: str, n_servers: int, **params: Any
) -> None:
    from eatbench.backends.gpu.backend import GpuBackend
    from eatbench.core.tasks import Task
    from eatbench.engine.backend import BackendContext, Job
    from eatbench.engine.cluster import Cluster

    t = time.perf_counter()
    b = GpuBackend(
        BackendContext(Cluster.uniform(n_servers, "check"), None, None, 0, a.image_dir),
        random_init=arch,
        devices=devices,
        dtype=dtype,
        check_psnr=True,
        save_images=bool(a.image_dir),
        task_timeout_s=a.task_timeout_s,
        cold_timeout_s=a.cold_timeout_s,
        collective_timeout_s=a.collective_timeout_s,
        **params,
    )
    try:
        out(f"{tag}_started", seconds=round(time.perf_counter() - t, 2), describe=b.describe())
        ids = iter(range(10**6))

        def run(servers: tuple[int, ...], cold: bool) -> Any:
            i = next(ids)
            task = Task(
                i, b.now(), "a photograph of an astronaut riding a horse", a.res, len(servers), math.inf, 0, arch
            )
            b.launch(Job(task, servers, a.steps, cold, b.now(), 0.0))
            (r,) = b.advance(math.inf)
            if r.error:
                raise RuntimeError(r.error)
            return r

        gangs = [(0,)] + ([(0, 1)] if n_servers >= 2 and not a.no_gang else [])
        for servers in gangs:
            k = len(servers)
            b.dissolve(tuple(range(n_servers)))
            b.check_psnr = True  # only for the cold task: it costs a second generation
            cold = run(servers, True)
            b.check_psnr = False
            out(
                f"{tag}_cold_k{k}",
                cold_start_s=cold.cold_start_time,
                cold_start_kind=cold.extra.get("cold_start_kind"),
                parts={p: cold.extra.get(p) for p in ("pg_init_s", "load_s", "warmup_s", "compile_s")},
                weights_broadcast=cold.extra.get("weights_broadcast"),
                devices=cold.extra["devices"],
                psnr_vs_single_db=cold.extra.get("psnr_vs_single_db"),
                quality_s=cold.extra.get("quality_s"),
                memory_gib=cold.extra.get("memory_gib"),
            )
            warm = [run(servers, False) for _ in range(a.repeats)]
            wall = [r.extra["wall_s"] for r in warm]
            pipe_s = [r.extra["pipeline_s"] for r in warm]
            steps = [s for r in warm for s in r.extra["step_s"]]
            seen = [r.extra["reported_s"] for r in warm]
            share = [(w - p) / w for w, p in zip(seen, pipe_s, strict=True)]
            out(
                f"{tag}_warm_k{k}",
                res=a.res,
                steps=a.steps,
                step=_stats(steps),
                wall_s=statistics.median(wall),
                reported_s=statistics.median(seen),
                pipeline_s=statistics.median(pipe_s),
                overhead_share=round(statistics.median(share), 5),
                reloaded=any(r.extra["reloaded"] for r in warm),
                shape_warmup_s=max(r.extra.get("shape_warmup_s", 0.0) for r in warm),
                compiled_in_tasks=sum(r.extra.get("compiled_in_task", 0) for r in warm),
                unet_calls=warm[0].extra.get("unet_calls"),
                devices=warm[0].extra["devices"],
            )
        out(f"{tag}_memory", peak_memory_gib=b.describe()["peak_memory_gib"], restarts=b.describe()["worker_restarts"])
    finally:
        t = time.perf_counter()
        b.close()
        out(f"{tag}_closed", seconds=round(time.perf_counter() - t, 2))


def env_record(out: Out, a: argparse.Namespace) -> dict | None:
    """Versions, GPUs and the imports the check needs; ``None`` (and an ``env`` record with
    ``error``) when one is missing."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable, "repo": str(REPO)}
    missing = []
    for name in ("torch", "diffusers", "transformers", "torchmetrics", "huggingface_hub", "eatbench.backends.gpu"):
        try:
            mod = __import__(name, fromlist=["__name__"])
            info[name] = getattr(mod, "__version__", "ok")
        except Exception as exc:  # noqa: BLE001 - a missing or broken package is the finding
            missing.append(name)
            info[name] = f"{type(exc).__name__}: {exc}"
    if "torch" not in missing:
        import torch

        cuda = torch.cuda.is_available()
        n = torch.cuda.device_count() if cuda else 0
        info.update(
            cuda=cuda,
            n_gpu=n,
            names=[torch.cuda.get_device_name(i) for i in range(n)],
            memory_gib=[round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1) for i in range(n)],
            torch_cuda=torch.version.cuda,
        )
    if missing:
        out("env", error=f"cannot import {', '.join(missing)}", **info)
        return None
    out("env", **info)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSON-lines file to append to")
    p.add_argument("--tiny", action="store_true", help="tiny pipeline on cpu (seconds; checks the script)")
    p.add_argument("--env-only", action="store_true", help="only the environment check (imports, GPUs)")
    p.add_argument("--res", type=int, default=None, help="image side in px (512; tiny: 64)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps per measured task")
    p.add_argument("--repeats", type=int, default=3, help="measured tasks per setting")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip remaining sections after this many s")
    p.add_argument("--section-timeout-s", type=float, default=240.0, help="stop a section after this many s")
    p.add_argument("--task-timeout-s", type=float, default=120.0, help="backend: a task's deadline (s)")
    p.add_argument("--cold-timeout-s", type=float, default=180.0, help="backend: extra for a cold start (s)")
    p.add_argument("--collective-timeout-s", type=float, default=120.0, help="backend: NCCL/gloo timeout (s)")
    p.add_argument("--compile-cpu", action="store_true", help="also try torch.compile on cpu")
    p.add_argument("--no-gang", action="store_true", help="skip the k=2 gang")
    p.add_argument("--image-dir", default=None, help="save the backend's images here")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Out(a.out)
    env = env_record(out, a)
    if env is None:
        out("done", ok=False, failed=["env"], total_s=round(time.monotonic() - T0, 1))
        return 2
    if a.env_only:
        out("done", ok=True, failed=[], total_s=round(time.monotonic() - T0, 1))
        return 0
    import torch

    if not env["cuda"] and not a.tiny:  # SD-1.5 on the CPU would only burn the time budget
        out("done", ok=False, failed=["env"], error="no CUDA device visible; use --tiny for the CPU smoke run")
        return 2
    cuda = bool(env["cuda"]) and not a.tiny
    arch, dtype = ("sd15", "fp16") if not a.tiny else ("tiny", "fp32")
    a.res = a.res or (512 if not a.tiny else 64)
    if not cuda:
        torch.set_num_threads(1)
    n_gpu = env["n_gpu"] if cuda else 0
    out(
        "plan", arch=arch, dtype=dtype, res=a.res, steps=a.steps, repeats=a.repeats, cpu_threads=torch.get_num_threads()
    )
    device = "cuda:0" if cuda else "cpu"
    section(out, "pipeline", a, pipeline_checks, out, a, device, arch, dtype)
    devices = [f"cuda:{i}" for i in range(min(n_gpu, 2))] if cuda else ["cpu"]
    section(out, "backend", a, backend_checks, out, a, devices, arch, dtype, "backend", 2)
    if cuda:
        section(
            out,
            "backend_cuda_graphs",
            a,
            backend_checks,
            out,
            a,
            devices[:1],
            arch,
            dtype,
            "backend_cuda_graphs",
            1,
            cuda_graphs=True,
        )
    out("done", ok=not FAILED, failed=FAILED, total_s=round(time.monotonic() - T0, 1))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
