"""``eatbench train``: train a learned scheduler (registered with the ``eatbench`` CLI).

eatbench train scheduler=eat cluster=paper4 seed=0
eatbench train -m scheduler=eat seed=0,1,2,3,4          # several seeds (Hydra multirun)
eatbench train scheduler=dsac train.preset=paper train.total_steps=100000
eatbench run scheduler=eat checkpoint=results/train/<run>/policy.pt
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from omegaconf import DictConfig

from eatbench.core.commands import command
from eatbench.core.config import ConfigError, ExperimentConfig, to_experiment_config


def check_train(cfg: ExperimentConfig) -> None:
    """Training settings beyond ``validate``: a learned scheduler, a known preset and
    ``train.params`` keys and values of the preset's types."""
    from eatbench.training.presets import ARCHS, sac_kwargs

    if cfg.scheduler.name not in ARCHS:
        raise ConfigError(f"scheduler={cfg.scheduler.name!r} is not learned; allowed: {', '.join(ARCHS)}")
    try:
        preset = sac_kwargs(cfg.train.preset)
        sac_kwargs(cfg.train.preset, dict(cfg.train.params))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    for key, value in cfg.train.params.items():
        default = preset[key]
        if key == "ent_coef" and isinstance(value, str) and value.startswith("auto"):
            continue  # SB3's learned entropy coefficient ("auto" or "auto_<initial value>")
        if isinstance(default, int) and not isinstance(default, bool):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            allowed = "an integer >= 0"
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            allowed = "a finite number >= 0"
        if not ok:
            raise ConfigError(f"train.params.{key}={value!r} is invalid; allowed: {allowed} (preset: {default!r})")
    if cfg.backend.name != "sim":
        raise ConfigError(
            f"backend={cfg.backend.name!r} is invalid for training; allowed: sim (training steps the simulated "
            "engine; evaluate the trained policy on real GPUs with eatbench run backend=gpu)"
        )
    out = Path(cfg.train.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.out_dir={cfg.train.out_dir!r} is invalid (it is a file); allowed: a folder path")
    if cfg.train.export and Path(cfg.train.export).is_dir():
        raise ConfigError(f"train.export={cfg.train.export!r} is invalid (it is a folder); allowed: a file path (.pt)")
    for key in ("batch_size", "buffer_size", "train_freq"):
        if key in cfg.train.params and cfg.train.params[key] < 1:
            raise ConfigError(f"train.params.{key}={cfg.train.params[key]!r} is invalid; allowed: an integer >= 1")


@command("train", "train a learned scheduler (eat, dsac, sac, eat_nodiff, eat_wide)", check=check_train)
def train_command(raw: DictConfig) -> object:
    cfg = to_experiment_config(raw)
    check_train(cfg)
    from eatbench.training.train import train

    result = train(cfg, argv=["eatbench", "train", *sys.argv[1:]])
    last = result.curve[-1] if result.curve else {}
    print(
        f"[eatbench train] {cfg.scheduler.name} seed={cfg.seed}: {result.steps} steps in {result.wall_s:.0f} s, "
        f"eval return {last.get('eval_return', float('nan')):.1f} -> {result.policy_path}"
    )
    return last.get("eval_return")
