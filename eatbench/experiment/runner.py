"""Build an experiment from its config, run it, and write its result files.

Result files of one run live in ``<output.root>/<experiment>/<scheduler>/<point>/seed=<seed>/``:
``records.csv`` (one row per task) and ``summary.json`` (summary metrics, the resolved
config, seed, backend, git revision, package versions). ``summary.json`` is written last
and atomically, so its presence marks a finished run: a rerun skips it (``resume``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import inspect
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from eatbench.backends import BACKENDS, BackendContext
from eatbench.core.config import (
    BackendConfig,
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    WorkloadConfig,
    config_to_dict,
    resolve_path,
    to_experiment_config,
    validate,
)
from eatbench.core.metrics import RECORD_FIELDS, TaskRecord
from eatbench.core.provenance import provenance
from eatbench.core.registry import UnknownNameError
from eatbench.engine.cluster import Cluster
from eatbench.engine.loop import Engine
from eatbench.engine.profiles import PROFILES, QUALITY_CURVES, LatencyProfile, load_profile
from eatbench.engine.workload import generate_tasks, k_options  # noqa: F401  (k_options re-exported)
from eatbench.schedulers import SCHEDULERS, Scheduler, is_learned, register_target


@dataclass
class RunResult:
    """The outcome of one run: records, summary, and where its files are (if written)."""

    config: ExperimentConfig
    records: list[TaskRecord]
    summary: dict[str, float]
    meta: dict
    out_dir: Path | None = None


def _invalid(fieldname: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"{fieldname}={value!r} is invalid; allowed: {allowed}")


def backend_settings(cfg: ExperimentConfig) -> dict:
    """The ``backend.*`` settings the chosen backend takes (``{}`` for sim; the typed gpu
    settings for gpu), which go to its constructor. A setting it does not take must be at
    its default: it is refused with the field and the allowed value, never ignored."""
    if cfg.backend.name not in BACKENDS:
        raise _invalid("backend.name", cfg.backend.name, ", ".join(BACKENDS.names()))
    init = inspect.signature(BACKENDS.get_class(cfg.backend.name).__init__).parameters
    defaults = BackendConfig().settings()
    settings = {}
    for key, value in cfg.backend.settings().items():
        if key in init:
            settings[key] = value
        elif value != defaults[key]:
            raise _invalid(
                f"backend.{key}",
                value,
                f"{defaults[key]!r} (backend={cfg.backend.name} takes no {key}; backend=gpu does)",
            )
    return settings


def check_registered(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check the names ``cfg`` looks up in registries (scheduler, backend, latency profile,
    quality curve) and the backend's own parameters (the gpu backend: model, devices, ...),
    before anything is built or any worker starts. Raises ``ConfigError`` naming the field
    and the allowed values; returns ``cfg``.

    ``eatbench.core.config.validate`` checks everything else; it imports no registry. A
    scheduler named by ``scheduler._target_`` (outside the package) is registered here first.
    """
    try:
        register_target(cfg.scheduler)  # a class outside the package, by its import path
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None
    if cfg.scheduler.name not in SCHEDULERS:
        allowed = f"{', '.join(SCHEDULERS.names())}, or a class of one's own by scheduler._target_=package.module.Class"
        raise _invalid("scheduler.name", cfg.scheduler.name, allowed)
    settings = backend_settings(cfg)
    check_params = getattr(BACKENDS.get_class(cfg.backend.name), "check_params", None)
    if check_params is not None:  # e.g. the gpu backend: model, devices, ... before any worker starts
        try:
            check_params(settings)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if cfg.profile.name not in PROFILES:
        raise _invalid("profile.name", cfg.profile.name, ", ".join(PROFILES.names()))
    if cfg.quality.name not in QUALITY_CURVES:
        raise _invalid("quality.name", cfg.quality.name, ", ".join(QUALITY_CURVES.names()))
    return cfg


def build_profile(cfg: ExperimentConfig, cluster: Cluster) -> LatencyProfile:
    profile = load_profile(cfg.profile.name, cfg.profile.path, cluster.gpu_kinds)
    profile.check(cluster.kind_of, cfg.workload.model, cfg.workload.resolutions, k_options(cfg, len(cluster)))
    return profile


