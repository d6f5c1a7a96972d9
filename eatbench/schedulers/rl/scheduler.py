"""Learned schedulers: a trained actor decides through the training env's own encoding
(``eatbench.schedulers.rl.encoding``).

Two families: the paper's fixed layout (``eat``, ``dsac``, ``sac``, ablations; one
checkpoint per cluster size) and the size-agnostic token networks (``eat_set``,
``dsac_set``, ``sac_set``, ``eat_nodiff_set``: ours, one checkpoint for every cluster;
``eatbench.schedulers.rl.tokens``). ``scheduler=eat`` with ``checkpoint: auto`` on a cluster without a
shipped fixed-layout checkpoint runs the size-agnostic ``eat_set`` checkpoint, and its
summary's ``scheduler_provenance`` says so.

``decide`` = ``ObservationEncoder.encode`` -> deterministic actor forward (``FusedPolicy``,
traced and frozen; fixed diffusion noise) -> ``ActionDecoder.decode``; the runner evaluates these exactly as
it evaluates the heuristics. torch is imported only when a checkpoint is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from eatbench.schedulers.base import SCHEDULERS, Scheduler, torch_on_one_thread
from eatbench.schedulers.rl.checkpoint import CheckpointError, PolicyMeta, load_policy, shipped_path

if TYPE_CHECKING:
    import numpy as np

    from eatbench.core.config import ExperimentConfig
    from eatbench.engine.loop import Decision
    from eatbench.engine.view import EngineView


class LearnedScheduler(Scheduler):
    """A trained SAC actor (EAT, DSAC, SAC or an ablation, see ``presets.ARCHS``).

    ``checkpoint: auto`` (the scheduler configs' default) loads the top-level
    ``checkpoint=...`` if given, else the shipped checkpoint for the cluster's name.

    :param steps: unused (the policy chooses the steps); kept for the common interface.
    """

    arch: str = "eat"
    tokens: bool = False  # a size-agnostic (set layout) architecture

    def __init__(self, steps: int = 20) -> None:
        super().__init__(steps)
        self.meta: PolicyMeta | None = None
        self.policy: Any = None
        self.encoder: Any = None
        self.decoder: Any = None
        self._cfg: ExperimentConfig | None = None
        self.path: str | None = None

    # -- loading ----------------------------------------------------------------------
    @classmethod
    def checkpoint_file(cls, cfg: ExperimentConfig) -> str | None:
        path = cfg.scheduler.checkpoint
        arch = getattr(cls, "arch", None)
        if path != "auto" or not arch:
            return path
        if cls.tokens:
            return str(shipped_path(arch, "any"))
        fixed = shipped_path(arch, cfg.cluster.name)
        fallback = shipped_path(f"{arch}_set", "any")
        return str(fallback if not fixed.is_file() and fallback.is_file() else fixed)

    def load_checkpoint(self, path: str, cfg: ExperimentConfig) -> None:
        """Load ``path`` (or resolve ``auto``) and check it fits ``cfg``."""
        if path == "auto":
            shipped = Path(self.checkpoint_file(cfg) or "")
            if not shipped.is_file():
                have = sorted(p.stem for p in shipped.parent.glob(f"{self.arch}-*.pt"))
                raise CheckpointError(
                    f"no shipped {self.arch} checkpoint for cluster {cfg.cluster.name!r} "
                    f"(shipped: {', '.join(have) or 'none'}); train one with "
                    f"`eatbench train scheduler={self.arch} cluster={cfg.cluster.name}` "
                    "and pass checkpoint=<run dir>/policy.pt"
                )
            path = str(shipped)
        meta, state = load_policy(path)
        self.load_state(meta, state, cfg, source=path)

    def load_state(self, meta: PolicyMeta, state: dict, cfg: ExperimentConfig, source: str = "<memory>") -> None:
        from eatbench.schedulers.rl.encoding import FEATURES, make_codec

        if meta.arch not in (self.arch, f"{self.arch}_set"):
            raise CheckpointError(f"checkpoint {source!r} holds a {meta.arch!r} policy, not {self.arch!r}")
        if meta.layout == "set":
            self._load_set(meta, state, cfg, source)
            return
        encoder, decoder = make_codec(cfg, meta.layout, meta.time_scale)
        n = encoder.n_servers
        problems = []
        if n != meta.n_servers:
            problems.append(f"it was trained for {meta.n_servers} servers, cluster {cfg.cluster.name!r} has {n}")
        if encoder.window != meta.window:
            problems.append(f"window {meta.window} != engine.window {encoder.window}")
        if encoder.size != meta.obs_size or decoder.size != meta.action_size:
            problems.append(
                f"observation/action sizes {meta.obs_size}/{meta.action_size} != "
                f"{encoder.size}/{decoder.size} (layout {meta.layout})"
            )
        if problems:
            raise CheckpointError(f"checkpoint {source!r} does not fit this experiment: " + "; ".join(problems))
        from eatbench.schedulers.rl.networks import ArchSpec, FusedPolicy, PolicyNet, compile_for_cpu

        net = PolicyNet(meta.obs_size, meta.action_size, FEATURES, ArchSpec(**meta.spec))
        state = {k: v for k, v in state.items() if not k.startswith("log_std")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {source!r}: weights do not match its architecture ({err})") from err
        self.meta, self.encoder, self.decoder, self._cfg = meta, encoder, decoder, cfg
        self.policy = compile_for_cpu(FusedPolicy(net), meta.obs_size)
        self.path = source

    def _load_set(self, meta: PolicyMeta, state: dict, cfg: ExperimentConfig, source: str) -> None:
        """A size-agnostic policy: tokens for this cluster (no padding), any server count."""

        from eatbench.engine.cluster import Cluster
        from eatbench.engine.workload import k_options
        from eatbench.schedulers.rl.networks import ArchSpec, compile_for_cpu
        from eatbench.schedulers.rl.set_networks import SetPolicyNet
        from eatbench.schedulers.rl.tokens import TOKEN, TokenActionDecoder, TokenEncoder

        e = cfg.engine
        if e.window != meta.window:
            raise CheckpointError(
                f"checkpoint {source!r} does not fit this experiment: window {meta.window} != engine.window {e.window}"
            )
        net = SetPolicyNet(meta.window, ArchSpec(**meta.spec))
        state = {k: v for k, v in state.items() if not k.startswith("log_std")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {source!r}: weights do not match its architecture ({err})") from err
        cluster = Cluster.from_config(cfg.cluster)
        self.meta, self._cfg, self.path = meta, cfg, source
        self.encoder = TokenEncoder(meta.window, None, meta.time_scale)
        self.decoder = TokenActionDecoder(meta.window, k_options(cfg, len(cluster)), e.min_steps, e.max_steps)
        # the token count is fixed for one cluster, so the network is traced for its shape
        self.policy = compile_for_cpu(net, self.encoder.n_tokens(len(cluster)) * TOKEN)

    def provenance(self) -> dict[str, object]:
        if self.meta is None or self.meta.layout != "set":
            return {}
        return {"policy_arch": self.meta.arch, "policy_layout": self.meta.layout}

    # -- deciding ---------------------------------------------------------------------
    def reset(self, seed: int, k_options: list[int]) -> None:
        super().reset(seed, k_options)
        if self.meta is None:
            raise CheckpointError(f"scheduler {self.arch!r} has no policy: set checkpoint=auto or a path")
        if self.meta.layout == "extended" and list(k_options) != list(self.meta.k_options):
            raise CheckpointError(
                f"checkpoint {self.path!r} chooses k among {self.meta.k_options}, this run allows {list(k_options)}"
            )
        self.decoder.k_options = list(k_options)
        torch_on_one_thread()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action for one observation (numpy in, numpy out)."""
        import torch

        with torch.inference_mode():
            return self.policy(torch.from_numpy(obs).unsqueeze(0))[0].numpy()

    def decide(self, view: EngineView) -> Decision | None:
        return self.decoder.decode(view, self.act(self.encoder.encode(view)))


def _register(name: str, doc: str, tokens: bool = False) -> type[LearnedScheduler]:
    attrs = {"arch": name, "tokens": tokens, "__doc__": doc}
    cls = type(f"{name.title().replace('_', '')}Scheduler", (LearnedScheduler,), attrs)
    return SCHEDULERS.register(name)(cls)


EatScheduler = _register("eat", "EAT: attention + diffusion actor, trained with SAC.")
DsacScheduler = _register("dsac", "DSAC: diffusion actor without attention, trained with SAC.")
SacScheduler = _register("sac", "Plain SAC: MLP actor.")
EatNodiffScheduler = _register("eat_nodiff", "EAT ablation: attention + MLP actor, no diffusion.")
EatWideScheduler = _register("eat_wide", "EAT ablation: 4-head width-32 attention + diffusion.")
EatSetScheduler = _register(
    "eat_set", "EAT, size-agnostic (ours): attention over task/server tokens + diffusion.", True
)
DsacSetScheduler = _register("dsac_set", "DSAC, size-agnostic (ours): DeepSets tokens + diffusion.", True)
SacSetScheduler = _register("sac_set", "SAC, size-agnostic (ours): DeepSets tokens + MLP.", True)
EatNodiffSetScheduler = _register("eat_nodiff_set", "EAT ablation, size-agnostic (ours): attention + MLP.", True)
