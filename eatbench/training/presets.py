"""Architectures of the learned schedulers and SAC hyperparameter presets.

Architectures (``ARCHS``, keyed by scheduler name):

- ``eat``: the paper's EAT actor: single-head attention of width ``FEATURES`` over the
  state rows, 10-step DDPM chain to a 256-d latent, tanh-Gaussian head.
- ``dsac``: the same diffusion actor without attention (after D2SAC).
- ``sac``: plain SAC, MLP actor 256-256.
- ``eat_nodiff``: ablation, attention then an MLP 256-256 (no diffusion).
- ``eat_wide``: ablation, 4-head attention of width 32 per row, then the chain.

All use twin plain MLP critics 256-256 with Mish.

Size-agnostic variants (ours, ``train.layout=set``; ``eatbench.schedulers.rl.set_networks``),
each with twin DeepSets token critics (MLP 128-128), ReLU throughout:

- ``eat_set``: one block of 2-head attention over 32-wide tokens, 10-step DDPM chain to a
  64-d latent (noise net 128 wide);
- ``dsac_set``: the same chain on a DeepSets trunk (no attention);
- ``sac_set``: DeepSets trunk, MLP 128-128;
- ``eat_nodiff_set``: the attention trunk, MLP 128-128 (no diffusion).
"""

from __future__ import annotations

from typing import Any

from eatbench.schedulers.rl.encoding import FEATURES
from eatbench.schedulers.rl.networks import ArchSpec

ARCHS: dict[str, ArchSpec] = {
    "eat": ArchSpec(attention=FEATURES, heads=1, diffusion=True),
    "dsac": ArchSpec(diffusion=True),
    "sac": ArchSpec(pi=[256, 256]),
    "eat_nodiff": ArchSpec(attention=FEATURES, heads=1, pi=[256, 256]),
    "eat_wide": ArchSpec(attention=32, heads=4, diffusion=True),
}
_SET = dict(tokens=True, embed=32, heads=2, layers=1, latent_dim=64, hidden=128, qf=[128, 128], activation="relu")
ARCHS.update(
    {
        "eat_set": ArchSpec(attention=32, diffusion=True, **_SET),
        "dsac_set": ArchSpec(attention=None, diffusion=True, **_SET),
        "sac_set": ArchSpec(attention=None, pi=[128, 128], **_SET),
        "eat_nodiff_set": ArchSpec(attention=32, pi=[128, 128], **_SET),
    }
)
SET_ARCHS = tuple(name for name, spec in ARCHS.items() if spec.tokens)

# The release's values. SB3 >= 2.7 supports n-step returns for off-policy algorithms
# (``n_steps`` -> NStepReplayBuffer); alpha is a fixed entropy coefficient.
PAPER: dict[str, Any] = dict(
    learning_rate=3e-4,
    weight_decay=5e-3,
    gamma=0.95,
    tau=0.005,
    ent_coef=0.05,
    n_steps=3,
    batch_size=512,
    buffer_size=1_000_000,
    learning_starts=1000,
    train_freq=1,
    gradient_steps=1,
)

#: SB3 SAC keyword arguments per preset (``weight_decay`` goes to the Adam optimisers).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": PAPER,
    # tuned: for 1 CPU thread and a training budget of minutes. Provenance (2026-11-27, 2
    # shared cores, load ~4): with the EAT actor on paper4, `paper` (batch 512, 1 update per
    # env step) ran 5.1 env steps/s after learning_starts, `tuned` (batch 128, 1 update per
    # 2 env steps) 22.9 env steps/s, i.e. ~4.5x more experience per wall-clock minute; every
    # gradient step backpropagates through the 10-step chain twice (actor loss and target
    # action), which dominates. lr 1e-3 / tau 0.01 to learn faster in a short run; no weight
    # decay (it shrinks the rarely-updated chain weights). gamma, alpha and 3-step returns
    # are the paper's. Only these two settings were measured; nothing else was searched.
    "tuned": {
        **PAPER,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "tau": 0.01,
        "batch_size": 128,
        "buffer_size": 100_000,
        "learning_starts": 500,
        "train_freq": 2,
    },
    # set: the size-agnostic token networks with train.n_envs envs side by side; one
    # gradient step per vector step (update-to-data ratio 1/n_envs). Measured: see README
    # ("Training speed") and benchmarks/bench_speed.py's training group.
    "set": {
        **PAPER,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "tau": 0.01,
        "batch_size": 128,
        "buffer_size": 200_000,
        "learning_starts": 2000,
        "train_freq": 1,
    },
}


def arch_for(name: str) -> ArchSpec:
    if name not in ARCHS:
        raise ValueError(f"no learned architecture {name!r}; allowed: {', '.join(ARCHS)}")
    return ARCHS[name]


def sac_kwargs(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's SAC keyword arguments with ``overrides`` (``train.params``) applied."""
    if preset not in PRESETS:
        raise ValueError(f"train.preset={preset!r} is invalid; allowed: {', '.join(PRESETS)}")
    kw = dict(PRESETS[preset])
    unknown = set(overrides or {}) - set(kw)
    if unknown:
        raise ValueError(f"train.params: unknown keys {sorted(unknown)}; allowed: {', '.join(kw)}")
    kw.update(overrides or {})
    return kw
