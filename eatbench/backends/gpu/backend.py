"""The gpu backend: real diffusers pipelines in one worker process per server.

The engine decides (which task, which gang, cold or warm); this backend executes:

* ``launch(job)`` sends the task to the gang's workers (rank = position in
  ``job.servers``) and returns at once. Which gangs are warm, and which must be torn
  down, comes from the same residency model the engine uses (``cluster.Residency``, here
  keyed by the loaded weights); the backend itself keeps only the worker processes and
  each live process group's rank order. A cold job (``job.cold``, or a gang that is not
  warm here, e.g. after a worker restart) makes every member tear down its old group,
  join a fresh process group on a new port, load the weights and warm up; the measured
  seconds come back as ``JobResult.cold_start_time``. A warm job reuses the loaded
  pipelines and the live process group (``cold_start_time == 0.0``).
* ``advance(until)`` blocks on the wall clock until a job ends (every finished job is
  returned) or ``until`` passes (``[]``). Crashed workers, errors and timeouts fail the
  job with a reason, and the gang's workers are restarted (a worker that hit a plain
  out-of-memory error alone keeps its process, having freed its pipeline; any other
  error may be a sticky CUDA error, so that process is replaced).
* ``now()`` is wall-clock seconds since the workers were ready (the episode start).
* GPU memory: each server's GPU kind declares ``memory_gib`` (its budget). On CUDA every
  worker caps its process at that share of its device
  (``torch.cuda.set_per_process_memory_fraction``, see ``memory_caps``), so an edge card is
  emulated on a large GPU: an allocation beyond it is an out-of-memory failure of the task.
  A budget above the device's memory is refused before any worker starts. On cpu nothing
  is capped. ``describe()["memory_budget"]`` shows what was applied.

A job's ``finish`` is when its image (rank 0) and the other ranks' last step were done.
The PNG is written by this (parent) process after the worker reported, so saving never
keeps a server busy; CLIP scoring and the optional PSNR check do (they run in the worker
after ``finish`` and before it reports: ``extra["quality_s"]``; leave them off when
timings matter). Single machine only: process groups rendezvous on ``127.0.0.1``.

Configuration errors (unknown parameter, missing model, unavailable device, ...) are
found by ``GpuBackend.check_params`` before any worker starts; the config validation
calls it too, so ``eatbench run backend=gpu ...`` stops with a one-line message.
"""

from __future__ import annotations

import math
import os
import socket
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from eatbench.backends.gpu.pipelines import (
    DTYPES,
    RANDOM_INIT_CHOICES,
    ModelNotFoundError,
    resolve_model_path,
)
from eatbench.backends.gpu.worker import (
    Dissolve,
    Done,
    Failed,
    GroupInit,
    ModelSpec,
    Ready,
    RunTask,
    Started,
    Stop,
    WorkerConfig,
    save_image,
    worker_main,
)
from eatbench.engine.backend import Backend, BackendContext, Job, JobResult
from eatbench.engine.cluster import Residency


class BackendParamError(ValueError):
    """A ``backend.*`` setting is invalid; the message has the form
    ``backend.X=... is invalid; allowed: ...``."""


def _bad(name: str, value: Any, allowed: str, why: str = "") -> BackendParamError:
    why = f" ({why})" if why else ""
    return BackendParamError(f"backend.{name}={value!r} is invalid{why}; allowed: {allowed}")


@dataclass
class _Worker:
    """Parent-side handle of one worker process."""

    cfg: WorkerConfig
    proc: Any
    conn: Any
    info: dict = field(default_factory=dict)
    restarts: int = 0


