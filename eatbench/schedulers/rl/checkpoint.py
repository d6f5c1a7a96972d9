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
    _check_meta(meta, str(path))
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {str(path)!r}: state_dict is invalid; allowed: a dict of tensors")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: weights {name} hold NaN or infinity; allowed: finite weights "
                "(the training diverged: retrain, e.g. with a lower train.params.learning_rate)"
            )
    return meta, state


def _check_meta(meta: PolicyMeta, source: str) -> None:
    """Raise ``CheckpointError`` naming the first field of ``meta`` with an invalid value."""
    import math

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    checks = {
        "n_servers": (is_int(meta.n_servers) and meta.n_servers >= 1, "an integer >= 1"),
        "window": (is_int(meta.window) and meta.window >= 1, "an integer >= 1"),
        "obs_size": (is_int(meta.obs_size) and meta.obs_size >= 1, "an integer >= 1"),
        "action_size": (is_int(meta.action_size) and meta.action_size >= 1, "an integer >= 1"),
        "time_scale": (
            isinstance(meta.time_scale, (int, float))
            and not isinstance(meta.time_scale, bool)
            and math.isfinite(meta.time_scale)
            and meta.time_scale > 0,
            "seconds, a finite number > 0",
        ),
        "k_options": (
            isinstance(meta.k_options, list)
            and bool(meta.k_options)
            and all(is_int(k) and k >= 1 for k in meta.k_options),
            "a non-empty list of integers >= 1",
        ),
        "layout": (meta.layout in ("paper", "extended"), "paper, extended"),
        "spec": (isinstance(meta.spec, dict), "a dict of ArchSpec fields"),
    }
    for name, (ok, allowed) in checks.items():
        if not ok:
            raise CheckpointError(
                f"checkpoint {source!r}: {name}={getattr(meta, name)!r} is invalid; allowed: {allowed}"
            )