def create_scheduler(cfg: ExperimentConfig) -> Scheduler:
    """The configured scheduler built from ``scheduler.params`` (no checkpoint loaded yet).

    A parameter the scheduler does not take is refused (the registry names the allowed
    ones), and so is ``steps`` for a learned scheduler: its policy chooses the steps."""
    name, params = cfg.scheduler.name, dict(cfg.scheduler.params)
    if name not in SCHEDULERS:
        raise _invalid("scheduler.name", name, ", ".join(SCHEDULERS.names()))
    if "steps" in params and is_learned(name):
        raise _invalid(
            "scheduler.params.steps",
            params["steps"],
            f"no steps for the learned scheduler {name!r} (its policy chooses them)",
        )
    try:
        return SCHEDULERS.create(name, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scheduler.params: {err}") from err


def make_scheduler(cfg: ExperimentConfig) -> Scheduler:
    """Instantiate the configured scheduler (and load its checkpoint, if any)."""
    scheduler = create_scheduler(cfg)
    if cfg.scheduler.checkpoint:
        load = getattr(scheduler, "load_checkpoint", None)
        if load is None:
            raise ConfigError(f"scheduler {cfg.scheduler.name!r} takes no checkpoint (it is not a learned scheduler)")
        load(cfg.scheduler.checkpoint, cfg)
    return scheduler


def slo_reference_kind(kind_of: list[str]) -> str:
    """The GPU kind SLOs are measured on: the most common kind in the cluster, ties broken by
    the order in which kinds first appear (never by hash order)."""
    counts: dict[str, int] = {}
    for kind in kind_of:
        counts[kind] = counts.get(kind, 0) + 1
    return max(counts, key=lambda kind: counts[kind])  # max keeps the first of equal counts


def build_engine(cfg: ExperimentConfig, out_dir: Path | None = None) -> Engine:
    """Cluster, workload, profile, backend and engine for one seed of ``cfg``."""
    check_registered(cfg)
    cluster = Cluster.from_config(cfg.cluster)
    profile = build_profile(cfg, cluster)
    quality = QUALITY_CURVES.create(cfg.quality.name, path=cfg.quality.path)
    reference_kind = slo_reference_kind(cluster.kind_of)
    w = cfg.workload

    def isolated_latency(k: int, resolution: int) -> float:
        return profile.duration([reference_kind] * k, w.model, resolution, w.slo_steps, False)

    tasks = generate_tasks(w, cfg.seed, isolated_latency, max_k=len(cluster))
    context = BackendContext(cluster, profile, quality, cfg.seed, str(out_dir) if out_dir else None)
    try:
        backend = BACKENDS.create(cfg.backend.name, context=context, **backend_settings(cfg))
    except (TypeError, ValueError) as err:  # the registry refuses unknown parameters with ValueError
        raise ConfigError(f"backend: {err}") from err
    return Engine(cluster, tasks, backend, profile, quality.table(cfg.engine.max_steps), cfg.engine, w.horizon)


#: workload keys that only one arrival process reads (the others ignore them)
ARRIVAL_KEYS = {
    "slot": ("bernoulli",),
    "cv": ("gamma",),
    "rate_low": ("cosine",),
    "rate_high": ("cosine",),
    "periods": ("cosine",),
    "period_length": ("cosine",),
}


#: ``train.*`` keys added after result folders were first named: left out of the identity (it
#: resets ``train`` to its defaults anyway), so folders keep their names
TRAIN_KEYS_SINCE = ("scenarios", "n_envs", "unfinished_penalty")


def identity(cfg: ExperimentConfig) -> dict:
    """The config as it identifies a point's results: everything but scheduler, seed,
    output and name, with the keys this run ignores set to their defaults, so that runs
    that differ only in ignored keys share one folder. Ignored: ``train.*`` (``eatbench
    run`` trains nothing; a learned scheduler's checkpoint counts by its contents, see
    :func:`scheduler_digest`) and workload keys of other arrival processes (``cv`` unless
    gamma, ``slot`` unless bernoulli, the cosine keys unless cosine). Keys left at their
    defaults hash as before, so existing result folders keep their names."""
    d = config_to_dict(cfg)
    for key in ("seed", "scheduler", "output", "checkpoint", "experiment"):
        d.pop(key, None)
    d["train"] = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k not in TRAIN_KEYS_SINCE}
    default_workload = WorkloadConfig()
    for key, arrivals in ARRIVAL_KEYS.items():
        if cfg.workload.arrival not in arrivals:
            d["workload"][key] = getattr(default_workload, key)
    return d


def point_name(cfg: ExperimentConfig) -> str:
    """A readable, unique name of the swept point (everything but scheduler and seed)."""
    d = identity(cfg)
    # files named by the config count by their contents (a re-measured profile is a new point)
    for name, path in (
        ("profile", cfg.profile.path),
        ("quality", cfg.quality.path),
        ("trace", cfg.workload.trace_path),
    ):
        if path and Path(resolve_path(path)).is_file():
            d[f"{name}_sha1"] = hashlib.sha1(Path(resolve_path(path)).read_bytes()).hexdigest()
    digest = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]
    w = cfg.workload
    return f"{cfg.cluster.name}-{w.name}-{w.arrival}-rate{w.rate:g}-{digest}"


