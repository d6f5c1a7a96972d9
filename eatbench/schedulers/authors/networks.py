"""The actors of the EAT authors' release, rebuilt from its architecture (no release code).

The release (github.com/zzf1955/EAT, ``EAT Simu/``) saves a tianshou 0.5 ``SACPolicy``
state dict; its ``actor.*`` entries are an ``ActorProb`` whose ``preprocess`` network is:

- ``eat`` (``adsac_policy.pth``): a DDPM reverse chain of 10 steps (linear betas 1e-4..0.02,
  epsilon prediction, no clipping) that turns a 256-d Gaussian sample into a 256-d feature.
  Its noise network concatenates ``[x_t (256), time embedding (16), attended state (42)]``
  and runs Linear 314-256, Mish, Linear 256-256, Mish, Linear 256-256, tanh. The time
  embedding is sinusoidal (8 sin + 8 cos) then Linear 16-32, Mish, Linear 32-16. The
  state (14 rows x 3) first goes through one single-head self-attention over the rows
  (query/key/value Linear 3-3, scores scaled by 1/sqrt(3), softmax over the rows, no
  residual), then is flattened row by row.
- ``dsac`` (``dsac_policy.pth``): the same chain without the attention (the flat state).
- ``sac`` (``sac_policy.pth``): tianshou's ``Net``: Linear 42-256, Mish, Linear 256-256, Mish.

``ActorProb`` then applies ``mu`` (Linear 256-12) and ``tanh`` (``unbounded=False``,
``max_action=1``); its ``sigma_param`` (12 x 1) is unused in evaluation, where
``SACPolicy`` takes the mean and squashes it with ``tanh`` once more. So the evaluated
action is ``tanh(tanh(mu(feature)))``, each entry in (-0.762, 0.762).

Module and buffer names follow the release's state-dict keys exactly, so
``ReleaseActor.load_state_dict(actor_state, strict=True)`` loads its checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

KINDS = ("eat", "dsac", "sac")
STATE_ROWS_PER_TASK = 3  # features per state row (task or node)
FEATURE_DIM = 256  # width of the diffusion latent / the Net output
HIDDEN = (256, 256)
TIME_DIM = 16
DIFFUSION_STEPS = 10
BETA_START, BETA_END = 1e-4, 2e-2
#: the release's per-decision draws come from one generator: the chain's start latent,
#: then one noise vector per reverse step (the last one multiplied by zero).


class SinusoidalTime(nn.Module):
    """Sinusoidal embedding of an integer step: ``[sin(t w_i), cos(t w_i)]``,
    ``w_i = exp(-i ln(10000) / (dim/2 - 1))`` for ``i < dim/2``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000.0) / (half - 1)))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RowSelfAttention(nn.Module):
    """Single-head self-attention over the state rows, width = features per row."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.scale = width**-0.5

    def forward(self, rows: Tensor) -> Tensor:  # [B, R, width]
        weights = torch.softmax(self.query(rows) @ self.key(rows).transpose(-2, -1) * self.scale, dim=-1)
        return weights @ self.value(rows)


class NoiseNet(nn.Module):
    """Predicts the noise of the latent ``x`` at step ``t`` given the state.

    :param state_dim: flattened state size (42 = (10 + 4) x 3 in the release).
    :param attention: attend over the state rows first (EAT) or not (DSAC).
    """

    def __init__(self, state_dim: int, attention: bool) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(
            SinusoidalTime(TIME_DIM), nn.Linear(TIME_DIM, 2 * TIME_DIM), nn.Mish(), nn.Linear(2 * TIME_DIM, TIME_DIM)
        )
        if attention:
            self.state_attention = RowSelfAttention(STATE_ROWS_PER_TASK)
        self.attention = attention
        layers: list[nn.Module] = []
        width = FEATURE_DIM + TIME_DIM + state_dim
        for h in HIDDEN:
            layers += [nn.Linear(width, h), nn.Mish()]
            width = h
        layers.append(nn.Linear(width, FEATURE_DIM))
        self.mid_layer = nn.Sequential(*layers)

    def condition(self, state: Tensor) -> Tensor:
        """The (attended) state, flattened row by row: ``[B, R, 3] -> [B, 3R]``."""
        if self.attention:
            state = self.state_attention(state)
        return state.reshape(state.shape[0], -1)

    def predict(self, x: Tensor, time_emb: Tensor, cond: Tensor) -> Tensor:
        """The noise estimate from the latent, the step's embedding and the condition."""
        return torch.tanh(self.mid_layer(torch.cat([x, time_emb, cond], dim=1)))

    def forward(self, x: Tensor, t: Tensor, state: Tensor) -> Tensor:  # state [B, R, 3]
        return self.predict(x, self.time_mlp(t), self.condition(state))


