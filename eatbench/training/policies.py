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
from stable_baselines3.common.policies import BaseModel, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.sac.policies import SACPolicy
from torch import Tensor, nn

from eatbench.schedulers.rl.encoding import FEATURES
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


# -- size-agnostic token networks (ours) ------------------------------------------------


class SetActorExtractor(BaseFeaturesExtractor):
    """SB3 features extractor wrapping ``SetActorNet``: its output is already the
    Gaussian's ``[mean || log_std]``, which ``SetSACPolicy`` slices into SB3's heads."""

    def __init__(self, observation_space: gym.spaces.Box, window: int, spec: dict[str, Any]) -> None:
        from eatbench.schedulers.rl.set_networks import SetActorNet

        net = SetActorNet(window, ArchSpec(**spec))
        super().__init__(observation_space, 2 * net.action_dim)
        self.net = net

    def forward(self, observations: Tensor) -> Tensor:
        return self.net(observations)


class _Slice(nn.Module):
    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.start : self.stop]


class SetCritic(BaseModel):
    """Twin size-agnostic critics (``SetQNet``) with SB3's ``ContinuousCritic`` interface."""

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Box, window: int, spec: dict[str, Any]
    ) -> None:
        from eatbench.schedulers.rl.set_networks import SetQNet

        super().__init__(observation_space, action_space, features_extractor=FlattenExtractor(observation_space))
        arch = ArchSpec(**spec)
        self.share_features_extractor = False
        self.n_critics = 2
        self.q_networks = nn.ModuleList(SetQNet(window, arch) for _ in range(2))

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, ...]:
        return tuple(q(obs, actions) for q in self.q_networks)

    def q1_forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.q_networks[0](obs, actions)


class SetSACPolicy(SACPolicy):
    """``SACPolicy`` with the size-agnostic actor (``SetActorNet``) and critics (``SetQNet``).

    Extra policy kwargs: ``window`` (task slots) and ``spec`` (``ArchSpec`` fields)."""

    def __init__(self, *args: Any, window: int, spec: dict[str, Any], **kwargs: Any) -> None:
        self.window, self.spec = window, spec
        kwargs.update(
            features_extractor_class=SetActorExtractor,
            features_extractor_kwargs=dict(window=window, spec=spec),
            share_features_extractor=False,
        )
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None):
        actor = super().make_actor(features_extractor)
        a = actor.features_dim // 2
        actor.mu, actor.log_std = _Slice(0, a), _Slice(a, 2 * a)
        return actor.to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> SetCritic:
        return SetCritic(self.observation_space, self.action_space, self.window, self.spec).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(window=self.window, spec=self.spec)
        for key in ("features_extractor_class", "features_extractor_kwargs", "share_features_extractor"):
            data.pop(key, None)
        return data


def set_policy_kwargs(spec: ArchSpec, window: int, weight_decay: float = 0.0) -> dict[str, Any]:
    """``policy_kwargs`` for ``SAC(SetSACPolicy, ...)``."""
    return dict(
        window=window,
        spec=spec.to_dict(),
        net_arch=dict(pi=[], qf=list(spec.qf)),
        activation_fn=nn.Mish,
        optimizer_class=torch.optim.Adam,
        optimizer_kwargs=dict(weight_decay=weight_decay),
    )