@dataclass
class _Running:
    """A launched job waiting for its ranks."""

    job: Job
    job_id: int
    model_key: str
    group: tuple[int, ...]  # servers in rank order
    launched: float  # monotonic
    deadline: float  # monotonic
    pending: set[int]
    image_path: str | None = None
    payloads: dict[int, dict] = field(default_factory=dict)
    started: float | None = None  # monotonic, first rank that began


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve_devices(devices: str | list[str]) -> list[str]:
    """``"auto"`` (every CUDA device, else cpu), ``"cpu"``, ``"cuda"`` or a list like
    ``["cuda:0", "cuda:1"]``; validated against what torch sees.

    :raises BackendParamError: ``backend.devices=... is invalid; allowed: ...``.
    """
    import torch

    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    present = f"cuda:0..cuda:{n_cuda - 1}" if n_cuda else "no CUDA device is visible"
    allowed = f"auto, cpu, cuda or a list of cpu / cuda:<i> ({present})"
    given = devices
    if devices == "auto":
        return [f"cuda:{i}" for i in range(n_cuda)] or ["cpu"]
    if devices == "cuda":
        devices = [f"cuda:{i}" for i in range(n_cuda)]
    if isinstance(devices, str):
        devices = [devices]
    out = []
    for d in devices:
        d = str(d)
        if d == "cpu":
            out.append(d)
            continue
        head, _, idx_s = d.partition(":")
        if head != "cuda" or (idx_s and not idx_s.isdigit()):
            raise _bad("devices", given, allowed, f"{d!r} is not a device name")
        idx = int(idx_s) if idx_s else 0
        if idx >= n_cuda:
            raise _bad("devices", given, allowed, f"{d!r} is not present: torch sees {n_cuda} CUDA device(s)")
        out.append(f"cuda:{idx}")
    if not out:
        raise _bad("devices", given, allowed, "no CUDA device found")
    return out


#: a GPU kind may declare up to this share more memory than the device shows and get the
#: whole device: the driver keeps part of a card (an "80 GiB" H100 shows 79.2 GiB to torch)
NOMINAL_SLACK = 0.05


