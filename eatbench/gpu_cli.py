"""``eatbench profile``, ``eatbench quality-curve`` and ``eatbench fidelity``: the real-GPU
commands (registered with the ``eatbench`` CLI, which imports this module).

Each command takes the usual Hydra overrides (the experiment config: cluster, workload,
``backend=gpu`` and its ``backend.*`` settings) plus a few command-only options in one
namespace added with ``+``: ``+profile_args.*``, ``+quality_args.*``, ``+fidelity_args.*``.
They are taken out of the config before it is validated against ``ExperimentConfig``
(so the strict schema stays as it is) and checked against the dataclasses below; an
unknown option stops with the allowed ones. Examples::

    # 1. measure a latency profile on this machine's GPUs (or cpu) -> a profile CSV
    eatbench profile backend=gpu backend.model_path=/models/sd15 \\
        workload=sd15 cluster=h100x4 +profile_args.out=results/profiles/h100_sd15.csv
    # 2. measure q(steps) with real weights and a local CLIP model -> a quality CSV
    eatbench quality-curve backend=gpu backend.model_path=/models/sd15 \\
        backend.clip_model_path=/models/clip-vit-l-14 workload=sd15 \\
        +quality_args.steps=[5,10,20,30]
    # 3. the same experiment on gpu and on sim with that profile -> MAPE, JSON + markdown
    eatbench fidelity backend=gpu backend.model_path=/models/sd15 workload=sd15 \\
        cluster=h100x4 scheduler=fifo profile=csv profile.path=results/profiles/h100_sd15.csv

Where things come from: the GPU kind is the cluster's (one kind, or
``+profile_args.gpu_kind``), the model name is ``workload.model``, resolutions are
``workload.resolutions`` and the gang sizes are ``workload.k_choices`` (or every power of
two up to the cluster size); the pipeline settings are ``backend.*`` (the very
settings a ``backend=gpu`` run uses, so the profile describes that run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eatbench.core.commands import command
from eatbench.core.config import ConfigError, ExperimentConfig, server_kinds, to_experiment_config
from eatbench.engine.cluster import Cluster


# ------------------------------------------------------------------ command-only options
@dataclass
class ProfileArgs:
    """Options of ``eatbench profile`` (``+profile_args.<name>=...``).

    :param out: profile CSV to write (default ``<output.root>/profiles/<gpu_kind>_<model>.csv``);
        a ``.json`` with every sample is written beside it.
    :param steps: denoising steps per measured task.
    :param repeats: warm tasks measured per (resolution, k).
    :param ks: gang sizes (default: ``workload.k_choices``, else powers of two up to the
        cluster size).
    :param resolutions: image sides in pixels (default ``workload.resolutions``).
    :param gpu_kind: the GPU kind written into the CSV (default: the cluster's only kind).
    :param prompt: the prompt of every measured task.
    :param allow_shared_devices: measure k > 1 even where the gang's workers share a device
        (fewer GPUs than k): such rows are not k-way figures and are marked in the CSV's
        ``shared_devices`` column; without it such a k is refused.
    """

    out: str | None = None
    steps: int = 20
    repeats: int = 3
    ks: list[int] | None = None
    resolutions: list[int] | None = None
    gpu_kind: str | None = None
    prompt: str = "a photograph of an astronaut riding a horse"
    allow_shared_devices: bool = False


@dataclass
class QualityArgs:
    """Options of ``eatbench quality-curve`` (``+quality_args.<name>=...``).

    :param out: quality CSV to write (default ``<output.root>/quality/<model>.csv``).
    :param steps: step counts to measure.
    :param n_prompts: prompts (first of ``workload.prompts``), one image per prompt and step count.
    :param resolution: image side in pixels (default: the first of ``workload.resolutions``).
    :param image_dir: also save every image there.
    """

    out: str | None = None
    steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    n_prompts: int = 16
    resolution: int | None = None
    image_dir: str | None = None


@dataclass
class FidelityArgs:
    """Options of ``eatbench fidelity`` (``+fidelity_args.<name>=...``).

    :param out: directory for ``fidelity.json`` and ``fidelity.md`` (default
        ``<output.root>/fidelity/<experiment>``).
    :param seeds: seeds to run (default: ``seed``); each is one gpu run plus one sim run.
    """

    out: str | None = None
    seeds: list[int] | None = None


#: namespace -> (command, options dataclass)
NAMESPACES: dict[str, tuple[str, type]] = {
    "profile_args": ("profile", ProfileArgs),
    "quality_args": ("quality-curve", QualityArgs),
    "fidelity_args": ("fidelity", FidelityArgs),
}


def split_config(raw: DictConfig | dict, namespace: str) -> tuple[ExperimentConfig, Any]:
    """Take ``namespace`` (e.g. ``profile_args``) out of the composed config; return the
    validated ``ExperimentConfig`` and the command's options dataclass.

    :raises ConfigError: an unknown option, a wrong type, or another command's namespace.
    """
    from eatbench.experiment.runner import check_registered  # the registries import torch: only when a command runs

    data = OmegaConf.to_container(raw, resolve=False) if isinstance(raw, DictConfig) else dict(raw)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    this_cmd, schema = NAMESPACES[namespace]
    given = data.pop(namespace, None) or {}
    for other, (cmd, _) in NAMESPACES.items():
        if other != namespace and other in data:
            raise ConfigError(f"+{other}.* belongs to `eatbench {cmd}`; `eatbench {this_cmd}` takes +{namespace}.*")
    if not isinstance(given, dict):
        raise ConfigError(f"{namespace}={given!r} is invalid; allowed: {namespace}.<option>=<value>")
    allowed = [f.name for f in fields(schema)]
    for key in given:
        if key not in allowed:
            raise ConfigError(f"unknown option {namespace}.{key}; allowed: {', '.join(allowed)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), given)
        args = OmegaConf.to_object(merged)
    except Exception as err:  # omegaconf names the key and the expected type
        raise ConfigError(f"{namespace}: {str(err).splitlines()[0]}") from err
    return check_registered(to_experiment_config(OmegaConf.create(data))), args


def _require_gpu_backend(cfg: ExperimentConfig, what: str) -> dict[str, Any]:
    if cfg.backend.name != "gpu":
        raise ConfigError(
            f"backend.name={cfg.backend.name!r} is invalid for `eatbench {what}`; allowed: gpu "
            "(add backend=gpu and backend.model_path=<local pipeline> or backend.random_init=...)"
        )
    return cfg.backend.settings()


# ------------------------------------------------------------------------------ profile
def profile_plan(cfg: ExperimentConfig, args: ProfileArgs) -> dict[str, Any]:
    """What ``eatbench profile`` will measure: ``gpu_kind``, ``model``, ``resolutions``,
    ``ks``, ``out`` (checked, nothing started)."""
    from eatbench.experiment.runner import k_options

    kinds = sorted(set(server_kinds(cfg.cluster)))
    n_servers = len(server_kinds(cfg.cluster))
    if args.gpu_kind is not None:
        if args.gpu_kind not in cfg.cluster.gpu_kinds:
            allowed = ", ".join(sorted(cfg.cluster.gpu_kinds))
            raise ConfigError(f"profile_args.gpu_kind={args.gpu_kind!r} is invalid; allowed: {allowed}")
        gpu_kind = args.gpu_kind
    elif len(kinds) == 1:
        gpu_kind = kinds[0]
    else:
        raise ConfigError(
            f"profile_args.gpu_kind is required: cluster {cfg.cluster.name!r} has several GPU kinds "
            f"({', '.join(kinds)}); profile one kind per run, on its own devices"
        )
    ks = list(args.ks) if args.ks is not None else k_options(cfg, n_servers)
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"profile_args.ks={ks!r} is invalid; allowed: gang sizes >= 1")
    if max(ks) > n_servers:
        raise ConfigError(
            f"profile_args.ks={ks!r} is invalid; allowed: k <= the cluster's {n_servers} servers "
            "(one worker process per server)"
        )
    resolutions = list(args.resolutions) if args.resolutions is not None else list(cfg.workload.resolutions)
    if not resolutions or any(r <= 0 or r % 8 for r in resolutions):
        raise ConfigError(f"profile_args.resolutions={resolutions!r} is invalid; allowed: pixel sizes divisible by 8")
    if args.steps < 1:
        raise ConfigError(f"profile_args.steps={args.steps} is invalid; allowed: an integer >= 1")
    if args.repeats < 1:
        raise ConfigError(f"profile_args.repeats={args.repeats} is invalid; allowed: an integer >= 1")
    model = cfg.workload.model
    out = args.out or os.path.join(cfg.output.root, "profiles", f"{gpu_kind}_{model}.csv")
    return {"gpu_kind": gpu_kind, "model": model, "resolutions": resolutions, "ks": sorted(set(ks)), "out": out}


def _backend_params(params: dict[str, Any], model: str) -> dict[str, Any]:
    """The ``backend.*`` settings for a measuring backend: no images saved, and a dict
    ``model_path`` narrowed to ``model``."""
    p = dict(params)
    p["save_images"] = False
    mp = p.get("model_path")
    if isinstance(mp, dict):
        if model not in mp and "*" not in mp:
            raise ConfigError(f"backend.model_path has no entry for workload.model={model!r}; allowed: {', '.join(mp)}")
        p["model_path"] = mp.get(model, mp.get("*"))
    return p


def run_profile(cfg: ExperimentConfig, args: ProfileArgs) -> tuple[str, list[dict]]:
    """Measure the profile ``profile_plan`` describes through ``GpuBackend`` (with
    ``backend.*`` settings) and write it; returns the CSV path and the rows.

    Configuration errors (a missing model, bad backend params) stop before any worker
    process starts.
    """
    from eatbench.backends.gpu.backend import GpuBackend, resolve_devices
    from eatbench.backends.gpu.pipelines import ModelNotFoundError
    from eatbench.backends.gpu.profiler import check_gangs, measure_profile
    from eatbench.engine.backend import BackendContext
    from eatbench.engine.profiles import LatencyProfile

    params = _require_gpu_backend(cfg, "profile")
    plan = profile_plan(cfg, args)
    params = _backend_params(params, plan["model"])
    out_parent = Path(plan["out"]).resolve().parent
    if out_parent.exists() and not out_parent.is_dir():
        raise ConfigError(f"profile_args.out={plan['out']!r}: {out_parent} is not a directory")
    cluster = Cluster.uniform(max(plan["ks"]), plan["gpu_kind"], name="profile")
    context = BackendContext(cluster=cluster, profile=None, quality=None, seed=cfg.seed)
    try:  # before any worker starts: server i runs on devices[i % len(devices)]
        devices = resolve_devices(params.get("devices", "auto"))
        check_gangs(
            {i: devices[i % len(devices)] for i in range(max(plan["ks"]))}, plan["ks"], args.allow_shared_devices
        )
    except ValueError as err:
        raise ConfigError(f"profile_args.ks={plan['ks']!r}: {err}") from None
    try:
        backend = GpuBackend(context, **params)
    except ModelNotFoundError as err:
        raise ConfigError(str(err)) from err
    except TypeError as err:
        raise ConfigError(f"backend: {err}") from err
    except ValueError as err:  # bad dtype, devices, random_init, ...
        raise ConfigError(str(err)) from err
    try:
        desc = backend.describe()
        if desc.get("shared_devices") and args.allow_shared_devices:
            print(
                f"[eatbench profile] warning: k up to {max(plan['ks'])} on {len(desc['devices'])} device(s): "
                "gang members share a device; those rows are marked shared_devices=1 and are not k-way figures"
            )
        print(
            f"[eatbench profile] {plan['gpu_kind']} {plan['model']}: resolutions {plan['resolutions']}, "
            f"k {plan['ks']}, {args.steps} steps x {args.repeats} warm repeats on {desc.get('devices')}"
        )
        rows = measure_profile(
            out_csv=plan["out"],
            model=plan["model"],
            gpu_kind=plan["gpu_kind"],
            resolutions=plan["resolutions"],
            ks=plan["ks"],
            steps=args.steps,
            repeats=args.repeats,
            prompt=args.prompt,
            backend=backend,
            allow_shared_devices=args.allow_shared_devices,
        )
    finally:
        backend.close()
    # the file must load and cover what the experiment asks for
    LatencyProfile.from_csv(plan["out"]).check([plan["gpu_kind"]], plan["model"], plan["resolutions"], plan["ks"])
    return plan["out"], rows


@command("profile", "measure a latency profile CSV on real pipelines (backend=gpu)")
def profile_command(raw: DictConfig) -> str:
    cfg, args = split_config(raw, "profile_args")
    out, rows = run_profile(cfg, args)
    for r in rows:
        print(
            f"  {r['gpu_kind']} {r['model']} {r['resolution']} px k={r['k']}: step {r['step_s'] * 1e3:.1f} ms "
            f"(p10-p90 {r['step_s_p10'] * 1e3:.1f}-{r['step_s_p90'] * 1e3:.1f}), fixed {r['fixed_s']:.3f} s, "
            f"cold start {r['cold_start_s']:.2f} s"
        )
    print(f"[eatbench profile] -> {out}\n  use it with: profile=csv profile.path={out}")
    return out


# ------------------------------------------------------------------------ quality curve
def is_tiny_test_model(path: str) -> bool:
    """Whether the local pipeline at ``path`` is a tiny test architecture (UNet widths
    below 128 channels, like ``save_tiny_pipeline``'s): its weights are random or toy, so
    its image quality means nothing."""
    cfg_path = Path(path) / "unet" / "config.json"
    if not cfg_path.is_file():
        return False
    try:
        widths = json.loads(cfg_path.read_text()).get("block_out_channels") or []
    except (OSError, ValueError):
        return False
    return bool(widths) and max(widths) < 128


def quality_plan(cfg: ExperimentConfig, args: QualityArgs) -> dict[str, Any]:
    """Check ``eatbench quality-curve``'s inputs (nothing is loaded) and return the
    keyword arguments for ``measure_quality_curve``.

    Refuses random weights: ``backend.random_init``, or a tiny test pipeline.
    """
    from eatbench.backends.gpu.backend import resolve_devices
    from eatbench.backends.gpu.pipelines import ModelNotFoundError, resolve_model_path
    from eatbench.engine.workload import load_prompts

    params = _require_gpu_backend(cfg, "quality-curve")
    if params.get("random_init"):
        raise ConfigError(
            f"backend.random_init={params['random_init']!r}: random weights have no meaningful "
            "image quality, so quality-curve refuses them (a curve would be invented); give "
            "backend.model_path=<local pipeline with real weights> and random_init=null"
        )
    model = cfg.workload.model
    model_path = _backend_params(params, model).get("model_path")
    if not model_path:
        raise ConfigError("backend.model_path is required: a local pipeline directory or a cached repo id")
    try:
        path = resolve_model_path(str(model_path))
    except ModelNotFoundError as err:
        raise ConfigError(str(err)) from err
    if is_tiny_test_model(path):
        raise ConfigError(
            f"backend.model_path={model_path!r} is a tiny test pipeline (random or toy weights); "
            "quality-curve needs a real model, its curve would be meaningless"
        )
    clip = params.get("clip_model_path")
    if not clip:
        raise ConfigError("backend.clip_model_path is required: a local CLIP model directory (quality = CLIP score)")
    if not os.path.isdir(clip):
        raise ConfigError(f"backend.clip_model_path={clip!r} is not a local directory (nothing is downloaded)")
    if not args.steps or any(s < 1 for s in args.steps):
        raise ConfigError(f"quality_args.steps={args.steps!r} is invalid; allowed: step counts >= 1")
    if args.n_prompts < 1:
        raise ConfigError(f"quality_args.n_prompts={args.n_prompts} is invalid; allowed: an integer >= 1")
    resolution = args.resolution or cfg.workload.resolutions[0]
    if resolution <= 0 or resolution % 8:
        raise ConfigError(f"quality_args.resolution={resolution} is invalid; allowed: pixels divisible by 8")
    dtype = params["dtype"]  # checked with every backend setting by check_registered (split_config)
    try:
        device = resolve_devices(params.get("devices", "auto"))[0]
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if device == "cpu" and dtype == "fp16":
        dtype = "fp32"
    prompts = load_prompts(cfg.workload.prompts)[: args.n_prompts]
    return {
        "out_csv": args.out or os.path.join(cfg.output.root, "quality", f"{model}.csv"),
        "prompts": prompts,
        "steps_list": sorted(set(args.steps)),
        "clip_model_path": clip,
        "model_path": path,
        "resolution": resolution,
        "seed": cfg.seed,
        "guidance_scale": float(params.get("guidance_scale", 7.5)),
        "device": device,
        "dtype": dtype,
        "image_dir": args.image_dir,
    }


@command("quality-curve", "measure q(steps) (CLIP score) with real weights -> quality=table CSV")
def quality_curve_command(raw: DictConfig) -> str:
    from eatbench.backends.gpu.quality import measure_quality_curve

    cfg, args = split_config(raw, "quality_args")
    kw = quality_plan(cfg, args)
    print(
        f"[eatbench quality-curve] {cfg.workload.model}: steps {kw['steps_list']}, {len(kw['prompts'])} prompts, "
        f"{kw['resolution']} px on {kw['device']} ({kw['dtype']})"
    )
    rows = measure_quality_curve(**kw)
    for r in rows:
        print(f"  steps {r['steps']:>3}: CLIP {r['quality']:.2f} +- {r['quality_ci95']:.2f} (n={r['n']})")
    print(f"[eatbench quality-curve] -> {kw['out_csv']}\n  use it with: quality=table quality.path={kw['out_csv']}")
    return kw["out_csv"]


# ----------------------------------------------------------------------------- fidelity
@command("fidelity", "run one experiment on gpu and on sim; report sim-vs-real error (MAPE)")
def fidelity_command(raw: DictConfig) -> dict:
    from eatbench.experiment.fidelity import run_fidelity, write_fidelity

    cfg, args = split_config(raw, "fidelity_args")
    _require_gpu_backend(cfg, "fidelity")
    report = run_fidelity(cfg, args.seeds)
    out = args.out or os.path.join(cfg.output.root, "fidelity", cfg.experiment)
    json_path, md_path = write_fidelity(report, out)
    m = report.metrics
    print(
        f"[eatbench fidelity] {m['n_compared']} tasks over {m['seeds']} seed(s): "
        f"exec MAPE {m['exec_mape_pct']:.1f} %, mean response MAPE {m['response_mean_mape_pct']:.1f} %, "
        f"p90 response MAPE {m['response_p90_mape_pct']:.1f} % (target <= {m['target_pct']:g} %)\n"
        f"  -> {json_path}\n  -> {md_path}"
    )
    return m
