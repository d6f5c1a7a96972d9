"""The gpu backend: real diffusers pipelines in one worker process per server.

The engine decides (which task, which gang, cold or warm); this backend executes:

* ``launch(job)`` sends the task to the gang's workers (rank = position in
  ``job.servers``) and returns at once. A cold job (``job.cold``, or a gang that is not
  warm here, e.g. after a worker restart) makes every member tear down its old group,
  join a fresh process group on a new port, load the weights and warm up; the measured
  seconds come back as ``JobResult.cold_start_time``. A warm job reuses the loaded
  pipelines and the live process group (``cold_start_time == 0.0``).
* ``advance(until)`` blocks on the wall clock until a job ends (every finished job is
  returned) or ``until`` passes (``[]``). Crashed workers, errors (OOM included) and
  timeouts fail the job with a reason, and the gang's workers are restarted.
* ``now()`` is wall-clock seconds since the workers were ready (the episode start).

A job's ``finish`` is when its image (rank 0) and the other ranks' last step were done;
CLIP scoring and the optional PSNR check happen after it (``extra["quality_s"]``).
Single machine only: process groups rendezvous on ``127.0.0.1``.
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

from eatbench.backends.base import Backend, BackendContext, Job, JobResult
from eatbench.backends.gpu.pipelines import (
    DTYPES,
    RANDOM_INIT_CHOICES,
    ModelNotFoundError,
    resolve_model_path,
)
from eatbench.backends.gpu.worker import WorkerConfig, worker_main


@dataclass
class _Worker:
    """Parent-side handle of one worker process."""

    cfg: WorkerConfig
    proc: Any
    conn: Any
    group: tuple[int, ...] | None = None  # warm gang this worker belongs to
    model_key: str | None = None
    info: dict = field(default_factory=dict)
    restarts: int = 0


@dataclass
class _Running:
    """A launched job waiting for its ranks."""

    job: Job
    job_id: int
    group: tuple[int, ...]  # servers in rank order
    launched: float  # monotonic
    deadline: float  # monotonic
    pending: set[int]
    payloads: dict[int, dict] = field(default_factory=dict)
    started: float | None = None  # monotonic, first rank that began


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve_devices(devices: str | list[str]) -> list[str]:
    """``"auto"`` (every CUDA device, else cpu), ``"cpu"``, ``"cuda"`` or a list like
    ``["cuda:0", "cuda:1"]``; validated against what torch sees."""
    import torch

    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
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
        if not d.startswith("cuda"):
            raise ValueError(f"devices entry {d!r} is invalid; allowed: auto, cpu, cuda, cuda:<i>")
        idx = int(d.split(":")[1]) if ":" in d else 0
        if idx >= n_cuda:
            raise ValueError(f"devices entry {d!r} is not available: torch sees {n_cuda} CUDA device(s)")
        out.append(f"cuda:{idx}")
    if not out:
        raise ValueError("devices is empty (no CUDA device found); use devices=cpu")
    return out


def _shutdown(workers: dict[int, _Worker], grace_s: float = 5.0) -> None:
    """Stop every worker: ask, wait ``grace_s``, then terminate, then kill."""
    for w in workers.values():
        try:
            w.conn.send(("stop",))
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

    :param context: cluster (``.servers`` with ``.index``/``.gpu_kind``), seed, out_dir.
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
        guidance_scale: float = 7.5,
        save_images: bool = True,
        clip_model_path: str | None = None,
        check_psnr: bool = False,
        cpu_threads: int | None = None,
        time_steps: bool = True,
    ) -> None:
        self.context = context
        self.models = self._resolve_models(model_path, random_init)
        if dtype not in DTYPES:
            raise ValueError(f"backend.params.dtype={dtype!r} is invalid; allowed: {', '.join(DTYPES)}")
        if compile and cuda_graphs:
            raise ValueError("backend.params: compile and cuda_graphs are exclusive; choose one")
        if clip_model_path is not None and not os.path.isdir(clip_model_path):
            raise ModelNotFoundError(f"backend.params.clip_model_path={clip_model_path!r} is not a local directory")
        self.devices = resolve_devices(devices)
        if cuda_graphs and not all(d.startswith("cuda") for d in self.devices):
            raise ValueError("backend.params.cuda_graphs needs CUDA devices")
        if dtype == "fp16" and self.devices == ["cpu"]:
            dtype = "fp32"  # fp16 on CPU is slow or unsupported; say so in describe()
            self._dtype_note = "fp16 requested on cpu: using fp32"
        else:
            self._dtype_note = None
        self.dtype = dtype
        self.inner = "compile" if compile else "cuda_graphs" if cuda_graphs else "eager"
        self.task_timeout_s = float(task_timeout_s)
        self.cold_timeout_s = float(cold_timeout_s)
        self.guidance_scale = float(guidance_scale)
        self.save_images = save_images
        self.clip_model_path = clip_model_path
        self.check_psnr = check_psnr
        #: images generated per task (the profiler's batch knob; only the first is saved)
        self.images_per_task = 1
        servers = list(getattr(context.cluster, "servers", []))
        if not servers:
            raise ValueError("the cluster has no servers")
        self.server_kinds = {int(s.index): str(s.gpu_kind) for s in servers}
        self._configs = {
            idx: WorkerConfig(
                server=idx,
                device=self.devices[pos % len(self.devices)],
                dtype=dtype,
                inner=self.inner,
                split_cfg=split_cfg,
                halo=patch_halo,
                cpu_threads=cpu_threads or (1 if self.devices == ["cpu"] else 2),
                time_steps=time_steps,
                pg_timeout_s=min(self.task_timeout_s, 1800.0),
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
    @staticmethod
    def _resolve_models(model_path: str | dict[str, str] | None, random_init: str | None) -> dict[str, dict]:
        """Model key -> {"model_path", "random_init", "key"}; ``"*"`` matches any task."""
        if random_init is not None:
            if random_init not in RANDOM_INIT_CHOICES:
                raise ValueError(
                    f"backend.params.random_init={random_init!r} is invalid; allowed: "
                    f"{', '.join(RANDOM_INIT_CHOICES)} or null"
                )
            if model_path is not None:
                raise ValueError("backend.params: give model_path or random_init, not both")
            return {"*": {"model_path": None, "random_init": random_init, "key": f"random:{random_init}"}}
        if model_path is None:
            raise ValueError(
                "backend.params.model_path is required (a local pipeline directory or a "
                "cached repo id), or set backend.params.random_init=sd15|sdxl|tiny"
            )
        paths = model_path if isinstance(model_path, dict) else {"*": model_path}
        return {
            name: {"model_path": resolve_model_path(p), "random_init": None, "key": str(p)} for name, p in paths.items()
        }

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
        group = self._warm_group(job, model["key"])
        init = None
        if group is None:  # cold: a new process group, ranks in job.servers order
            group = tuple(job.servers)
            devs = [self._configs[s].device for s in group]
            nccl = all(d.startswith("cuda") for d in devs) and len(set(devs)) == len(devs)
            init = {"port": _free_port(), "backend": "nccl" if nccl else "gloo"}
            for s in group:
                self._forget_group(s)
            for s in group:
                self._workers[s].group, self._workers[s].model_key = group, model["key"]
        job_id = self._next_id
        self._next_id += 1
        image_path = None
        if self.save_images and self.context.out_dir:
            image_path = os.path.join(self.context.out_dir, "images", f"task{task.id:05d}_seed{task.seed}.png")
        t = time.monotonic()
        timeout = self.task_timeout_s + (self.cold_timeout_s if init else 0.0)
        run = _Running(job, job_id, group, t, t + timeout, set(range(len(group))))
        self._jobs[job_id] = run
        for s in group:
            self._busy[s] = job_id
        for rank, s in enumerate(group):
            spec = {
                "job_id": job_id,
                "task_id": task.id,
                "rank": rank,
                "world": len(group),
                "init": init,
                "model": model,
                "prompt": task.prompt,
                "seed": task.seed,
                "resolution": task.resolution,
                "steps": job.steps,
                "batch": self.images_per_task,
                "guidance_scale": self.guidance_scale,
                "image_path": image_path if rank == 0 else None,
                "clip_model_path": self.clip_model_path,
                "check_psnr": self.check_psnr,
            }
            try:
                self._workers[s].conn.send(("run", spec))
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
        for s in servers:
            w = self._workers[s]
            if w.group is not None or w.model_key is not None:
                self._forget_group(s)
                try:
                    w.conn.send(("dissolve",))
                except (OSError, ValueError):
                    pass

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
            "quality": "clip" if self.clip_model_path else None,
            "torch": first.get("torch"),
            "diffusers": first.get("diffusers"),
            "transformers": first.get("transformers"),
            "cpu_threads_per_worker": first.get("cpu_threads"),
            "worker_restarts": sum(w.restarts for w in self._workers.values()),
        }

    # -------------------------------------------------------------- internals
    def _warm_group(self, job: Job, model_key: str) -> tuple[int, ...] | None:
        """The live group (in rank order) that runs ``job`` warm, or ``None`` (cold)."""
        if job.cold:
            return None
        group = self._workers[job.servers[0]].group
        if group is None or set(group) != set(job.servers) or len(group) != len(job.servers):
            return None
        ok = all(self._workers[s].group == group and self._workers[s].model_key == model_key for s in group)
        return group if ok else None

    def _forget_group(self, server: int) -> None:
        """``server`` leaves its warm group; the other members' group is broken too."""
        w = self._workers[server]
        if w.group is not None:
            for other in w.group:
                if other != server and self._workers[other].group == w.group:
                    self._workers[other].group = None
        w.group, w.model_key = None, None

    def _poll(self, timeout: float) -> None:
        """Handle worker messages and deaths (waiting up to ``timeout`` s), then timeouts."""
        by_obj: dict[Any, int] = {}
        for idx, w in self._workers.items():
            by_obj[w.conn] = idx
            by_obj[w.proc.sentinel] = idx
        ready = wait(list(by_obj), timeout) if by_obj else []
        dead: set[int] = set()
        for obj in ready:
            idx = by_obj[obj]
            w = self._workers[idx]
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

    def _on_message(self, idx: int, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            self._workers[idx].info = msg[1]
            return
        run = self._jobs.get(msg[1])
        if run is None:  # a job already failed or closed
            return
        if kind == "started":
            run.started = msg[3] if run.started is None else min(run.started, msg[3])
        elif kind == "done":
            run.payloads[msg[2]] = msg[3]
            run.pending.discard(msg[2])
            if not run.pending:
                self._finish(run)
        elif kind == "error":
            server = run.group[msg[2]]
            self._fail(run, f"server {server} (rank {msg[2]}): {msg[3]}", clean={server})

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
        cold_s = max((p["cold_start_s"] for p in loaded), default=0.0)
        wall = t_end - run.launched
        extra: dict[str, Any] = {
            "image_path": p0.get("image_path"),
            "reloaded": bool(loaded),
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
        if "psnr_vs_single_db" in p0:
            extra["psnr_vs_single_db"] = p0["psnr_vs_single_db"]
        self._done.append(JobResult(run.job, finish, p0.get("quality"), None, cold_s, extra))

    def _fail(self, run: _Running, reason: str, clean: set[int] | None = None) -> None:
        """Fail ``run`` and restart its gang's workers (but ``clean`` ones, which tore
        down their own state), so that the servers are usable again."""
        self._release(run)
        self._done.append(
            JobResult(run.job, self.now(), None, error=reason, extra={"failed_servers": list(run.job.servers)})
        )
        done_ranks = {run.group[r] for r in run.payloads}
        for s in run.job.servers:
            self._forget_group(s)
        self._restart([s for s in run.job.servers if s not in (clean or set()) | done_ranks])

    def _restart(self, servers: list[int]) -> None:
        """Kill and respawn workers (not waiting for them to be ready: commands queue)."""
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
