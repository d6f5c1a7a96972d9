"""Typed experiment configuration, registered with Hydra's ConfigStore.

One dataclass per component, composed by ``ExperimentConfig``. Hydra merges YAML files
from ``conf/`` onto these schemas (an unknown key fails there); ``validate`` then checks
values and cross-field constraints and names the field and the allowed values on error.
Validation never touches the filesystem beyond checking that named files exist.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


def _fail(fieldname: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{fieldname}={value!r} is invalid; allowed: {allowed}")


@dataclass
class GpuKindConfig:
    """A GPU kind. ``speed`` is throughput relative to ``relative_to`` (2.0 = twice as fast);
    a latency profile without rows for this kind scales those of ``relative_to``."""

    speed: float = 1.0
    relative_to: str | None = None
    memory_gib: float = 24.0


@dataclass
class ClusterConfig:
    """Edge servers, one GPU each.

    Either list ``servers`` (the GPU kind of each server) or give ``size`` and ``mix``
    (GPU kind -> share) to generate ``size`` servers, kinds interleaved deterministically.
    """

    name: str = "paper4"
    gpu_kinds: dict[str, GpuKindConfig] = field(default_factory=lambda: {"paper_gpu": GpuKindConfig()})
    servers: list[str] = field(default_factory=lambda: ["paper_gpu"] * 4)
    size: int = 0
    mix: dict[str, float] = field(default_factory=dict)


@dataclass
class ProfileConfig:
    """Latency profile: ``name`` of a built-in profile (``paper``, ``h100_sd15``) or ``csv``
    with ``path`` to a profile CSV (columns gpu_kind, model, resolution, k, step_s, fixed_s,
    cold_start_s)."""

    name: str = "paper"
    path: str | None = None


@dataclass
class QualityConfig:
    """Quality curve q(steps): ``paper``, ``monotone`` or ``table`` (CSV with columns
    steps, quality at ``path``)."""

    name: str = "paper"
    path: str | None = None


@dataclass
class WorkloadConfig:
    """Task arrivals and task attributes.

    Arrival processes (``arrival``): ``bernoulli`` (the paper's: each ``slot`` seconds a
    task arrives with probability rate*slot), ``poisson``, ``gamma`` (inter-arrival CV
    ``cv``; cv=1 is Poisson, >1 bursty), ``cosine`` (the paper's time-varying rate between
    ``rate_low`` and ``rate_high`` with ``periods`` periods over ``period_length`` s,
    thinned Poisson), ``trace`` (replay arrival times, and optional prompt/resolution/k
    columns, from the CSV at ``trace_path``).
    """

    name: str = "paper"
    arrival: str = "bernoulli"
    rate: float = 0.07
    slot: float = 0.1
    cv: float = 1.0
    rate_low: float = 0.01
    rate_high: float = 0.11
    periods: float = 1.0
    period_length: float = 1024.0
    trace_path: str | None = None
    n_tasks: int | None = 32
    horizon: float | None = 1024.0
    initial_queue: int = 10
    model: str = "sd14"
    resolutions: list[int] = field(default_factory=lambda: [1440])
    k_choices: list[int] | None = field(default_factory=lambda: [1, 2, 4])
    slo_factor: float = 5.0
    slo_steps: int = 20
    prompts: str = "builtin"


@dataclass
class SchedulerConfig:
    """A scheduler by registry ``name``; ``params`` go to its constructor (checked there).
    ``checkpoint`` is the trained policy a learned scheduler loads."""

    name: str = "greedy"
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None


@dataclass
class RewardConfig:
    """The paper reward for a launch:
    ``min(cap, w_t / (w_tt * mean_wait_visible + response)) + w_q * q(steps)``."""

    w_t: float = 250.0
    w_tt: float = 1.0
    w_q: float = 10.0
    cap: float = 10.0


@dataclass
class EngineConfig:
    """Decision-making rules.

    ``decision_mode``: ``event`` (a decision epoch at each arrival and completion),
    ``slotted`` (also every ``slot`` seconds while tasks wait) or ``release`` (the paper
    release's own clock, launch for launch: see ``eatbench.engine.RELEASE_T0``).
    ``window``: how many queued tasks (FIFO) a scheduler sees. Steps are integers in
    [``min_steps``, ``max_steps``].
    """

    decision_mode: str = "event"
    slot: float = 0.1
    window: int = 10
    min_steps: int = 1
    max_steps: int = 32
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class BackendConfig:
    """Execution backend by registry ``name`` (``sim`` or ``gpu``); ``params`` go to it."""

    name: str = "sim"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputConfig:
    """Where result files go (``<root>/<experiment>/<scheduler>/<point>/seed=<seed>/``),
    whether a finished run is skipped on a rerun (``resume``), and W&B mode."""

    root: str = "results"
    write: bool = True
    resume: bool = True
    wandb: str = "disabled"


@dataclass
class TrainConfig:
    """Training of learned schedulers (``eatbench train scheduler=eat``); owned by
    eatbench/schedulers/rl (see ``eatbench.schedulers.rl.train``).

    ``preset``: SAC hyperparameters (``paper``: the release's; ``tuned``: ours), with
    ``params`` overriding single keys. ``layout``: action layout (``paper`` or
    ``extended``). Each training episode draws its arrival rate uniformly from
    [``rate_low``, ``rate_high``] tasks/s (both null: the configured ``workload.rate``).
    Every ``eval_every`` env steps: a deterministic evaluation on ``eval_episodes`` fixed
    workloads at ``workload.rate`` and a resumable checkpoint. Training stops at
    ``total_steps`` env steps or after ``max_minutes`` of wall time (0: no limit).
    ``threads``: torch CPU threads (0: leave torch's default). ``export``: also copy the
    final ``policy.pt`` (and its ``.json`` sidecar) to this path. ``wandb``: W&B mode.
    """

    preset: str = "tuned"
    layout: str = "paper"
    total_steps: int = 20000
    rate_low: float | None = 0.01
    rate_high: float | None = 0.11
    eval_every: int = 2000
    eval_episodes: int = 5
    out_dir: str = "results/train"
    resume: bool = True
    wandb: str = "offline"
    threads: int = 1
    max_minutes: float = 0.0
    time_scale: float = 100.0
    progress: bool = True
    export: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """One experiment: a cluster, a workload, a scheduler, a backend, a seed."""

    experiment: str = "default"
    seed: int = 0
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: str | None = None  # shorthand for scheduler.checkpoint


ARRIVALS = ("bernoulli", "poisson", "gamma", "cosine", "trace")
DECISION_MODES = ("event", "slotted", "release")
WANDB_MODES = ("offline", "online", "disabled")


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=ExperimentConfig)


def server_kinds(cluster: ClusterConfig) -> list[str]:
    """The GPU kind of each server, generating them from ``size`` and ``mix`` if needed."""
    if cluster.servers:
        return list(cluster.servers)
    total = sum(cluster.mix.values())
    kinds = sorted(cluster.mix)
    # Largest-remainder apportionment, then interleave kinds so that any prefix is mixed.
    exact = {k: cluster.size * cluster.mix[k] / total for k in kinds}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    for k in sorted(kinds, key=lambda k: counts[k] - exact[k])[: cluster.size - sum(counts.values())]:
        counts[k] += 1
    placed = {k: 0 for k in kinds}
    out: list[str] = []
    for i in range(cluster.size):
        # the kind furthest behind its target share at position i+1
        k = max(kinds, key=lambda k: (counts[k] * (i + 1) / cluster.size - placed[k], -kinds.index(k)))
        placed[k] += 1
        out.append(k)
    return out


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check values and cross-field constraints; raise ``ConfigError`` naming the field.

    Also folds the ``checkpoint`` shorthand into ``scheduler.checkpoint`` (it wins over the
    scheduler file's ``auto``), so everything downstream reads ``scheduler.checkpoint`` only.
    """
    from eatbench.backends import BACKENDS

    if cfg.checkpoint and cfg.checkpoint != "auto" and cfg.scheduler.checkpoint != cfg.checkpoint:
        cfg = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, checkpoint=cfg.checkpoint))
    from eatbench.profiles import PROFILES, QUALITY_CURVES
    from eatbench.schedulers import SCHEDULERS

    c = cfg.cluster
    if not c.gpu_kinds:
        _fail("cluster.gpu_kinds", c.gpu_kinds, "at least one GPU kind")
    for name, kind in c.gpu_kinds.items():
        if not kind.speed > 0:
            _fail(f"cluster.gpu_kinds.{name}.speed", kind.speed, "a number > 0")
        if kind.relative_to is not None and kind.relative_to not in c.gpu_kinds:
            _fail(f"cluster.gpu_kinds.{name}.relative_to", kind.relative_to, ", ".join(c.gpu_kinds))
    if c.servers and c.size:
        _fail(
            "cluster.size", c.size, "0 when cluster.servers is listed (give servers, or size with mix and servers: [])"
        )
    if c.servers:
        for i, kind in enumerate(c.servers):
            if kind not in c.gpu_kinds:
                _fail(f"cluster.servers[{i}]", kind, ", ".join(sorted(c.gpu_kinds)))
    else:
        if not 1 <= c.size <= 1024:
            _fail("cluster.size", c.size, "1..1024 (or list cluster.servers)")
        if not c.mix:
            _fail("cluster.mix", c.mix, "GPU kind -> share, e.g. {paper_gpu: 1.0}")
        for kind, share in c.mix.items():
            if kind not in c.gpu_kinds:
                _fail(f"cluster.mix.{kind}", kind, ", ".join(sorted(c.gpu_kinds)))
            if not share > 0:
                _fail(f"cluster.mix.{kind}", share, "a share > 0")
    n_servers = len(server_kinds(c))

    w = cfg.workload
    if w.arrival not in ARRIVALS:
        _fail("workload.arrival", w.arrival, ", ".join(ARRIVALS))
    if not (w.rate >= 0 and math.isfinite(w.rate)):
        _fail("workload.rate", w.rate, "a rate >= 0 tasks/s")
    if w.arrival == "bernoulli" and not (0 < w.slot and w.rate * w.slot <= 1):
        _fail("workload.slot", w.slot, "slot > 0 with rate*slot <= 1")
    if w.arrival == "gamma" and not w.cv > 0:
        _fail("workload.cv", w.cv, "a coefficient of variation > 0")
    if w.arrival == "cosine":
        if not 0 <= w.rate_low <= w.rate_high:
            _fail("workload.rate_low", w.rate_low, f"0 <= rate_low <= rate_high ({w.rate_high})")
        if not w.period_length > 0:
            _fail("workload.period_length", w.period_length, "seconds > 0")
    if w.arrival == "trace" and not w.trace_path:
        _fail("workload.trace_path", w.trace_path, "a CSV path with an 'arrival' column")
    if w.n_tasks is None and w.horizon is None:
        _fail("workload.n_tasks", None, "a task count, or set workload.horizon")
    if w.n_tasks is not None and w.n_tasks < 1:
        _fail("workload.n_tasks", w.n_tasks, "an integer >= 1 or null")
    if w.horizon is not None and not w.horizon > 0:
        _fail("workload.horizon", w.horizon, "seconds > 0 or null")
    if w.initial_queue < 0:
        _fail("workload.initial_queue", w.initial_queue, "an integer >= 0")
    if not w.resolutions or any(r <= 0 or r % 8 for r in w.resolutions):
        _fail("workload.resolutions", w.resolutions, "positive pixel sizes divisible by 8")
    if w.k_choices is not None:
        if not w.k_choices:
            _fail("workload.k_choices", w.k_choices, "a non-empty list, or null to let the scheduler choose")
        for k in w.k_choices:
            if k < 1 or k & (k - 1):
                _fail("workload.k_choices", w.k_choices, "powers of two (1, 2, 4, 8, ...)")
            if k > n_servers:
                _fail("workload.k_choices", w.k_choices, f"k <= the cluster's {n_servers} servers")
    if not w.slo_factor > 0:
        _fail("workload.slo_factor", w.slo_factor, "a multiple > 0 of the isolated latency")

    e = cfg.engine
    if e.decision_mode not in DECISION_MODES:
        _fail("engine.decision_mode", e.decision_mode, ", ".join(DECISION_MODES))
    if not e.slot > 0:
        _fail("engine.slot", e.slot, "seconds > 0")
    if e.window < 1:
        _fail("engine.window", e.window, "an integer >= 1")
    if not 1 <= e.min_steps <= e.max_steps:
        _fail("engine.min_steps", e.min_steps, f"1 <= min_steps <= max_steps ({e.max_steps})")
    if w.slo_steps < 1:
        _fail("workload.slo_steps", w.slo_steps, "an integer >= 1")

    if cfg.scheduler.name not in SCHEDULERS:
        _fail("scheduler.name", cfg.scheduler.name, ", ".join(SCHEDULERS.names()))
    if cfg.backend.name not in BACKENDS:
        _fail("backend.name", cfg.backend.name, ", ".join(BACKENDS.names()))
    check_params = getattr(BACKENDS.get_class(cfg.backend.name), "check_params", None)
    if check_params is not None:  # e.g. the gpu backend: model, devices, ... before any worker starts
        try:
            check_params(dict(cfg.backend.params))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if cfg.profile.name not in PROFILES:
        _fail("profile.name", cfg.profile.name, ", ".join(PROFILES.names()))
    if cfg.quality.name not in QUALITY_CURVES:
        _fail("quality.name", cfg.quality.name, ", ".join(QUALITY_CURVES.names()))
    if cfg.output.wandb not in WANDB_MODES:
        _fail("output.wandb", cfg.output.wandb, ", ".join(WANDB_MODES))
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "an integer >= 0")
    return cfg


