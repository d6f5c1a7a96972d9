"""Pure-torch building blocks of the learned schedulers' actors (no SB3 here).

``StateEncoder`` turns a flat observation (``rows x FEATURES``, see ``eatbench.training.env``)
into the features the SAC Gaussian head reads:

- optional self-attention over the state rows (``RowAttention``): the paper's
  single-head attention of width ``FEATURES``, or a wider multi-head one;
- optional DDPM reverse chain (``DiffusionChain``): ``steps`` denoising steps, linear
  beta schedule, that turn Gaussian noise into a ``latent_dim`` latent conditioned on the
  (attended) state. The noise network is an MLP with Mish activations fed with the noisy
  latent, a sinusoidal time embedding and the condition.

Randomness of the chain: in ``train()`` mode the start latent and the per-step noise are
fresh Gaussian draws; in ``eval()`` mode they are fixed buffers drawn once from a seeded
generator and stored in the state dict, so a policy's decisions are a deterministic
function of the observation (one fixed sample of the same stochastic chain).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ArchSpec:
    """Architecture of one learned scheduler's actor.

    :param attention: ``None`` (no attention), or the per-row width of the attention.
    :param heads: attention heads (``attention`` must be divisible by it).
    :param diffusion: use the DDPM chain (else the features are the (attended) state).
    :param latent_dim: width of the chain's latent (the features the head reads).
    :param hidden: width of the noise network's two hidden layers.
    :param diffusion_steps: reverse steps of the chain.
    :param beta_start: first beta of the linear schedule.
    :param beta_end: last beta of the linear schedule.
    :param time_dim: width of the sinusoidal time embedding.
    :param pi: hidden layers of SB3's actor MLP between the features and the Gaussian head.
    :param qf: hidden layers of each plain MLP critic.
    :param tokens: size-agnostic token networks (``set_networks``, ours); ``attention``
        then only says whether the trunk attends (its width is ``embed``).
    :param embed: token embedding width (``tokens`` only).
    :param layers: attention blocks or per-token MLP layers of the token trunk.
    :param activation: ``mish`` (the paper's) or ``relu`` (about 50x cheaper on our CPUs:
        PyTorch's Mish kernel is not vectorised; the token networks use it).
    """

    attention: int | None = None
    heads: int = 1
    diffusion: bool = False
    latent_dim: int = 256
    hidden: int = 256
    diffusion_steps: int = 10
    beta_start: float = 1e-4
    beta_end: float = 0.02
    time_dim: int = 16
    pi: list[int] = field(default_factory=list)
    qf: list[int] = field(default_factory=lambda: [256, 256])
    tokens: bool = False
    embed: int = 32
    layers: int = 2
    activation: str = "mish"

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style sinusoidal embedding of (integer) diffusion times ``t``: (n,) -> (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class RowAttention(nn.Module):
    """Self-attention over the observation's rows; returns the rows (with a residual),
    flattened: (B, rows*features) -> (B, rows*dim).

    :param rows: state rows (tasks + servers + global).
    :param features: numbers per row.
    :param dim: attention width (``features`` for the paper's variant: no projection).
    :param heads: attention heads.
    """

    def __init__(self, rows: int, features: int, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.rows, self.features, self.dim = rows, features, dim
        self.proj: nn.Module = nn.Identity() if dim == features else nn.Linear(features, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out_dim = rows * dim

    def forward(self, obs: Tensor) -> Tensor:
        x = self.proj(obs.reshape(obs.shape[0], self.rows, self.features))
        a, _ = self.attn(x, x, x, need_weights=False)
        return (x + a).flatten(1)


ACTIVATIONS: dict[str, type[nn.Module]] = {"mish": nn.Mish, "relu": nn.ReLU}


class NoiseNet(nn.Module):
    """eps(x_t, t, c): MLP ``[x, emb(t), c] -> hidden -> hidden -> latent`` (Mish or ReLU)."""

    def __init__(
        self, latent_dim: int, time_dim: int, cond_dim: int, hidden: int, act: type[nn.Module] = nn.Mish
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim + time_dim + cond_dim, hidden),
            act(),
            nn.Linear(hidden, hidden),
            act(),
            nn.Linear(hidden, latent_dim),
        )

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor) -> Tensor:
        return self.net(torch.cat([x, temb, cond], dim=1))


class DiffusionChain(nn.Module):
    """DDPM reverse chain from N(0, I) to a latent, conditioned on ``cond``.

    ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) * eps(x_t, t, c)) / sqrt(alpha_t) + sigma_t z``,
    ``sigma_t^2 = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (0 at the last step).
    All schedule constants are precomputed buffers.
    """

    def __init__(self, cond_dim: int, spec: ArchSpec, noise_seed: int = 0) -> None:
        super().__init__()
        n, d = spec.diffusion_steps, spec.latent_dim
        self.steps, self.latent_dim = n, d
        betas = torch.linspace(spec.beta_start, spec.beta_end, n, dtype=torch.float64)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        var = betas * (1 - abar_prev) / (1 - abar)
        self.register_buffer("coef_x", (1 / alphas.sqrt()).float())
        self.register_buffer("coef_eps", (betas / (1 - abar).sqrt() / alphas.sqrt()).float())
        self.register_buffer("sigma", var.sqrt().float())
        self.register_buffer("temb", sinusoidal_embedding(torch.arange(n), spec.time_dim))
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("fixed_start", torch.randn(1, d, generator=g))
        self.register_buffer("fixed_noise", torch.randn(n, 1, d, generator=g))
        self.eps = NoiseNet(d, spec.time_dim, cond_dim, spec.hidden, ACTIVATIONS[spec.activation])

    def forward(self, cond: Tensor) -> Tensor:
        b = cond.shape[0]
        fixed = not self.training
        x = self.fixed_start.expand(b, -1) if fixed else torch.randn(b, self.latent_dim, device=cond.device)
        for i in reversed(range(self.steps)):
            eps = self.eps(x, self.temb[i].expand(b, -1), cond)
            x = self.coef_x[i] * x - self.coef_eps[i] * eps
            if i > 0:
                z = self.fixed_noise[i] if fixed else torch.randn_like(x)
                x = x + self.sigma[i] * z
        return x


class StateEncoder(nn.Module):
    """Observation -> actor features: [attention] then [diffusion chain].

    :param obs_dim: flat observation size (``rows * features``).
    :param features: numbers per row (``eatbench.schedulers.rl.encoding.FEATURES``).
    :param spec: the architecture.
    """

    def __init__(self, obs_dim: int, features: int, spec: ArchSpec) -> None:
        super().__init__()
        if obs_dim % features:
            raise ValueError(f"observation size {obs_dim} is not a multiple of {features} features")
        self.spec = spec
        self.attention = (
            RowAttention(obs_dim // features, features, spec.attention, spec.heads) if spec.attention else None
        )
        cond_dim = self.attention.out_dim if self.attention is not None else obs_dim
        self.chain = DiffusionChain(cond_dim, spec) if spec.diffusion else None
        self.features_dim = spec.latent_dim if spec.diffusion else cond_dim

    def forward(self, obs: Tensor) -> Tensor:
        c = self.attention(obs) if self.attention is not None else obs
        return self.chain(c) if self.chain is not None else c


def mlp(in_dim: int, hidden: list[int], act: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """``Linear + act`` layers (SB3's ``create_mlp`` layout, so state dicts match)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), act()]
        in_dim = h
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """The deterministic actor used for decisions: the encoder, SB3's ``latent_pi`` MLP and
    the mean head, squashed by tanh. Its state dict uses the keys of SB3's SAC ``Actor``
    (``features_extractor.encoder.*``, ``latent_pi.*``, ``mu.*``) so a trained actor loads
    into it without SB3.
    """

    def __init__(self, obs_dim: int, action_dim: int, features: int, spec: ArchSpec) -> None:
        super().__init__()
        self.features_extractor = nn.Module()
        self.features_extractor.encoder = StateEncoder(obs_dim, features, spec)
        fdim = self.features_extractor.encoder.features_dim
        self.latent_pi = mlp(fdim, spec.pi)
        self.mu = nn.Linear(spec.pi[-1] if spec.pi else fdim, action_dim)
        self.eval()

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.mu(self.latent_pi(self.features_extractor.encoder(obs))))


