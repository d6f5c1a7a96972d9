"""Size-agnostic actor and critics over the token state of ``eatbench.schedulers.rl.tokens`` (ours).

Every network reads a flat observation of ``T x TOKEN`` numbers for any ``T`` (tokens
with ``present`` = 0 are padding and masked out), so one set of weights runs on any
cluster size.

- ``TokenTrunk``: per-token embedding (``embed`` wide), then ``layers`` blocks of masked
  multi-head self-attention + MLP (attention variants), or per-token MLPs only (DeepSets:
  the variants without attention).
- ``SetActorNet``: trunk -> pooled state (masked mean of the tokens || the global token)
  -> latent (the DDPM chain of ``networks.DiffusionChain`` conditioned on the pooled
  state, or an MLP) -> the Gaussian's mean and log-std of the global actions (execute,
  steps, k) from the latent, and of each task's score from that task's token and the
  latent (one shared head per task slot: permutation-equivariant over tasks).
- ``SetQNet``/``SetCritic``: twin DeepSets critics (per-token MLPs, masked mean pooling;
  attention in the critics cost 2x the update time for no gain we could measure). The
  action enters per token (each task token gets its score) and globally (execute, steps,
  k joined to the pooled state).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eatbench.schedulers.rl.networks import ACTIVATIONS, ArchSpec, DiffusionChain, mlp
from eatbench.schedulers.rl.tokens import KIND_COLUMNS, TOKEN

GLOBAL_ACTIONS = 3  # execute, steps, k


def _tokens(obs: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T*TOKEN) -> tokens (B, T, TOKEN) and padding mask (B, T), True = padding."""
    tok = obs.reshape(obs.shape[0], -1, TOKEN)
    return tok, tok[:, :, KIND_COLUMNS - 1] < 0.5


class AttentionBlock(nn.Module):
    """Pre-norm masked self-attention and a per-token MLP (ReLU), both residual."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=padding, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class TokenTrunk(nn.Module):
    """Tokens -> per-token embeddings (B, T, embed) and the pooled state (B, 2*embed).

    :param in_dim: numbers per token.
    :param embed: embedding width.
    :param attention: use masked self-attention blocks (else DeepSets: per-token MLPs).
    :param heads: attention heads.
    :param layers: attention blocks (or per-token MLP layers).
    """

    def __init__(self, in_dim: int, embed: int, attention: bool, heads: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, embed), nn.ReLU())
        if attention:
            self.blocks = nn.ModuleList(AttentionBlock(embed, heads) for _ in range(layers))
        else:
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(embed, embed), nn.ReLU()) for _ in range(layers))
        self.attention = attention
        self.out_dim = 2 * embed

    def forward(self, tok: Tensor, padding: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embed(tok)
        for block in self.blocks:
            x = block(x, padding) if self.attention else x + block(x)
        keep = (~padding).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return x, torch.cat([pooled, x[:, -1]], dim=1)


class SetActorNet(nn.Module):
    """Observation -> ``[mean || log_std]`` of the ``3 + window`` actions (see module docstring).

    :param window: task slots (the first ``window`` tokens).
    :param spec: the architecture (``spec.tokens`` must be true).
    """

    def __init__(self, window: int, spec: ArchSpec) -> None:
        super().__init__()
        self.window = window
        self.trunk = TokenTrunk(TOKEN, spec.embed, spec.attention is not None, spec.heads, spec.layers)
        cond = self.trunk.out_dim
        if spec.diffusion:
            self.chain: nn.Module | None = DiffusionChain(cond, spec)
            self.latent: nn.Module = nn.Identity()
            latent = spec.latent_dim
        else:
            self.chain = None
            self.latent = mlp(cond, spec.pi, ACTIVATIONS[spec.activation])
            latent = spec.pi[-1] if spec.pi else cond
        self.global_head = nn.Linear(latent, 2 * GLOBAL_ACTIONS)
        self.task_head = nn.Sequential(nn.Linear(spec.embed + latent, spec.embed), nn.ReLU(), nn.Linear(spec.embed, 2))
        self.action_dim = GLOBAL_ACTIONS + window

    def forward(self, obs: Tensor) -> Tensor:
        tok, padding = _tokens(obs)
        x, pooled = self.trunk(tok, padding)
        z = self.chain(pooled) if self.chain is not None else self.latent(pooled)
        g = self.global_head(z)
        w = self.window
        tasks = self.task_head(torch.cat([x[:, :w], z.unsqueeze(1).expand(-1, w, -1)], dim=2))
        mean = torch.cat([g[:, :GLOBAL_ACTIONS], tasks[:, :, 0]], dim=1)
        log_std = torch.cat([g[:, GLOBAL_ACTIONS:], tasks[:, :, 1]], dim=1)
        return torch.cat([mean, log_std], dim=1)


class SetQNet(nn.Module):
    """Q(s, a) over tokens (DeepSets): each task token carries its score, the pooled state the rest."""

    def __init__(self, window: int, spec: ArchSpec) -> None:
        super().__init__()
        self.window = window
        self.trunk = TokenTrunk(TOKEN + 1, spec.embed, False, spec.heads, 2)
        act = ACTIVATIONS[spec.activation]
        self.head = nn.Sequential(mlp(self.trunk.out_dim + GLOBAL_ACTIONS, spec.qf, act), nn.Linear(spec.qf[-1], 1))

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        tok, padding = _tokens(obs)
        score = torch.zeros_like(tok[:, :, :1])
        w = self.window
        score[:, :w, 0] = actions[:, GLOBAL_ACTIONS:] * tok[:, :w, KIND_COLUMNS - 1]
        _, pooled = self.trunk(torch.cat([tok, score], dim=2), padding)
        return self.head(torch.cat([pooled, actions[:, :GLOBAL_ACTIONS]], dim=1))


class SetPolicyNet(nn.Module):
    """The deterministic actor used for decisions: ``tanh(mean)`` of ``SetActorNet``. Its
    state dict has the keys of the SB3 actor built by ``policies.SetSACPolicy``
    (``features_extractor.net.*``)."""

    def __init__(self, window: int, spec: ArchSpec) -> None:
        super().__init__()
        self.features_extractor = nn.Module()
        self.features_extractor.net = SetActorNet(window, spec)
        self.action_dim = self.features_extractor.net.action_dim
        self.eval()

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.features_extractor.net(obs)[:, : self.action_dim])