def to_experiment_config(cfg: DictConfig | ExperimentConfig | dict) -> ExperimentConfig:
    """Turn a composed Hydra config (or a plain dict) into a validated ``ExperimentConfig``.

    Unknown keys raise ``ConfigError`` naming the key and the allowed keys.
    """
    if isinstance(cfg, ExperimentConfig):
        return validate(cfg)
    schema = OmegaConf.structured(ExperimentConfig)
    try:
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = {k: v for k, v in dict(cfg).items() if k != "hydra"}
        merged = OmegaConf.merge(schema, cfg)
    except Exception as err:  # omegaconf's errors name the key; re-raise uniformly
        raise ConfigError(_explain_omegaconf_error(err)) from err
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, ExperimentConfig)
    return validate(obj)


def _explain_omegaconf_error(err: Exception) -> str:
    msg = str(err).splitlines()[0]
    full_key = getattr(err, "full_key", None)
    if "not in struct" in str(err) or "Key '" in msg and "not in" in msg:
        parent = full_key.rsplit(".", 1)[0] if full_key and "." in full_key else ""
        node: Any = ExperimentConfig()
        for part in [p for p in parent.split(".") if p]:
            node = getattr(node, part, None)
        allowed = ", ".join(node.__dataclass_fields__) if hasattr(node, "__dataclass_fields__") else "?"
        return f"unknown config key {full_key!r}; allowed here: {allowed}"
    return f"{full_key}: {msg}" if full_key else msg


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """The resolved config as plain data (for result files): dicts, lists and scalars.

    The same data as ``OmegaConf.to_container(OmegaConf.structured(cfg))`` at a fraction of
    the cost (it is called for every run of a sweep)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def resolve_path(path: str) -> str:
    """A relative path as given if it exists from the working directory, else relative to
    the repository root (so config files can name ``conf/traces/x.csv``)."""
    from pathlib import Path

    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    alt = Path(__file__).resolve().parent.parent / p
    return str(alt) if alt.exists() else str(p)
