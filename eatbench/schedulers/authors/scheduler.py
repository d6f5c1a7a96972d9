"""The EAT authors' released actors as schedulers: ``authors_eat``, ``authors_dsac``,
``authors_sac``.

The user supplies the release's checkpoint (``scheduler.checkpoint=/path/to/adsac_policy.pth``,
or a folder holding the release's file names, by default ``$EATBENCH_EAT_RELEASE``; the
release has no licence, so nothing of it ships here). ``decide`` builds the release's
observation (``observation.py``), runs the actor with fresh diffusion noise from a
generator seeded by the experiment seed (``networks.py``), and decodes the action as the
release does (``decode.py``). The checkpoint's SHA-256 goes into ``summary.json``
(``scheduler_provenance``); its contents also key the run's result folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eatbench.core.config import server_kinds
from eatbench.schedulers.authors.decode import decode
from eatbench.schedulers.authors.observation import ReleaseObservation
from eatbench.schedulers.base import SCHEDULERS, Scheduler, torch_on_one_thread
from eatbench.schedulers.rl.checkpoint import FORMAT as EATBENCH_FORMAT
from eatbench.schedulers.rl.checkpoint import CheckpointError

if TYPE_CHECKING:
    from eatbench.core.config import ExperimentConfig
    from eatbench.engine.loop import Decision
    from eatbench.engine.view import EngineView

RELEASE_REPO = "https://github.com/zzf1955/EAT"
RELEASE_FILES = {
    "eat": "EAT Simu/res_policy/2_0.05_0.05_4_10_[1, 2, 4]/adsac_policy.pth",
    "dsac": "EAT Simu/res_policy/2_0.05_0.05_4_10_[1, 2, 4]/dsac_policy.pth",
    "sac": "EAT Simu/res_policy/2_0.05_0.05_4_10_[1, 2, 4]/sac_policy.pth",
}
KIND_NAMES = {"eat": "EAT (adsac)", "dsac": "DSAC", "sac": "SAC"}


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def actor_state_of(blob: Any, source: str) -> dict:
    """The ``actor.*`` entries (prefix removed) of a release ``SACPolicy`` state dict; a
    bare actor state dict is accepted as is. Raises ``CheckpointError`` otherwise."""
    if isinstance(blob, dict) and blob.get("format") == EATBENCH_FORMAT:
        raise CheckpointError(
            f"checkpoint {source!r} is an eatbench policy ({blob.get('arch')!r}), not the EAT authors' release: "
            f"use scheduler={blob.get('arch')} for it"
        )
    if not isinstance(blob, dict) or not all(hasattr(v, "shape") for v in blob.values()):
        raise CheckpointError(f"checkpoint {source!r} is not a state dict (got {type(blob).__name__})")
    actor = {k[len("actor.") :]: v for k, v in blob.items() if k.startswith("actor.")}
    if not actor and "mu.model.0.weight" in blob:
        actor = dict(blob)
    if not actor:
        raise CheckpointError(
            f"checkpoint {source!r} holds no release actor (no 'actor.*' keys of a tianshou SACPolicy state dict)"
        )
    return actor


class AuthorsScheduler(Scheduler):
    """One of the release's trained actors (``kind``: eat, dsac or sac). The policy chooses
    the steps, so it takes no ``steps`` parameter."""

    kind: str = "eat"

    def __init__(self) -> None:
        super().__init__()
        self.actor: Any = None
        self.observer: ReleaseObservation | None = None
        self.path: str | None = None
        self.sha256: str | None = None
        self.generator: Any = None

    @classmethod
    def release_file(cls, path: str) -> str:
        """``path``, or the release's file name for this actor inside ``path`` if it is a folder."""
        return str(Path(path) / Path(RELEASE_FILES[cls.kind]).name) if Path(path).is_dir() else path

    @classmethod
    def checkpoint_file(cls, cfg: ExperimentConfig) -> str | None:
        path = cfg.scheduler.checkpoint
        return None if path in (None, "auto") else cls.release_file(path)

    def _missing(self) -> str:
        return (
            f"scheduler {self.registry_name!r} runs the EAT authors' released {KIND_NAMES[self.kind]} actor: "
            f"set scheduler.checkpoint=/path/to/{Path(RELEASE_FILES[self.kind]).name} (or a folder holding it, or "
            f"EATBENCH_EAT_RELEASE=<that folder>; from {RELEASE_REPO}, "
            f"file '{RELEASE_FILES[self.kind]}'; see the README, section 'The authors' policies')"
        )

    def load_checkpoint(self, path: str, cfg: ExperimentConfig) -> None:
        """Load the release checkpoint at ``path`` and check it fits ``cfg``."""
        import torch

        from eatbench.schedulers.authors.networks import ReleaseActor, detect_kind, state_dim_of

        if path == "auto":
            raise CheckpointError(f"scheduler.checkpoint='auto' is invalid here; {self._missing()}")
        path = self.release_file(path)
        if not Path(path).is_file():
            raise CheckpointError(f"checkpoint {path!r} does not exist; {self._missing()}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, not a torch file, pickled code...
            raise CheckpointError(f"checkpoint {path!r} is unreadable ({type(err).__name__}: {err})") from err
        actor = actor_state_of(blob, path)
        kind = detect_kind(actor)
        if kind != self.kind:
            what = f"the release's {KIND_NAMES[kind]} actor" if kind else "no release actor this suite knows"
            hint = f"; use scheduler=authors_{kind}" if kind else ""
            raise CheckpointError(
                f"checkpoint {path!r} holds {what}, not {KIND_NAMES[self.kind]} "
                f"(expected {Path(RELEASE_FILES[self.kind]).name}){hint}"
            )
        n, window = len(server_kinds(cfg.cluster)), cfg.engine.window
        mu = actor.get("mu.model.0.weight")
        got_rows = int(mu.shape[0]) - 2 if mu is not None and mu.dim() == 2 else None
        if got_rows is not None and got_rows != window:
            raise CheckpointError(
                f"checkpoint {path!r} was trained with a queue of {got_rows} rows; engine.window={window} is invalid "
                f"for it; allowed: {got_rows}"
            )
        want = 3 * (window + n)
        got = state_dim_of(actor)
        if got != want:
            raise CheckpointError(
                f"checkpoint {path!r} was trained on a {got}-number state; this run's state has {want} "
                f"(3 x (engine.window={window} + {n} servers)): the release's actors need 10 queue rows and 4 servers "
                "(cluster=paper4)"
            )
        if cfg.workload.k_choices is None:
            raise CheckpointError(
                "workload.k_choices=None is invalid for the release's policies; allowed: a list (the release draws "
                "each task's k, the policy does not choose it)"
            )
        net = ReleaseActor(self.kind, state_rows=window + n, action_dim=2 + window)
        try:
            net.load_state_dict(actor, strict=True)
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint {path!r}: weights do not match the release's {KIND_NAMES[self.kind]} actor ({err})"
            ) from err
        net.eval()
        w = cfg.workload
        lag = w.slot if w.arrival == "bernoulli" else 0.0
        self.actor = net
        self.observer = ReleaseObservation(window, n, stamp_lag=lag)
        self.path = str(path)
        self.sha256 = sha256_of(path)

    def provenance(self) -> dict[str, object]:
        return {
            "checkpoint": self.path,
            "checkpoint_sha256": self.sha256,
            "release": RELEASE_REPO,
            "release_file": RELEASE_FILES[self.kind],
        }

    def reset(self, seed: int, k_options: list[int]) -> None:
        super().reset(seed, k_options)
        if self.actor is None:
            raise CheckpointError(self._missing())
        import torch

        torch_on_one_thread()
        self.generator = torch.Generator().manual_seed(int(seed))

    def act(self, rows: Any) -> Any:
        """The actor's action (numpy ``2 + window``) for the release state ``rows``."""
        import torch

        with torch.inference_mode():
            return self.actor(torch.from_numpy(rows).unsqueeze(0), self.generator)[0].numpy()

    def decide(self, view: EngineView) -> Decision | None:
        observer = self.observer
        assert observer is not None, "reset() first"
        # every action is a wait when no visible task fits the idle servers: skip the actor
        n_idle = len(view.idle_servers())
        if not any((t.k or 0) <= n_idle for t in view.visible()[: observer.queue_rows]):
            return None
        return decode(view, self.act(observer.encode(view)), observer.queue_rows)


def _register(kind: str, doc: str) -> type[AuthorsScheduler]:
    name = f"authors_{kind}"
    cls = type(f"Authors{kind.title()}Scheduler", (AuthorsScheduler,), {"kind": kind, "__doc__": doc})
    return SCHEDULERS.register(name)(cls)


AuthorsEatScheduler = _register("eat", "The EAT authors' released EAT actor (adsac_policy.pth).")
AuthorsDsacScheduler = _register("dsac", "The EAT authors' released DSAC actor (dsac_policy.pth).")
AuthorsSacScheduler = _register("sac", "The EAT authors' released SAC actor (sac_policy.pth).")