class FusedPolicy(nn.Module):
    """``PolicyNet`` rewritten for batch-1 CPU latency, same outputs (up to float rounding).

    The first noise-net layer is split: ``W [x, emb(t), c] + b = W_x x + (W_t emb(t) + b) +
    W_c c``; ``W_t emb(t) + b`` is precomputed for every step, ``W_c c`` once per decision,
    and the fixed start latent and fixed per-step noise are folded into per-step constants.
    The chain is then 3 matmuls and 2 Mish per step, with no concatenation.
    """

    def __init__(self, net: PolicyNet) -> None:
        super().__init__()
        enc = net.features_extractor.encoder
        self.attention = enc.attention
        self.latent_pi, self.mu = net.latent_pi, net.mu
        self.chain = enc.chain is not None
        if enc.chain is not None:
            ch = enc.chain
            lin1, lin2, lin3 = ch.eps.net[0], ch.eps.net[2], ch.eps.net[4]
            d, tdim = ch.latent_dim, ch.temb.shape[1]
            w1 = lin1.weight.detach()
            with torch.no_grad():
                self.register_buffer("w1x", w1[:, :d].t().contiguous())
                self.register_buffer("w1c", w1[:, d + tdim :].t().contiguous())
                tb = ch.temb @ w1[:, d : d + tdim].t() + lin1.bias  # (steps, hidden)
                self.register_buffer("tbias", tb.unsqueeze(1).contiguous())
                self.register_buffer("w2", lin2.weight.detach().t().contiguous())
                self.register_buffer("b2", lin2.bias.detach().clone())
                # x <- cx*x - ce*(h W3 + b3) + s*z  ==  cx*x + h (-ce W3) + (s*z - ce*b3)
                ce = ch.coef_eps.view(-1, 1, 1)
                self.register_buffer("w3s", (-ce * lin3.weight.detach().t().unsqueeze(0)).contiguous())
                sz = ch.sigma.view(-1, 1, 1) * ch.fixed_noise
                sz[0] = 0
                self.register_buffer("shift", (sz - ch.coef_eps.view(-1, 1, 1) * lin3.bias.detach()).contiguous())
                self.register_buffer("cx", ch.coef_x.detach().clone())
                self.register_buffer("start", ch.fixed_start.detach().clone())
            self.steps = ch.steps
            self._cx = [float(v) for v in ch.coef_x]
        self.eval()

    def forward(self, obs: Tensor) -> Tensor:
        c = self.attention(obs) if self.attention is not None else obs
        if self.chain:
            mish = nn.functional.mish
            cw = c @ self.w1c
            x = self.start.expand(obs.shape[0], -1)
            for i in range(self.steps - 1, -1, -1):
                h = mish(torch.addmm(self.tbias[i] + cw, x, self.w1x))
                h = mish(torch.addmm(self.b2, h, self.w2))
                x = torch.addmm(self.shift[i], h, self.w3s[i], alpha=1.0, beta=1.0).add_(x, alpha=self._cx[i])
            c = x
        return torch.tanh(self.mu(self.latent_pi(c)))


def compile_for_cpu(policy: nn.Module, obs_dim: int) -> nn.Module:
    """``policy`` traced and frozen with TorchScript for batch-1 CPU inference (about 1.6x
    faster than eager ``FusedPolicy`` on one thread); eager ``policy`` if tracing fails."""
    import warnings

    example = torch.zeros(1, obs_dim)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript deprecation; batch-1 shape checks in attention
            traced = torch.jit.freeze(torch.jit.trace(policy.eval(), example, check_trace=False))
            for _ in range(3):  # TorchScript optimises on the first calls (tens of ms each)
                traced(example)
        return traced
    except Exception:  # pragma: no cover - TorchScript unavailable or unsupported op
        return policy
