"""Latency profiler: measure what the sim backend's profile needs, through the real backend.

``measure_profile`` runs tasks through ``GpuBackend`` (the same worker processes, gangs
and timers as a real run) and writes a profile CSV with the columns the core's profile
loader reads::

    gpu_kind, model, resolution, k, step_s, fixed_s, cold_start_s, memory_gib

* ``step_s``: median seconds per denoising step of one task (with CFG the UNet batch
  is 2), over ``repeats`` warm tasks; each step is bracketed by
  ``torch.cuda.synchronize`` on CUDA (the worker's ``time_steps``), step 0 starting
  after a synchronisation at the first UNet call.
* ``fixed_s``: median per-task constant: pipeline call time minus ``steps`` median
  steps (text encoding, latent set-up, VAE decode on rank 0, and any UNet call a
  scheduler makes beyond one per step: PNDM, which the released SD-1.5 ships and the
  random ``sd15`` pipeline uses, calls the UNet ``steps + 1`` times).
* ``cold_start_s``: the gang's measured cold start (process group, weights to device,
  warm-up), from the first (cold) task of each (resolution, k); that task is excluded
  from the step statistics. With ``random_init`` the weights are built from a seed on
  the device, not read from disk: such cold starts are *random-weight* cold starts,
  marked in the ``weights`` column, in a ``#`` comment line and in the JSON.

* ``memory_gib``: the peak GPU memory a server of the gang needed (GiB): the highest
  ``peak_reserved_gib`` of the caching allocator (what a per-process memory cap limits)
  over the gang's ranks, from the cold start (weights, warm-up) through the warm tasks.
  Empty on cpu (a process's resident set is not a GPU figure): unknown, no constraint.
  The measuring backend is not capped (``Cluster.uniform``: the whole device).

Gangs (k > 1) whose members share a device (one GPU time-sliced by several workers,
gloo through host memory) do not measure a k-way figure: on CUDA they are refused unless
``allow_shared_devices``; every such row (CUDA or cpu, where the workers share the
cores) is marked ``shared_devices=1`` in the CSV and named in a ``#`` line.

Columns beyond ``PROFILE_COLUMNS`` and ``memory_gib`` (``batch`` when ``batches`` is not ``(1,)``,
``weights``, ``shared_devices``, ``unet_calls``) and ``#`` lines are ignored by the profile
loader. A JSON file beside the CSV (``<out_csv>.json``) keeps every sample, the cold
start parts (load, compile/warm-up) and the backend description.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

from eatbench.engine.profiles import MEMORY_COLUMN, PROFILE_COLUMNS, write_profile_csv


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def measure_profile(
    *,
    out_csv: str,
    model: str = "sd15",
    model_path: str | None = None,
    random_init: str | None = None,
    gpu_kind: str | None = None,
    resolutions: Sequence[int] = (512,),
    ks: Sequence[int] = (1,),
    batches: Sequence[int] = (1,),
    steps: int = 20,
    repeats: int = 3,
    devices: str | list[str] = "auto",
    dtype: str = "fp16",
    compile: bool = False,  # noqa: A002 - mirrors the backend parameter
    cuda_graphs: bool = False,
    guidance_scale: float = 7.5,
    prompt: str = "a photograph of an astronaut riding a horse",
    backend: Any = None,
    allow_shared_devices: bool = False,
) -> list[dict]:
    """Measure per-step latency, per-task constant and cold start; write ``out_csv``.

    :param out_csv: the profile CSV to write (columns ``PROFILE_COLUMNS``, ``memory_gib`` [+ ``batch``]).
    :param model: the model name written into the CSV (what tasks ask for).
    :param model_path: local pipeline directory or cached repo id; or ``random_init``
        (``sd15``/``sdxl``/``tiny``): latency is real with random weights.
    :param gpu_kind: GPU kind name for the CSV (as in the cluster config); default: the
        device name, slugified (``nvidia_h100_80gb_hbm3``) or ``cpu``.
    :param resolutions: image sides in pixels.
    :param ks: gang sizes (needs ``max(ks)`` servers; they share devices when fewer).
    :param batches: images per task.
    :param steps: denoising steps per measured task.
    :param repeats: warm tasks measured per (resolution, k, batch).
    :param devices, dtype, compile, cuda_graphs, guidance_scale: as for ``GpuBackend``.
    :param backend: an existing ``GpuBackend`` with at least ``max(ks)`` servers to use
        instead of starting one (its settings then apply; it is not closed).
    :param allow_shared_devices: measure k > 1 even when the gang's workers share a GPU
        (the row is then marked ``shared_devices=1``); otherwise such a k is refused.
    :raises ValueError: a k larger than the servers, or a shared-device gang not allowed.
    :returns: the rows written, each with extra keys ``step_s_p10``, ``step_s_p90``,
        ``n_steps`` (samples behind ``step_s``) and ``device``.
    """
    import math as _m

    from eatbench.backends.gpu.backend import GpuBackend
    from eatbench.core.tasks import Task
    from eatbench.engine.backend import BackendContext, Job
    from eatbench.engine.cluster import Cluster

    own = backend is None
    if own:
        from eatbench.backends.gpu.backend import resolve_devices

        devs = resolve_devices(devices)
        check_gangs({i: devs[i % len(devs)] for i in range(max(ks))}, ks, allow_shared_devices)

        backend = GpuBackend(
            BackendContext(cluster=Cluster.uniform(max(ks), gpu_kind or "unknown"), profile=None, quality=None),
            model_path=model_path,
            random_init=random_init,
            devices=devices,
            dtype=dtype,
            compile=compile,
            cuda_graphs=cuda_graphs,
            guidance_scale=guidance_scale,
            save_images=False,
        )
    desc = backend.describe()
    kind = gpu_kind or _slug(desc["device_names"][0] if desc["device_names"] else "unknown")
    rows: list[dict] = []
    samples: list[dict] = []
    task_id = 0

    def run(servers: tuple[int, ...], res: int, cold: bool) -> Any:
        nonlocal task_id
        task = Task(task_id, backend.now(), prompt, res, len(servers), _m.inf, task_id, model)
        task_id += 1
        backend.launch(Job(task, servers, steps, cold, backend.now(), 0.0))
        (result,) = backend.advance(_m.inf)
        if result.error:
            raise RuntimeError(f"profiling task failed (k={len(servers)}, {res} px): {result.error}")
        return result

    n_servers = len(backend.server_kinds)
    server_devices = desc["server_devices"]
    try:
        check_gangs(server_devices, ks, allow_shared_devices)
    except ValueError:
        if own:
            backend.close()
        raise
    try:
        for k in ks:
            servers = tuple(range(k))
            shared_devices = int(len({server_devices[s] for s in servers}) < k)
            for res in resolutions:
                for batch in batches:
                    backend.images_per_task = batch
                    backend.dissolve(tuple(range(n_servers)))
                    cold = run(servers, res, cold=True)
                    warm = [run(servers, res, cold=False) for _ in range(repeats)]
                    step_times = [s for r in warm for s in r.extra["step_s"]]
                    step_med = statistics.median(step_times)
                    # the per-task constant absorbs extra UNet calls (PNDM: steps + 1 calls)
                    fixed = [r.extra["pipeline_s"] - steps * step_med for r in warm]
                    q = statistics.quantiles(step_times, n=10) if len(step_times) >= 2 else [math.nan] * 9
                    row = {
                        "gpu_kind": kind,
                        "model": model,
                        "resolution": res,
                        "k": k,
                        "step_s": step_med,
                        "fixed_s": max(0.0, statistics.median(fixed)),
                        "cold_start_s": cold.cold_start_time,
                        MEMORY_COLUMN: launch_memory_gib([cold, *warm]),
                        "batch": batch,
                        "weights": cold.extra.get("weights"),
                        "shared_devices": shared_devices,
                        "unet_calls": warm[0].extra.get("unet_calls"),
                        "step_s_p10": q[0],
                        "step_s_p90": q[-1],
                        "n_steps": len(step_times),
                        "device": cold.extra["devices"][0],
                    }
                    rows.append(row)
                    samples.append(
                        {
                            **row,
                            "step_samples": step_times,
                            "fixed_samples": fixed,
                            "cold_parts": {
                                p: cold.extra.get(p)
                                for p in ("pg_init_s", "load_s", "warmup_s", "compile_s", "weights_broadcast")
                            },
                            "cold_start_kind": cold.extra.get("cold_start_kind"),
                            "compiled_in_warm_tasks": sum(r.extra.get("compiled_in_task", 0) for r in warm),
                            "memory_gib": cold.extra.get("memory_gib"),
                            "wall_s": [r.extra["wall_s"] for r in warm],
                            "pipeline_s": [r.extra["pipeline_s"] for r in warm],
                        }
                    )
    finally:
        backend.images_per_task = 1
        if own:
            backend.close()
    columns = [*PROFILE_COLUMNS, MEMORY_COLUMN] + (["batch"] if tuple(batches) != (1,) else [])
    columns += ["weights", "shared_devices", "unet_calls"]
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    write_profile_csv(out_csv, rows, columns, _notes(rows))
    with open(out_csv + ".json", "w") as f:
        json.dump(
            {"backend": desc, "steps": steps, "repeats": repeats, "notes": _notes(rows), "rows": samples}, f, indent=1
        )
    return rows


def launch_memory_gib(results: Sequence[Any]) -> float | None:
    """Peak GPU memory per server (GiB) of the launches ``results`` (``JobResult``s of one
    gang): the highest ``peak_reserved_gib`` over results and ranks (``extra["memory_gib"]``:
    server -> the worker's ``memory_stats``); ``None`` where no rank reports one (cpu)."""
    peaks = [
        m["peak_reserved_gib"]
        for r in results
        for m in (r.extra.get("memory_gib") or {}).values()
        if m.get("peak_reserved_gib") is not None
    ]
    return round(max(peaks), 3) if peaks else None


def check_gangs(server_devices: dict[int, str], ks: Sequence[int], allow_shared_devices: bool) -> None:
    """Refuse a k the servers cannot hold, or a k > 1 gang (servers ``0..k-1``) whose
    workers share a CUDA device, unless ``allow_shared_devices`` (cpu gangs, test runs
    only, are allowed and marked in the CSV).

    :param server_devices: server index -> device (``GpuBackend.describe()["server_devices"]``).
    :raises ValueError: naming the k and what is allowed.
    """
    for k in ks:
        if k > len(server_devices):
            raise ValueError(f"k={k} needs {k} servers; the backend has {len(server_devices)}")
        devs = [server_devices[s] for s in range(k)]
        shared_gpu = len(set(devs)) < k and any(d.startswith("cuda") for d in devs)
        if k > 1 and shared_gpu and not allow_shared_devices:
            raise ValueError(_shared_message(k, devs))


def _shared_message(k: int, devices: list[str]) -> str:
    return (
        f"profile k={k} is invalid on shared devices ({', '.join(devices)}): the gang's workers would "
        "time-slice one device and all-gather through host memory, which is not a k-way figure; "
        f"allowed: k <= the number of distinct devices ({len(set(devices))}), or allow_shared_devices=True "
        "to measure anyway (rows marked in the shared_devices column)"
    )


def _notes(rows: list[dict]) -> list[str]:
    """Comment lines for the CSV: what its figures are not."""
    notes = []
    if any(r.get("weights") == "random" for r in rows):
        notes.append(
            "random-weight cold starts: weights built from a seed on the device, not loaded from disk "
            "(cold_start_s is not a real model load)"
        )
    shared = sorted({r["k"] for r in rows if r.get("shared_devices")})
    if shared:
        notes.append(f"k={shared} measured with workers sharing a device (not k-way figures)")
    return notes
