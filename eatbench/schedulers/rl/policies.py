"""SB3 glue: the actor-only features extractor and a SAC policy whose critics are plain
MLPs on (state, action).

SB3's SAC builds the critic with its own copy of the actor's extractor class even when
``share_features_extractor=False``; ``ActorOnlyExtractorPolicy.make_critic`` gives it a
``FlattenExtractor`` instead, so the twin critics never see the attention or the chain,
and the critic optimiser holds none of the actor extractor's parameters.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.sac.policies import SACPolicy
from torch import Tensor, nn

from eatbench.env import FEATURES
from eatbench.schedulers.rl.networks import ArchSpec, StateEncoder


class EncoderExtractor(BaseFeaturesExtractor):
    """SB3 features extractor wrapping ``StateEncoder`` (attention and/or diffusion).

    :param observation_space: the env's flat Box observation space.
    :param spec: the actor architecture, as a dict of ``ArchSpec`` fields.
    """

    def __init__(self, observation_space: gym.spaces.Box, spec: dict[str, Any]) -> None:
        arch = ArchSpec(**spec)
        encoder = StateEncoder(int(observation_space.shape[0]), FEATURES, arch)
        super().__init__(observation_space, encoder.features_dim)
        self.encoder = encoder

    def forward(self, observations: Tensor) -> Tensor:
        return self.encoder(observations)


class ActorOnlyExtractorPolicy(SACPolicy):
    """``SACPolicy`` whose critic (and target critic) use a plain ``FlattenExtractor``."""

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, FlattenExtractor(self.observation_space))
        return ContinuousCritic(**kwargs).to(self.device)


def policy_kwargs(spec: ArchSpec, weight_decay: float = 0.0) -> dict[str, Any]:
    """``policy_kwargs`` for ``SAC(ActorOnlyExtractorPolicy, ...)`` with this architecture
    (Mish activations, plain MLP critics ``spec.qf``, Adam with ``weight_decay``)."""
    kw: dict[str, Any] = dict(
        net_arch=dict(pi=list(spec.pi), qf=list(spec.qf)),
        activation_fn=nn.Mish,
        share_features_extractor=False,
        optimizer_class=torch.optim.Adam,
        optimizer_kwargs=dict(weight_decay=weight_decay),
    )
    if spec.attention or spec.diffusion:
        kw.update(features_extractor_class=EncoderExtractor, features_extractor_kwargs=dict(spec=spec.to_dict()))
    return kw
