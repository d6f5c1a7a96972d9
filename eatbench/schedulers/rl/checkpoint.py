"""Policy checkpoints: the trained actor plus everything needed to check it fits a run.

A checkpoint is a ``torch.save`` of a plain dict (loaded with ``weights_only=True``):
``format``, ``arch`` (scheduler name), ``spec`` (``ArchSpec`` fields), ``layout``,
``cluster`` (name), ``n_servers``, ``window``, ``time_scale`` (s), ``k_options``,
``obs_size``, ``action_size`` and ``state_dict`` (the SB3 actor's, ``log_std`` removed).
A JSON sidecar (same stem) records how it was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eatbench.config import ConfigError

FORMAT = "eatbench-policy/1"
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "checkpoints"


class CheckpointError(ConfigError):
    """A checkpoint is unreadable, or does not fit the scheduler or the experiment."""


@dataclass
class PolicyMeta:
    """What a checkpoint was trained for (see the module docstring)."""

    arch: str
    spec: dict[str, Any]
    layout: str
    cluster: str
    n_servers: int
    window: int
    time_scale: float
    k_options: list[int]
    obs_size: int
    action_size: int


def shipped_path(arch: str, cluster: str) -> Path:
    """Where the shipped checkpoint of ``arch`` for ``cluster`` lives."""
    return SHIPPED / f"{arch}-{cluster}.pt"


def save_policy(path: str | Path, meta: PolicyMeta, actor_state: dict, sidecar: dict | None = None) -> Path:
    """Write the checkpoint (and its ``.json`` sidecar if given)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in actor_state.items() if not k.startswith("log_std")}
    torch.save({"format": FORMAT, **meta.__dict__, "state_dict": state}, path)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1, default=str))
    return path


def load_policy(path: str | Path) -> tuple[PolicyMeta, dict]:
    """Read a checkpoint; raise ``CheckpointError`` naming the file and the problem."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled code...
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable ({type(err).__name__}: {err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is not an eatbench policy (format {got!r}, want {FORMAT!r})")
    try:
        meta = PolicyMeta(**{k: blob[k] for k in PolicyMeta.__dataclass_fields__})
    except KeyError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the field {err}") from err
    return meta, blob["state_dict"]
