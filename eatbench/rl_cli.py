"""``eatbench train``: train a learned scheduler (registered with the ``eatbench`` CLI).

eatbench train scheduler=eat cluster=paper4 seed=0
eatbench train -m scheduler=eat seed=0,1,2,3,4          # several seeds (Hydra multirun)
eatbench train scheduler=dsac train.preset=paper train.total_steps=100000
eatbench run scheduler=eat checkpoint=results/train/<run>/policy.pt
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from eatbench.cli import command
from eatbench.config import ConfigError, to_experiment_config


@command("train", "train a learned scheduler (eat, dsac, sac, eat_nodiff, eat_wide)")
def train_command(raw: DictConfig) -> object:
    from eatbench.schedulers.rl.presets import ARCHS

    cfg = to_experiment_config(raw)
    if cfg.scheduler.name not in ARCHS:
        raise ConfigError(f"scheduler={cfg.scheduler.name!r} is not learned; allowed: {', '.join(ARCHS)}")
    if cfg.train.layout not in ("paper", "extended"):
        raise ConfigError(f"train.layout={cfg.train.layout!r} is invalid; allowed: paper, extended")
    if cfg.train.wandb not in ("offline", "online", "disabled"):
        raise ConfigError(f"train.wandb={cfg.train.wandb!r} is invalid; allowed: offline, online, disabled")
    from eatbench.schedulers.rl.train import train

    result = train(cfg, argv=["eatbench", "train", *sys.argv[1:]])
    last = result.curve[-1] if result.curve else {}
    print(
        f"[eatbench train] {cfg.scheduler.name} seed={cfg.seed}: {result.steps} steps in {result.wall_s:.0f} s, "
        f"eval return {last.get('eval_return', float('nan')):.1f} -> {result.policy_path}"
    )
    return last.get("eval_return")
