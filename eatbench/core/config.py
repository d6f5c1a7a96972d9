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
    a latency profile without rows for this kind scales those of ``relative_to``.
    ``memory_gib`` is one GPU's memory (GiB): in simulation a server fits a launch only if
    it covers the profile's ``memory_gib`` figure, where the profile has one; the gpu
    backend caps each CUDA worker at it (see the README, "GPU memory")."""

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
    ``checkpoint`` is the trained policy a learned scheduler loads. ``_target_``: the import
    path of a ``Scheduler`` subclass defined outside eatbench (``my_package.my_module.MyScheduler``),
    registered as ``name`` when the config is validated; ``None`` for the built-in ones."""

    name: str = "greedy"
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    _target_: str | None = None


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
    release's own clock, launch for launch: see ``eatbench.engine.loop.RELEASE_T0``).
    ``window``: how many queued tasks (FIFO) a scheduler sees. Steps are integers in
    [``min_steps``, ``max_steps``].
    """

    decision_mode: str = "event"
    slot: float = 0.1
    window: int = 10
    min_steps: int = 1
    max_steps: int = 32
    reward: RewardConfig = field(default_factory=RewardConfig)


#: the backend whose settings ``BackendConfig`` types (the sim backend takes none)
GPU_BACKEND = "gpu"


@dataclass
class BackendConfig:
    """Execution backend by registry ``name``: ``sim`` (virtual clock; takes no settings) or
    ``gpu`` (diffusers pipelines, one worker process per server), whose typed settings follow.
    A setting the chosen backend does not take must stay at its default (it is refused, not
    ignored); the gpu backend checks the values (model found locally, devices present, ...)
    once, before any worker starts (``eatbench.experiment.runner.check_registered``).

    ``model_path``: a local pipeline directory or a repo id already in the HF cache, or
    ``{model: path}`` per workload model. ``random_init``: ``sd15``/``sdxl``/``tiny`` random
    weights instead (latency real, quality unavailable). ``devices``: ``auto``, ``cpu``,
    ``cuda`` or a list (server i -> ``devices[i % n]``). ``dtype``: ``fp32``/``fp16``/``bf16``.
    ``compile`` / ``cuda_graphs``: torch.compile the UNet call / replay it from CUDA graphs
    (exclusive). ``split_cfg``: k even: CFG halves on different ranks. ``patch_halo``: latent
    rows of context around row patches (null: a quarter of the height). Timeouts in seconds:
    ``task_timeout_s`` (a job), ``cold_timeout_s`` (extra for a cold start), ``start_timeout_s``
    (workers starting), ``collective_timeout_s`` (NCCL/gloo). ``warmup_resolutions``: sizes
    (px) also warmed up at a cold start. ``compile_backend``: torch.compile backend.
    ``guidance_scale``: classifier-free guidance. ``save_images``: PNGs under the run folder.
    ``clip_model_path``: local CLIP model for per-task CLIP-score quality. ``check_psnr``: k > 1
    also renders on one device for PSNR. ``cpu_threads``: torch threads per worker (null: 1 on
    cpu, 2 with GPUs). ``time_steps``: per-step timings.
    """

    name: str = "sim"
    model_path: Any = None  # str | {model: str} | None (OmegaConf has no unions)
    random_init: str | None = None
    devices: Any = "auto"  # str | list[str]
    dtype: str = "fp16"
    compile: bool = False
    cuda_graphs: bool = False
    split_cfg: bool = True
    patch_halo: int | None = None
    task_timeout_s: float = 600.0
    cold_timeout_s: float = 900.0
    start_timeout_s: float = 300.0
    collective_timeout_s: float = 600.0
    warmup_resolutions: list[int] | None = None
    compile_backend: str = "inductor"
    guidance_scale: float = 7.5
    save_images: bool = True
    clip_model_path: str | None = None
    check_psnr: bool = False
    cpu_threads: int | None = None
    time_steps: bool = True

    def settings(self) -> dict[str, Any]:
        """Every setting but ``name``, as plain data (``{setting: value}``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "name"}


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
    eatbench/schedulers/rl (see ``eatbench.training.train``).

    ``preset``: SAC hyperparameters (``paper``: the release's; ``tuned``: ours), with
    ``params`` overriding single keys. ``layout``: action layout (``paper`` or
    ``extended``). Each training episode draws its arrival rate uniformly from
    [``rate_low``, ``rate_high``] tasks/s (both null: the configured ``workload.rate``).
    Every ``eval_every`` env steps: a deterministic evaluation on ``eval_episodes`` fixed
    workloads at ``workload.rate`` and a resumable checkpoint. Training stops at
    ``total_steps`` env steps or after ``max_minutes`` of wall time (0: no limit).
    ``threads``: torch CPU threads (0: leave torch's default). ``export``: also copy the
    final ``policy.pt`` (and its ``.json`` sidecar) to this path. ``wandb``: W&B mode.

    Size-agnostic training (ours; ``layout: set``, schedulers ``*_set``): ``scenarios:
    mixed`` draws every episode's cluster and load from
    ``eatbench.training.scenarios.ScenarioSpace`` (``none``: the configured ones);
    ``n_envs`` environments step side by side (one policy forward for all of them);
    ``unfinished_penalty`` is subtracted per task left unfinished at an episode's end
    (0: the paper's reward).
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
    scenarios: str = "none"
    n_envs: int = 1
    unfinished_penalty: float = 0.0


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
TRAIN_LAYOUTS = ("paper", "extended", "set")
TRAIN_SCENARIOS = ("none", "mixed")
MAX_WINDOW = 4096  # visible tasks; the env allocates (window + servers + 1) x 4 floats per observation
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding (used by SB3 in training) takes 32-bit seeds
#: names that become folder names in result and training paths
NAME_CHARS = "a non-empty name without /, \\, spaces or control characters, not . or .."
MAX_STEPS_LIMIT = 1000  # denoising steps; the engine precomputes q(0..max_steps)
#: Peak memory one task costs through a run (task, queue entries, record, CSV row), bytes.
#: Measured at ~0.9-1.1 KB with tracemalloc (20000-task Poisson run); doubled for safety.
BYTES_PER_TASK = 2048


def _physical_memory() -> int:
    """Bytes of physical memory on this machine (0 if unknown)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def check_finite(obj: Any, path: str = "") -> None:
    """Raise ``ConfigError`` naming the first NaN or infinite number in ``obj`` (a config
    dataclass, dict or list, walked recursively); ``path`` prefixes the field names."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            _fail(path or "value", obj, "a finite number (no nan or inf)")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            check_finite(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{path}[{i}]")


def _is_folder_name(name: Any) -> bool:
    import re

    return isinstance(name, str) and name not in (".", "..") and re.fullmatch(r"[^/\\\s\x00-\x1f]+", name) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expected_task_bound(w: WorkloadConfig) -> float:
    """An upper bound (mean plus a wide margin) of the tasks one episode of ``w`` creates;
    ``inf`` when it is unbounded (a trace: bounded by its file instead)."""
    if w.arrival == "trace":
        return math.inf if w.n_tasks is None else float(w.n_tasks)
    limit_n = math.inf if w.n_tasks is None else float(w.n_tasks)
    if w.horizon is None:
        return limit_n
    peak = w.rate_high if w.arrival == "cosine" else w.rate
    mean = peak * w.horizon
    return min(limit_n, w.initial_queue + mean + 10 * math.sqrt(mean) + 100)


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

    Names looked up in registries (scheduler, backend, profile, quality curve) and the
    backend's own parameters are checked where things are built
    (``eatbench.experiment.runner.check_registered``), so this module imports no registry.

    Also folds the ``checkpoint`` shorthand into ``scheduler.checkpoint`` (it wins over the
    scheduler file's ``auto``), so everything downstream reads ``scheduler.checkpoint`` only.
    """
    if cfg.checkpoint and cfg.checkpoint != "auto" and cfg.scheduler.checkpoint != cfg.checkpoint:
        cfg = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, checkpoint=cfg.checkpoint))
    check_finite(cfg)
    for fieldname, name in (
        ("experiment", cfg.experiment),
        ("cluster.name", cfg.cluster.name),
        ("workload.name", cfg.workload.name),
    ):
        if not _is_folder_name(name):
            _fail(fieldname, name, NAME_CHARS)
    c = cfg.cluster
    if not c.gpu_kinds:
        _fail("cluster.gpu_kinds", c.gpu_kinds, "at least one GPU kind")
    for name, kind in c.gpu_kinds.items():
        if not kind.speed > 0:
            _fail(f"cluster.gpu_kinds.{name}.speed", kind.speed, "a number > 0")
        if kind.relative_to is not None and kind.relative_to not in c.gpu_kinds:
            _fail(f"cluster.gpu_kinds.{name}.relative_to", kind.relative_to, ", ".join(c.gpu_kinds))
        if not kind.memory_gib > 0:
            _fail(f"cluster.gpu_kinds.{name}.memory_gib", kind.memory_gib, "GiB > 0")
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
        if not w.periods >= 0:
            _fail("workload.periods", w.periods, "a number of periods >= 0")
        if w.rate_high == 0 and w.initial_queue == 0:
            _fail(
                "workload.rate_high",
                w.rate_high,
                "a rate > 0 tasks/s (or workload.initial_queue > 0): no task would arrive",
            )
    elif w.arrival != "trace" and w.rate == 0 and w.initial_queue == 0:
        _fail("workload.rate", w.rate, "a rate > 0 tasks/s (or workload.initial_queue > 0): no task would arrive")
    if w.arrival == "trace" and not w.trace_path:
        _fail("workload.trace_path", w.trace_path, "a CSV path with an 'arrival' column")
    if w.n_tasks is None and w.horizon is None and w.arrival != "trace":  # a trace ends with its file
        _fail("workload.n_tasks", None, "a task count, or set workload.horizon")
    if w.n_tasks is not None and w.n_tasks < 1:
        _fail("workload.n_tasks", w.n_tasks, "an integer >= 1 or null")
    if w.horizon is not None and not w.horizon > 0:
        _fail("workload.horizon", w.horizon, "seconds > 0 or null")
    if w.initial_queue < 0:
        _fail("workload.initial_queue", w.initial_queue, "an integer >= 0")
    memory = _physical_memory()
    bound = expected_task_bound(w)
    if memory and w.arrival != "trace" and bound * BYTES_PER_TASK > memory / 2:  # a trace: bounded by its file
        field_name = "workload.n_tasks" if w.n_tasks is not None and bound >= w.n_tasks else "workload.horizon"
        value = w.n_tasks if field_name == "workload.n_tasks" else w.horizon
        _fail(
            field_name,
            value,
            f"at most ~{memory // 2 // BYTES_PER_TASK} tasks per run on this machine (this run would create up to "
            f"{bound:.3g} tasks and need ~{bound * BYTES_PER_TASK / 2**30:.3g} GiB; the machine has "
            f"{memory / 2**30:.3g} GiB)",
        )
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
    if not 1 <= e.window <= MAX_WINDOW:
        _fail("engine.window", e.window, f"an integer in 1..{MAX_WINDOW}")
    if not 1 <= e.min_steps <= e.max_steps:
        _fail("engine.min_steps", e.min_steps, f"1 <= min_steps <= max_steps ({e.max_steps})")
    if e.max_steps > MAX_STEPS_LIMIT:
        _fail("engine.max_steps", e.max_steps, f"min_steps..{MAX_STEPS_LIMIT}")
    for name in ("w_t", "w_tt", "w_q"):
        if getattr(e.reward, name) < 0:
            _fail(f"engine.reward.{name}", getattr(e.reward, name), "a weight >= 0")
    if not e.reward.cap > 0:
        _fail("engine.reward.cap", e.reward.cap, "a reward cap > 0")
    if w.slo_steps < 1:
        _fail("workload.slo_steps", w.slo_steps, "an integer >= 1")
    _validate_scheduler_params(cfg)

    # a file that would be silently ignored, or a file-based choice without its file
    if (cfg.profile.name == "csv") != bool(cfg.profile.path):
        _fail("profile.path", cfg.profile.path, "a profile CSV path with profile.name=csv, else null")
    if (cfg.quality.name == "table") != bool(cfg.quality.path):
        _fail("quality.path", cfg.quality.path, "a CSV path (steps, quality) with quality.name=table, else null")
    if w.trace_path and w.arrival != "trace":
        _fail("workload.trace_path", w.trace_path, f"null unless workload.arrival=trace (it is {w.arrival!r})")
    if cfg.output.wandb not in WANDB_MODES:
        _fail("output.wandb", cfg.output.wandb, ", ".join(WANDB_MODES))
    if not 0 <= cfg.seed <= MAX_SEED:
        _fail("seed", cfg.seed, f"an integer in 0..{MAX_SEED}")
    if not cfg.output.root:
        _fail("output.root", cfg.output.root, "a folder path")
    _validate_train(cfg.train)
    return cfg


def _validate_scheduler_params(cfg: ExperimentConfig) -> None:
    """Step counts given to a scheduler must be integers the engine allows (no silent clamp)."""
    e, params = cfg.engine, cfg.scheduler.params
    allowed = f"an integer in engine.min_steps..engine.max_steps ({e.min_steps}..{e.max_steps})"
    if "steps" in params:
        steps = params["steps"]
        if not (_is_int(steps) and e.min_steps <= steps <= e.max_steps):
            _fail("scheduler.params.steps", steps, allowed)
    if params.get("step_grid") is not None:
        grid = params["step_grid"]
        if not isinstance(grid, (list, tuple)) or not grid:
            _fail("scheduler.params.step_grid", grid, f"a non-empty list of step counts, each {allowed}")
        for i, s in enumerate(grid):
            if not (_is_int(s) and e.min_steps <= s <= e.max_steps):
                _fail(f"scheduler.params.step_grid[{i}]", s, allowed)


def _validate_train(t: TrainConfig) -> None:
    """Training settings (used by ``eatbench train``; checked for every run all the same)."""
    if t.layout not in TRAIN_LAYOUTS:
        _fail("train.layout", t.layout, ", ".join(TRAIN_LAYOUTS))
    if t.wandb not in WANDB_MODES:
        _fail("train.wandb", t.wandb, ", ".join(WANDB_MODES))
    if t.total_steps < 1:
        _fail("train.total_steps", t.total_steps, "env steps >= 1")
    if t.eval_every < 1:
        _fail("train.eval_every", t.eval_every, "env steps >= 1")
    if t.eval_episodes < 1:
        _fail("train.eval_episodes", t.eval_episodes, "episodes >= 1")
    if not t.time_scale > 0:
        _fail("train.time_scale", t.time_scale, "seconds > 0")
    if t.scenarios not in TRAIN_SCENARIOS:
        _fail("train.scenarios", t.scenarios, ", ".join(TRAIN_SCENARIOS))
    if t.scenarios == "mixed" and t.layout != "set":
        _fail("train.scenarios", t.scenarios, "none unless train.layout=set (fixed layouts are tied to one cluster)")
    if isinstance(t.n_envs, bool) or not isinstance(t.n_envs, int) or not 1 <= t.n_envs <= 256:
        _fail("train.n_envs", t.n_envs, "an integer in [1, 256]")
    if not (isinstance(t.unfinished_penalty, (int, float)) and 0 <= t.unfinished_penalty < math.inf):
        _fail("train.unfinished_penalty", t.unfinished_penalty, "a reward >= 0 per unfinished task")
    if t.threads < 0:
        _fail("train.threads", t.threads, "an integer >= 0 (0: torch's default)")
    if not t.max_minutes >= 0:
        _fail("train.max_minutes", t.max_minutes, "minutes >= 0 (0: no limit)")
    if (t.rate_low is None) != (t.rate_high is None):
        _fail("train.rate_low", t.rate_low, f"null together with train.rate_high ({t.rate_high}), or both rates")
    if t.rate_low is not None and t.rate_high is not None:
        if not 0 <= t.rate_low <= t.rate_high:
            _fail("train.rate_low", t.rate_low, f"0 <= rate_low <= rate_high ({t.rate_high}) tasks/s")
        if not t.rate_high > 0:
            _fail("train.rate_high", t.rate_high, "a rate > 0 tasks/s")
    if not t.out_dir:
        _fail("train.out_dir", t.out_dir, "a folder path")


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
        backend = cfg.get("backend")
        if isinstance(backend, dict) and isinstance(backend.get("params"), dict):
            # a result file written before the settings were typed: backend.params.X -> backend.X
            cfg["backend"] = {**{k: v for k, v in backend.items() if k != "params"}, **backend["params"]}
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
    the cost (it is called for every run of a sweep), except the backend, which is written
    as ``{"name": ..., "params": {the settings it takes}}`` (every typed setting for
    ``gpu``; none for ``sim``), the shape result files have always had;
    :func:`to_experiment_config` reads it back."""
    d = _plain(dataclasses.asdict(cfg))
    b = cfg.backend
    settings = b.settings()
    if b.name != GPU_BACKEND:  # a valid config of another backend leaves them all at their defaults
        defaults = BackendConfig().settings()
        settings = {k: v for k, v in settings.items() if v != defaults[k]}
    d["backend"] = {"name": b.name, "params": settings}
    if d["scheduler"]["_target_"] is None:  # built-in schedulers: records as before the key existed
        del d["scheduler"]["_target_"]
    return d


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def resolve_path(path: str) -> str:
    """A relative path as given if it exists from the working directory, else relative to
    the package folder (so config files can name ``conf/traces/x.csv``, shipped in
    ``eatbench/conf``), else relative to a checkout's root (``reports/...``)."""
    from pathlib import Path

    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    package = Path(__file__).resolve().parents[1]
    for alt in (package / p, package.parent / p):
        if alt.exists():
            return str(alt)
    return str(p)


# -- CSV input files (profiles, quality curves, traces) -------------------------------------


def read_csv_rows(path: str | Any, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of a CSV input file, each row with its line number (1-based,
    as an editor shows it); lines starting with ``#`` are comments.

    Raises ``ConfigError`` naming the file (``what`` says which input it is) and the line
    for an unreadable file, a missing header, or a row with more or fewer cells than the
    header.
    """
    import csv
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {str(p)!r} is unreadable ({type(err).__name__}: {err})") from err
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip() and not line.startswith("#")]
    if not numbered:
        raise ConfigError(f"{what} {str(p)!r} is empty; it needs a header line and rows")
    try:
        table = list(csv.reader([line for _, line in numbered]))
    except csv.Error as err:
        raise ConfigError(f"{what} {str(p)!r} is not valid CSV ({err})") from err
    header = [h.strip() for h in table[0]]
    rows = []
    for (line_no, _), cells in zip(numbered[1:], table[1:], strict=True):
        if len(cells) != len(header):
            raise ConfigError(
                f"{what} {str(p)!r} line {line_no} has {len(cells)} cells; allowed: {len(header)} "
                f"(the header's columns {', '.join(header)})"
            )
        rows.append((line_no, {h: c.strip() for h, c in zip(header, cells, strict=True)}))
    return header, rows


def csv_number(
    text: str,
    *,
    file: Any,
    line: int,
    column: str,
    integer: bool = False,
    low: float | None = None,
    low_open: bool = False,
    allowed: str = "",
) -> float:
    """Parse one numeric CSV cell; raise ``ConfigError`` naming the file, line and column
    for a non-number, NaN, infinity, a non-integer (``integer``) or a value below ``low``
    (``low_open``: strictly above it). ``allowed`` describes the valid values."""
    desc = allowed or ("an integer" if integer else "a finite number")

    def bad() -> None:
        raise ConfigError(f"{file} line {line}: column {column}={text!r} is invalid; allowed: {desc}")

    try:
        value = float(text)
    except (TypeError, ValueError):
        bad()
    if not math.isfinite(value) or (integer and value != int(value)):
        bad()
    if low is not None and (value <= low if low_open else value < low):
        bad()
    return int(value) if integer else value