def device_memory_gib(device: str) -> float | None:
    """Total memory (GiB) of a CUDA ``device`` as torch reports it; ``None`` for cpu."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_properties(device).total_memory / 2**30


def memory_caps(
    server_kinds: dict[int, str],
    budgets: dict[str, float | None],
    server_devices: dict[int, str],
    device_gib: dict[str, float | None],
) -> dict[int, float | None]:
    """The share of its device each server's worker may allocate, so that a GPU kind's
    ``memory_gib`` (its budget, GiB) is emulated on a larger device.

    Each worker is capped on its own: a server's fraction is its kind's budget over its
    device's total, whether or not other servers share that device (time-slicing); where
    the budgets of the servers on one device add up to more than the device, a server may
    run out of memory below its budget (``memory_note`` says so).

    :param server_kinds: server -> GPU kind.
    :param budgets: GPU kind -> ``memory_gib`` (``None`` or ``inf``: no budget).
    :param server_devices: server -> device (``cpu``, ``cuda:i``).
    :param device_gib: device -> total memory in GiB (``None``: cpu, never capped).
    :returns: server -> fraction in (0, 1), or ``None`` where no cap applies (cpu, no
        budget, or a budget that covers the whole device).
    :raises BackendParamError: a budget above a device's memory (beyond ``NOMINAL_SLACK``).
    """
    out: dict[int, float | None] = {}
    for s, kind in sorted(server_kinds.items()):
        budget = budgets.get(kind)
        device = server_devices[s]
        total = device_gib.get(device)
        if budget is None or math.isinf(budget) or total is None:
            out[s] = None
            continue
        if budget > total * (1 + NOMINAL_SLACK):
            raise BackendParamError(
                f"cluster.gpu_kinds.{kind}.memory_gib={budget:g} is invalid; allowed: at most the device's "
                f"{total:.1f} GiB ({device}, which server {s} runs on; up to {NOMINAL_SLACK:.0%} more, a card's "
                "nominal size, counts as the whole device)"
            )
        out[s] = budget / total if budget < total else None
    return out


def _finite(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else float(x)


def memory_note(caps: dict[int, float | None], server_devices: dict[int, str]) -> str | None:
    """A warning where the capped servers sharing one device may use more than all of it."""
    per_device: dict[str, float] = {}
    for s, frac in caps.items():
        per_device[server_devices[s]] = per_device.get(server_devices[s], 0.0) + (1.0 if frac is None else frac)
    over = {d: f for d, f in sorted(per_device.items()) if f > 1.0 + 1e-9}
    if not over:
        return None
    parts = ", ".join(f"{d}: {f:.0%} of its memory" for d, f in over.items())
    return (
        f"servers sharing a device are budgeted more memory than it has ({parts}): a server may run out "
        "of memory below its budget"
    )


def _shutdown(workers: dict[int, _Worker], grace_s: float = 5.0) -> None:
    """Stop every worker: ask, wait ``grace_s``, then terminate, then kill."""
    for w in workers.values():
        try:
            w.conn.send(Stop())
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + grace_s
    for w in workers.values():
        w.proc.join(max(0.0, deadline - time.monotonic()))
    for w in workers.values():
        if w.proc.is_alive():
            w.proc.terminate()
            w.proc.join(2.0)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(2.0)
        w.conn.close()


class GpuBackend(Backend):
    """Runs each task on real diffusers pipelines, one worker process per server.

    :param context: cluster (its servers, one worker each; on CUDA each worker is capped at
        its GPU kind's ``memory_gib``, see the module docstring), seed, out_dir.
    :param model_path: local diffusers pipeline directory or a repo id in the local HF
        cache; or a dict ``{task.model: path}``. Never downloaded.
    :param random_init: ``sd15``, ``sdxl`` or ``tiny``: random weights of that
        architecture instead of ``model_path`` (quality is then ``None``).
    :param devices: ``auto``, ``cpu``, ``cuda`` or a list of devices; server ``i`` runs
        on ``devices[i % len(devices)]`` (servers share devices when there are fewer).
    :param dtype: ``fp32``, ``fp16`` or ``bf16``.
    :param compile: ``torch.compile`` the local UNet call (compiled during the cold
        start's warm-up).
    :param cuda_graphs: replay the local UNet call from CUDA graphs (CUDA only).
    :param split_cfg: give the CFG halves to different ranks when k is even.
    :param patch_halo: latent rows of context around each row patch (``null``: 1/4 of
        the latent height).
    :param task_timeout_s: a job running longer than this (plus ``cold_timeout_s`` when
        cold) fails and its gang is restarted.
    :param cold_timeout_s: extra allowance in seconds for a cold start.
    :param start_timeout_s: how long to wait for the workers to start.
    :param collective_timeout_s: timeout of the process group's collectives and
        rendezvous (NCCL / gloo) in seconds; a gang stuck longer fails inside the worker.
    :param warmup_resolutions: with ``compile``/``cuda_graphs``, also warm up these image
        sides (px) during every cold start (``null``: only the task's); a warm task at a
        shape not warmed yet warms it up first and reports that as its cold start.
    :param compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` or
        ``eager`` trace without code generation, for CPU tests).
    :param guidance_scale: classifier-free guidance scale (> 1 enables CFG).
    :param save_images: save each image (with prompt and seed) under ``out_dir/images``.
    :param clip_model_path: local CLIP model directory for the per-task CLIP score;
        ``None``: quality is ``None``.
    :param check_psnr: for k > 1, rank 0 also renders the single-device image and reports
        ``extra["psnr_vs_single_db"]`` (costs a second generation, after ``finish``).
    :param cpu_threads: torch threads per worker (``None``: 1 on cpu, else 2).
    :param time_steps: record per-step times (synchronises the device each step).
    """

    name = "gpu"

    def __init__(
        self,
        context: BackendContext,
        model_path: str | dict[str, str] | None = None,
        random_init: str | None = None,
        devices: str | list[str] = "auto",
        dtype: str = "fp16",
        compile: bool = False,  # noqa: A002 - config key name
        cuda_graphs: bool = False,
        split_cfg: bool = True,
        patch_halo: int | None = None,
        task_timeout_s: float = 600.0,
        cold_timeout_s: float = 900.0,
        start_timeout_s: float = 300.0,
        collective_timeout_s: float = 600.0,
        warmup_resolutions: list[int] | None = None,
        compile_backend: str = "inductor",
        guidance_scale: float = 7.5,
        save_images: bool = True,
        clip_model_path: str | None = None,
        check_psnr: bool = False,
        cpu_threads: int | None = None,
        time_steps: bool = True,
    ) -> None:
        self.context = context
        params = {k: v for k, v in locals().items() if k not in ("self", "context")}
        self.models, self.devices = self._check(params)
        if dtype == "fp16" and self.devices == ["cpu"]:
            dtype = "fp32"  # fp16 on CPU is slow or unsupported; say so in describe()
            self._dtype_note = "fp16 requested on cpu: using fp32"
        else:
            self._dtype_note = None
        self.dtype = dtype
        self.inner = "compile" if compile else "cuda_graphs" if cuda_graphs else "eager"
        self.task_timeout_s = float(task_timeout_s)
        self.cold_timeout_s = float(cold_timeout_s)
        self.warmup_resolutions = [int(r) for r in warmup_resolutions or []]
        #: test hook: a fault for the workers to raise (see ``worker._injected``); None normally
        self.inject: dict | None = None
        #: per server: the highest memory peaks its worker reported (GiB)
        self.peak_memory: dict[int, dict[str, float]] = {}
        self.guidance_scale = float(guidance_scale)
        self.save_images = save_images
        self.clip_model_path = clip_model_path
        self.check_psnr = check_psnr
        #: images generated per task (the profiler's batch knob; only the first is saved)
        self.images_per_task = 1
        servers = list(context.cluster.servers)
        if not servers:
            raise ValueError("the cluster has no servers")
        self.server_kinds = {int(s.index): str(s.gpu_kind) for s in servers}
        #: which gangs hold a loaded pipeline, for which weights (keyed by ``ModelSpec.key``)
        self.residency = Residency(max(self.server_kinds) + 1)
        #: rank order of each gang's process group (members -> servers by rank), set at its cold start
        self._ranks: dict[frozenset[int], tuple[int, ...]] = {}
        server_devices = {
            idx: self.devices[pos % len(self.devices)] for pos, idx in enumerate(sorted(self.server_kinds))
        }
        gpu_kinds = getattr(context.cluster, "gpu_kinds", {}) or {}
        budgets = {name: getattr(spec, "memory_gib", None) for name, spec in gpu_kinds.items()}
        #: server -> GPU memory budget in GiB (``cluster.gpu_kinds.<kind>.memory_gib``), its device's
        #: memory and the fraction its worker is capped at (``None``: no cap; never on cpu)
        self.memory_budget = {
            s: {"budget_gib": _finite(budgets.get(kind)), "device_gib": None, "fraction": None}
            for s, kind in self.server_kinds.items()
        }
        device_gib = {d: device_memory_gib(d) for d in sorted(set(server_devices.values()))}
        caps = memory_caps(self.server_kinds, budgets, server_devices, device_gib)  # refuses before any worker
        for s, entry in self.memory_budget.items():
            entry["device_gib"] = device_gib[server_devices[s]]
            entry["fraction"] = caps[s]
        self._memory_note = memory_note(caps, server_devices) if any(f is not None for f in caps.values()) else None
        if all(d is None for d in device_gib.values()):
            self._memory_note = "cpu: GPU memory budgets are not applied"
        self._configs = {
            idx: WorkerConfig(
                server=idx,
                device=server_devices[idx],
                memory_fraction=caps[idx],
                dtype=dtype,
                inner=self.inner,
                split_cfg=split_cfg,
                halo=patch_halo,
                cpu_threads=cpu_threads or (1 if self.devices == ["cpu"] else 2),
                time_steps=time_steps,
                pg_timeout_s=float(collective_timeout_s),
                compile_backend=compile_backend,
            )
            for pos, idx in enumerate(sorted(self.server_kinds))
        }
        import torch.multiprocessing as mp

        self._mp = mp.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._jobs: dict[int, _Running] = {}
        self._busy: dict[int, int] = {}  # server -> job_id
        self._done: list[JobResult] = []
        self._next_id = 0
        self._closed = False
        self.events: list[dict] = []  # restarts, deaths: for the record
        self._t0 = time.monotonic()  # reset once the workers are ready
        self._starting = True
        for idx, cfg in self._configs.items():
            self._workers[idx] = self._spawn(cfg)
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        self._wait_ready(start_timeout_s)
        self._starting = False
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ setup
    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Check the ``backend.*`` settings without starting anything (the config validation calls
        this): unknown names, the model, devices, dtype, timeouts, ...

        :raises BackendParamError: ``backend.X=... is invalid; allowed: ...``.
        """
        import inspect

        allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "context")]
        for name in params:
            if name not in allowed:
                raise _bad(name, params[name], ", ".join(allowed), "unknown parameter")
        defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items() if n in allowed}
        cls._check({**defaults, **params})

    @staticmethod
    def _check(p: dict[str, Any]) -> tuple[dict[str, dict], list[str]]:
        """Validate every parameter value; returns the models and the devices."""
        if p["dtype"] not in DTYPES:
            raise _bad("dtype", p["dtype"], ", ".join(DTYPES))
        if p["compile"] and p["cuda_graphs"]:
            raise _bad("cuda_graphs", p["cuda_graphs"], "false when backend.compile=true (choose one)")
        for name in ("task_timeout_s", "start_timeout_s", "collective_timeout_s"):
            v = p[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise _bad(name, v, "seconds > 0")
        v = p["cold_timeout_s"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise _bad("cold_timeout_s", v, "seconds >= 0")
        g = p["guidance_scale"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < math.inf:
            raise _bad("guidance_scale", g, "a number >= 0 (> 1 enables classifier-free guidance)")
        w = p["warmup_resolutions"]
        if w is not None and (
            not isinstance(w, (list, tuple))
            or any(isinstance(r, bool) or not isinstance(r, int) for r in w)
            or any(r <= 0 or r % 8 for r in w)
        ):
            raise _bad("warmup_resolutions", w, "null or a list of pixel sizes > 0 divisible by 8")
        if p["patch_halo"] is not None and (not isinstance(p["patch_halo"], int) or p["patch_halo"] < 0):
            raise _bad("patch_halo", p["patch_halo"], "null or an integer >= 0 (latent rows)")
        if p["cpu_threads"] is not None and (not isinstance(p["cpu_threads"], int) or p["cpu_threads"] < 1):
            raise _bad("cpu_threads", p["cpu_threads"], "null or an integer >= 1")
        if p["compile_backend"] not in ("inductor", "aot_eager", "eager", "cudagraphs"):
            raise _bad("compile_backend", p["compile_backend"], "inductor, aot_eager, eager, cudagraphs")
        clip = p["clip_model_path"]
        if clip is not None and not os.path.isdir(os.path.expanduser(str(clip))):
            raise _bad("clip_model_path", clip, "null or a local CLIP model directory", "it is not a local directory")
        models = GpuBackend._resolve_models(p["model_path"], p["random_init"])
        devices = resolve_devices(p["devices"])
        if p["cuda_graphs"] and not all(d.startswith("cuda") for d in devices):
            raise _bad("cuda_graphs", True, f"false on these devices ({', '.join(devices)}): graphs need CUDA")
        return models, devices

    @staticmethod
    def _resolve_models(model_path: str | dict[str, str] | None, random_init: str | None) -> dict[str, dict]:
        """Model key -> {"model_path", "random_init", "key"}; ``"*"`` matches any task."""
        if random_init is not None:
            if random_init not in RANDOM_INIT_CHOICES:
                raise _bad("random_init", random_init, f"{', '.join(RANDOM_INIT_CHOICES)} or null")
            if model_path is not None:
                raise _bad("random_init", random_init, "null when backend.model_path is given (give one)")
            return {"*": {"model_path": None, "random_init": random_init, "key": f"random:{random_init}"}}
        if model_path is None:
            raise _bad(
                "model_path",
                None,
                "a local pipeline directory or a cached repo id (required), or set backend.random_init=sd15|sdxl|tiny",
            )
        paths = model_path if isinstance(model_path, dict) else {"*": model_path}
        out = {}
        for name, path in paths.items():
            field_name = "model_path" if not isinstance(model_path, dict) else f"model_path.{name}"
            try:
                out[name] = {
                    "model_path": resolve_model_path(str(path), f"backend.{field_name}"),
                    "random_init": None,
                    "key": str(path),
                }
            except ModelNotFoundError as err:
                raise BackendParamError(str(err)) from None
        return out

    def _spawn(self, cfg: WorkerConfig) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        proc = self._mp.Process(
            target=worker_main,
            args=(cfg, child, os.getpid()),
            name=f"eatbench-gpu-server{cfg.server}",
            daemon=True,
        )
        proc.start()
        child.close()
        return _Worker(cfg=cfg, proc=proc, conn=parent)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(not w.info for w in self._workers.values()):
            for idx, w in self._workers.items():
                if not w.info and w.proc.exitcode is not None:
                    self.close()
                    raise RuntimeError(
                        f"gpu worker for server {idx} exited during start-up (exit code {w.proc.exitcode})"
                    )
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"gpu workers not ready after {timeout_s} s")
            self._poll(0.5)

    # ------------------------------------------------------------- interface
    def now(self) -> float:
        return time.monotonic() - self._t0

    def running(self) -> int:
        return len(self._jobs) + len(self._done)  # launched and not yet reported

    def worker_pid(self, server: int) -> int:
        """Process id of the worker of ``server`` (diagnostics, tests)."""
        return int(self._workers[server].proc.pid)

    def launch(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("launch() after close()")
        busy = [s for s in job.servers if s in self._busy]
        if busy:
            raise RuntimeError(f"servers {busy} are still running job {self._busy[busy[0]]}")
        task = job.task
        model = self.models.get(task.model, self.models.get("*"))
        if model is None:
            self._done.append(
                JobResult(
                    job,
                    self.now(),
                    None,
                    error=f"no model for task.model={task.model!r}; known: {sorted(self.models)}",
                )
            )
            return
        spec_model = ModelSpec(model["key"], model["model_path"], model["random_init"])
        init = None
        if not job.cold and self.residency.is_warm(job.servers, spec_model.key):
            group = self._ranks[frozenset(job.servers)]
        else:  # cold: a new process group, ranks in job.servers order
            group = tuple(job.servers)
            devs = [self._configs[s].device for s in group]
            nccl = all(d.startswith("cuda") for d in devs) and len(set(devs)) == len(devs)
            init = GroupInit(_free_port(), "nccl" if nccl else "gloo")
            torn = self.residency.claim(group, spec_model.key)  # warm already (job.cold): nothing torn
            self._ranks[frozenset(group)] = group
            self._tell_dissolve(torn - set(group))  # their gang-mates leave: those groups are gone
        job_id = self._next_id
        self._next_id += 1
        image_path = None
        if self.save_images and self.context.out_dir:
            image_path = os.path.join(self.context.out_dir, "images", f"task{task.id:05d}_seed{task.seed}.png")
        t = time.monotonic()
        timeout = self.task_timeout_s + (self.cold_timeout_s if init else 0.0)
        run = _Running(job, job_id, spec_model.key, group, t, t + timeout, set(range(len(group))), image_path)
        self._jobs[job_id] = run
        for s in group:
            self._busy[s] = job_id
        for rank, s in enumerate(group):
            spec = RunTask(
                job_id=job_id,
                task_id=task.id,
                rank=rank,
                world=len(group),
                init=init,
                model=spec_model,
                prompt=task.prompt,
                seed=task.seed,
                resolution=task.resolution,
                steps=job.steps,
                batch=self.images_per_task,
                guidance_scale=self.guidance_scale,
                image_path=image_path if rank == 0 else None,
                clip_model_path=self.clip_model_path,
                check_psnr=self.check_psnr,
                warm_shapes=tuple((r, self.images_per_task) for r in self.warmup_resolutions),
                inject=self.inject,
            )
            try:
                self._workers[s].conn.send(spec)
            except (OSError, ValueError) as exc:
                self._fail(run, f"could not reach the worker of server {s}: {exc}")
                return

    def advance(self, until: float) -> list[JobResult]:
        while True:
            self._poll(0.0)
            if self._done:
                out, self._done = sorted(self._done, key=lambda r: r.finish), []
                return out
            now = self.now()
            if now >= until:
                return []
            if math.isinf(until) and not self._jobs:
                raise RuntimeError("advance(inf) with no running job would never return")
            wait_s = min(until - now, 1.0)
            if self._jobs:
                nearest = min(r.deadline for r in self._jobs.values()) - time.monotonic()
                wait_s = min(wait_s, max(nearest, 0.0) + 0.01)
            self._poll(max(wait_s, 0.0))

    def dissolve(self, servers: tuple[int, ...]) -> None:
        """Tear down the warm groups holding any of ``servers`` (every member's pipeline
        and process group)."""
        self._tell_dissolve(self.residency.dissolve(servers))

    def close(self) -> list[JobResult]:
        if not self._closed:
            self._closed = True
            self._finalizer.detach()
            _shutdown(self._workers)
            self._jobs.clear()
            self._busy.clear()
        return []

    def describe(self) -> dict:
        mapping = {s: c.device for s, c in self._configs.items()}
        infos = [w.info for w in self._workers.values() if w.info]
        first = infos[0] if infos else {}
        return {
            "backend": self.name,
            "devices": self.devices,
            "server_devices": mapping,
            "shared_devices": len(set(mapping.values())) < len(mapping),
            "device_names": sorted({i.get("device_name", "?") for i in infos}),
            "gpu_kinds": self.server_kinds,
            "dtype": self.dtype,
            "dtype_note": self._dtype_note,
            "unet_call": self.inner,
            "parallelism": "cfg-split + row patches with halo, all-gather per step",
            "split_cfg": next(iter(self._configs.values())).split_cfg,
            "patch_halo": next(iter(self._configs.values())).halo,
            "models": {k: v["key"] for k, v in self.models.items()},
            "random_init": any(v["random_init"] for v in self.models.values()),
            # random weights are built from a seed on the device: such a cold start is not a
            # load from disk, and its images mean nothing
            "cold_start_kind": ("random-weight" if any(v["random_init"] for v in self.models.values()) else "load"),
            "quality": "clip" if self.clip_model_path else None,
            "torch": first.get("torch"),
            "diffusers": first.get("diffusers"),
            "transformers": first.get("transformers"),
            "cpu_threads_per_worker": first.get("cpu_threads"),
            "worker_restarts": sum(w.restarts for w in self._workers.values()),
            "timeouts_s": {
                "task": self.task_timeout_s,
                "cold": self.cold_timeout_s,
                "collective": next(iter(self._configs.values())).pg_timeout_s,
            },
            "warmup_resolutions": self.warmup_resolutions,
            "peak_memory_gib": {s: dict(m) for s, m in sorted(self.peak_memory.items())},
            "memory_budget": {s: dict(m) for s, m in sorted(self.memory_budget.items())},
            "memory_note": self._memory_note,
        }

    # -------------------------------------------------------------- internals
    def _tell_dissolve(self, servers: set[int]) -> None:
        """Ask the workers of ``servers`` to tear down their pipeline and process group."""
        for s in sorted(servers):
            try:
                self._workers[s].conn.send(Dissolve())
            except (OSError, ValueError):
                pass

    def _poll(self, timeout: float) -> None:
        """Handle worker messages and deaths (waiting up to ``timeout`` s), then timeouts."""
        by_obj: dict[Any, tuple[int, _Worker]] = {}
        for idx, w in self._workers.items():
            by_obj[w.conn] = (idx, w)
            by_obj[w.proc.sentinel] = (idx, w)
        ready = wait(list(by_obj), timeout) if by_obj else []
        dead: set[int] = set()
        for obj in ready:
            idx, w = by_obj[obj]
            if self._workers[idx] is not w:  # replaced meanwhile (restarted after an error)
                continue
            if obj is w.conn:
                try:
                    while w.conn.poll():
                        self._on_message(idx, w.conn.recv())
                except (EOFError, OSError):
                    dead.add(idx)
            else:
                dead.add(idx)
        for idx in dead:
            w = self._workers[idx]
            w.proc.join(1.0)
            code = w.proc.exitcode
            job_id = self._busy.get(idx)
            reason = f"worker of server {idx} (pid {w.proc.pid}) died, exit code {code}"
            self.events.append({"t": self.now(), "event": "worker_died", "server": idx, "exitcode": code})
            if job_id is not None and job_id in self._jobs:
                self._fail(self._jobs[job_id], reason + " during the task")
            elif not self._closed and not self._starting:
                self._restart([idx])
        t = time.monotonic()
        for run in list(self._jobs.values()):
            if t > run.deadline:
                self._fail(run, f"timed out after {t - run.launched:.1f} s")

    def _on_message(self, idx: int, msg: Ready | Started | Done | Failed) -> None:
        if isinstance(msg, Ready):
            self._workers[idx].info = msg.info
            return
        run = self._jobs.get(msg.job_id)
        if run is None:  # a job already failed or closed
            return
        if isinstance(msg, Started):
            run.started = msg.t if run.started is None else min(run.started, msg.t)
        elif isinstance(msg, Done):
            run.payloads[msg.rank] = msg.payload
            run.pending.discard(msg.rank)
            if not run.pending:
                self._finish(run)
        elif isinstance(msg, Failed):
            server = run.group[msg.rank]
            restart = msg.restart
            self.events.append({"t": self.now(), "event": "task_error", "server": server, "restart": restart})
            self._fail(run, f"server {server} (rank {msg.rank}): {msg.reason}", clean=set() if restart else {server})
        else:  # pragma: no cover - a protocol error is a bug
            raise TypeError(f"unknown message from the worker of server {idx}: {msg!r}")

    def _release(self, run: _Running) -> None:
        self._jobs.pop(run.job_id, None)
        for s in run.job.servers:
            if self._busy.get(s) == run.job_id:
                del self._busy[s]

    def _finish(self, run: _Running) -> None:
        self._release(run)
        p0 = run.payloads[0]
        t_end = max(p["t_end"] for p in run.payloads.values())
        finish = t_end - self._t0
        loaded = [p for p in run.payloads.values() if p["loaded"]]
        cold_s = max((p["cold_start_s"] for p in run.payloads.values()), default=0.0)
        wall = t_end - run.launched
        image_path = None
        if run.image_path and p0.get("image") is not None:
            image_path = save_image(p0["image"], run.image_path, self._image_meta(run))
        memory = {s: run.payloads[rank].get("memory", {}) for rank, s in enumerate(run.group)}
        for s, m in memory.items():
            peak = self.peak_memory.setdefault(s, {})
            for key, value in m.items():
                peak[key] = max(peak.get(key, 0.0), value)
        extra: dict[str, Any] = {
            "image_path": image_path,
            "reloaded": bool(loaded),
            "weights": p0.get("weights"),
            "shape_warmup_s": max(p.get("shape_warmup_s", 0.0) for p in run.payloads.values()),
            "compile_s": max(p.get("compile_s", 0.0) for p in run.payloads.values()),
            "unet_calls": p0.get("unet_calls"),
            "compiled_in_task": max(p.get("compiled_in_task", 0) for p in run.payloads.values()),
            "memory_gib": memory,
            "wall_s": wall,
            "reported_s": time.monotonic() - run.launched,  # until the backend saw it
            "pipeline_s": p0["pipeline_s"],
            "overhead_s": wall - cold_s - max(p["pipeline_s"] for p in run.payloads.values()),
            "queue_s": (run.started - run.launched) if run.started is not None else None,
            "step_s": p0["step_s"],
            "quality_s": p0.get("quality_s", 0.0),
            "devices": [self._configs[s].device for s in run.group],
            "ranks": list(run.group),
        }
        if loaded:
            for part in ("pg_init_s", "load_s", "warmup_s"):
                extra[part] = max(p.get(part, 0.0) for p in loaded)
            extra["weights_broadcast"] = any(p.get("weights_broadcast") for p in loaded)
            extra["warmup_shapes"] = loaded[0].get("warmup_shapes")
            # a random-weight cold start builds weights from a seed: no disk or host transfer
            extra["cold_start_kind"] = "random-weight" if p0.get("weights") == "random" else "load"
        if "psnr_vs_single_db" in p0:
            extra["psnr_vs_single_db"] = p0["psnr_vs_single_db"]
        self._done.append(JobResult(run.job, finish, p0.get("quality"), None, cold_s, extra))

    def _image_meta(self, run: _Running) -> dict:
        task = run.job.task
        return {
            "task": task.id,
            "prompt": task.prompt,
            "seed": task.seed,
            "steps": run.job.steps,
            "resolution": task.resolution,
            "k": len(run.group),
            "model": run.model_key,
        }

    def _fail(self, run: _Running, reason: str, clean: set[int] | None = None) -> None:
        """Fail ``run`` and restart its gang's workers (but ``clean`` ones, which tore
        down their own state), so that the servers are usable again."""
        self._release(run)
        self._done.append(
            JobResult(run.job, self.now(), None, error=reason, extra={"failed_servers": list(run.job.servers)})
        )
        done_ranks = {run.group[r] for r in run.payloads}
        self.residency.dissolve(run.job.servers)  # their state is unknown: cold next time
        self._restart([s for s in run.job.servers if s not in (clean or set()) | done_ranks])

    def _restart(self, servers: list[int]) -> None:
        """Kill and respawn workers (not waiting for them to be ready: commands queue); their
        warm groups are gone, so the other members of those groups tear down too."""
        self._tell_dissolve(self.residency.dissolve(servers) - set(servers))
        for s in servers:
            w = self._workers[s]
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join(5.0)
            w.conn.close()
            new = self._spawn(w.cfg)
            new.restarts = w.restarts + 1
            self._workers[s] = new
            self.events.append({"t": self.now(), "event": "worker_restarted", "server": s})