class DiffusionChain(nn.Module):
    """DDPM reverse chain producing the ``FEATURE_DIM`` feature (buffers as the release's).

    :param model: the noise network.
    :param steps: reverse steps.
    """

    def __init__(self, model: NoiseNet, steps: int = DIFFUSION_STEPS) -> None:
        super().__init__()
        self.model = model
        self.steps = steps
        betas = torch.linspace(BETA_START, BETA_END, steps, dtype=torch.float64).float()
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, dim=0)
        ac_prev = torch.cat([torch.ones(1), ac[:-1]])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        buffers = {
            "betas": betas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
            "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
            "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
            "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value)

    def forward(self, state: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One sample of the feature for each state row block ``[B, R, 3]``."""
        b = state.shape[0]
        model = self.model
        # the state and the step embeddings do not depend on the latent: compute them once
        # (the release recomputes them at every step, with the same result)
        cond = model.condition(state)
        time_emb = model.time_mlp(torch.arange(self.steps, dtype=torch.long))
        x = torch.randn((b, FEATURE_DIM), generator=generator)
        for i in reversed(range(self.steps)):
            eps = model.predict(x, time_emb[i].expand(b, -1), cond)
            x0 = self.sqrt_recip_alphas_cumprod[i] * x - self.sqrt_recipm1_alphas_cumprod[i] * eps
            mean = self.posterior_mean_coef1[i] * x0 + self.posterior_mean_coef2[i] * x
            noise = torch.randn((b, FEATURE_DIM), generator=generator)  # drawn at t = 0 too
            if i > 0:
                x = mean + (0.5 * self.posterior_log_variance_clipped[i]).exp() * noise
            else:
                x = mean
        return x


class _Sequential(nn.Module):
    """A holder whose ``model`` is a ``Sequential`` (tianshou's ``MLP`` naming)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MishTrunk(nn.Module):
    """tianshou's ``Net`` with two Mish hidden layers and no output layer."""

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = state_dim
        for h in HIDDEN:
            layers += [nn.Linear(width, h), nn.Mish()]
            width = h
        self.model = _Sequential(*layers)

    def forward(self, state: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.model(state.reshape(state.shape[0], -1))


class ReleaseActor(nn.Module):
    """``ActorProb`` + ``SACPolicy`` evaluation: state rows -> action in (-1, 1).

    :param kind: ``eat``, ``dsac`` or ``sac``.
    :param state_rows: queue rows + node rows (14 in the release).
    :param action_dim: 2 + queue rows (12 in the release).
    """

    def __init__(self, kind: str, state_rows: int = 14, action_dim: int = 12) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is invalid; allowed: {', '.join(KINDS)}")
        self.kind = kind
        state_dim = state_rows * STATE_ROWS_PER_TASK
        if kind == "sac":
            self.preprocess: nn.Module = MishTrunk(state_dim)
        else:
            self.preprocess = DiffusionChain(NoiseNet(state_dim, attention=kind == "eat"))
        self.mu = _Sequential(nn.Linear(FEATURE_DIM, action_dim))
        self.sigma_param = nn.Parameter(torch.zeros(action_dim, 1))  # unused in evaluation

    def forward(self, rows: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """:param rows: ``[B, state_rows, 3]`` float32. Returns ``[B, action_dim]``."""
        feature = self.preprocess(rows, generator)
        return torch.tanh(torch.tanh(self.mu(feature)))


def detect_kind(actor_state: dict) -> str | None:
    """Which release actor an ``actor.*`` state dict (prefix removed) holds, if any."""
    if "preprocess.model.state_attention.query.weight" in actor_state:
        return "eat"
    if "preprocess.betas" in actor_state:
        return "dsac"
    if "preprocess.model.model.0.weight" in actor_state:
        return "sac"
    return None


def state_dim_of(actor_state: dict) -> int | None:
    """The flattened state size a release actor state dict was built for."""
    w = actor_state.get("preprocess.model.model.0.weight")
    if w is not None:
        return int(w.shape[1])
    w = actor_state.get("preprocess.model.mid_layer.0.weight")
    if w is not None:
        return int(w.shape[1]) - FEATURE_DIM - TIME_DIM
    return None