def scheduler_digest(cfg: ExperimentConfig) -> str:
    """Short hash of the scheduler's parameters and checkpoint contents: runs of the same
    point with other parameters, or with a retrained policy, get their own folder."""
    spec: dict = {"params": cfg.scheduler.params}
    if cfg.scheduler.name in SCHEDULERS:
        path = SCHEDULERS.get_class(cfg.scheduler.name).checkpoint_file(cfg)
        if path and Path(path).is_file():
            spec["checkpoint_sha1"] = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_dir(cfg: ExperimentConfig, root: str | Path | None = None) -> Path:
    """``<root>/<experiment>/<scheduler>/<point>-<scheduler digest>/seed=<seed>``."""
    root = Path(root if root is not None else cfg.output.root)
    folder = f"{point_name(cfg)}-{scheduler_digest(cfg)}"
    return root / cfg.experiment / cfg.scheduler.name / folder / f"seed={cfg.seed}"


def run_experiment(
    cfg: ExperimentConfig,
    *,
    scheduler: Scheduler | None = None,
    write: bool | None = None,
    resume: bool = True,
    out_dir: Path | None = None,
) -> RunResult:
    """Run one experiment (one seed) and, if ``write``, store its result files.

    :param cfg: the experiment config.
    :param scheduler: a ready scheduler (default: built from ``cfg.scheduler``).
    :param write: write result files (default ``cfg.output.write``).
    :param resume: if the run's ``summary.json`` already exists, load it instead of running.
    :param out_dir: where to write (default :func:`run_dir`; a sweep passes it to hash once per point).
    """
    cfg = check_registered(validate(cfg))
    write = cfg.output.write if write is None else write
    out = (out_dir or run_dir(cfg)) if write else None
    if out is not None and resume and cfg.output.resume and (out / "summary.json").is_file():
        try:
            return load_run(out)
        except (OSError, ValueError, KeyError, TypeError) as err:  # damaged by hand or by a disk: redo it
            print(
                f"[eatbench] {out} holds unreadable result files ({type(err).__name__}: {err}); running it again",
                file=sys.stderr,
            )
    engine = build_engine(cfg, out)
    sched = scheduler or make_scheduler(cfg)
    sched.reset(cfg.seed, k_options(cfg, engine.n_servers))
    t0 = time.perf_counter()
    records = engine.run(sched)
    wall = time.perf_counter() - t0
    summary = engine.summary()
    summary["wall_s"] = wall
    meta = {
        "experiment": cfg.experiment,
        "scheduler": cfg.scheduler.name,
        "seed": cfg.seed,
        "backend": engine.backend.describe(),
        "point": out.parent.name.rsplit("-", 1)[0] if out is not None else point_name(cfg),
        "config": config_to_dict(cfg),
        **provenance(),
    }
    extra = getattr(sched, "provenance", dict)()
    if extra:
        meta["scheduler_provenance"] = extra
    result = RunResult(cfg, records, summary, meta, out)
    if out is not None:
        write_run(result, out)
    return result


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, then renamed over ``path``. A crash leaves the old file or the new one whole,
    never a partial one (a stray ``.<name>.tmp-<pid>`` at worst, which nothing reads)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_run(result: RunResult, out: Path) -> None:
    """Write ``records.csv`` then ``summary.json``, each atomically; ``summary.json`` last
    (its presence marks a finished run whose ``records.csv`` is whole)."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in result.records:
        w.writerow(r.to_dict())
    atomic_write_text(out / "records.csv", buf.getvalue())
    payload = {**result.meta, "summary": result.summary}
    atomic_write_text(out / "summary.json", json.dumps(payload, indent=1, default=str))


def load_summary(out: Path) -> tuple[dict, dict]:
    """``(summary, meta)`` of a finished run from its ``summary.json`` alone (no records)."""
    payload = json.loads((out / "summary.json").read_text())
    return payload["summary"], {k: v for k, v in payload.items() if k != "summary"}


def load_run(out: Path) -> RunResult:
    """Read a finished run's files back."""
    payload = json.loads((out / "summary.json").read_text())
    records = []
    with (out / "records.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            records.append(_parse_record(row))
    cfg = to_experiment_config(payload["config"])
    meta = {k: v for k, v in payload.items() if k != "summary"}
    return RunResult(cfg, records, payload["summary"], meta, out)


def _parse_record(row: dict[str, str]) -> TaskRecord:
    fields = TaskRecord.__dataclass_fields__
    kw: dict = {}
    for name, value in row.items():
        typ = fields[name].type
        if typ in ("int", int):
            kw[name] = int(value)
        elif typ in ("float", float):
            kw[name] = float(value)
        elif typ in ("bool", bool):
            kw[name] = value == "True"
        else:
            kw[name] = value
    return TaskRecord(**kw)
