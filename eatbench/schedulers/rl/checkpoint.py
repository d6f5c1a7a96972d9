"""Policy checkpoints: the trained actor plus everything needed to check it fits a run.

A checkpoint is a ``torch.save`` of a plain dict (loaded with ``weights_only=True``):
``format``, ``arch`` (scheduler name), ``spec`` (``ArchSpec`` fields), ``layout``,
``cluster`` (name), ``n_servers``, ``window``, ``time_scale`` (s), ``k_options``,
``obs_size``, ``action_size`` and ``state_dict`` (the SB3 actor's, ``log_std`` removed).
A JSON sidecar (same stem) records how it was trained.

Training checkpoints (``write_step_checkpoint`` / ``find_step_checkpoint``) are folders
``<root>/step-<N>/`` holding the files of one consistent training state plus
``manifest.json`` (step, progress, and the SHA-256 and size of every file). A folder is
written as ``.tmp-step-<N>-<pid>/``, flushed to disk, then renamed: a crash leaves the
previous complete checkpoint and at worst a ``.tmp-*`` folder, which the next run removes.
Older checkpoints are deleted only after the new one is in place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eatbench.core.config import ConfigError

FORMAT = "eatbench-policy/1"
TRAIN_FORMAT = "eatbench-train-checkpoint/1"
MANIFEST = "manifest.json"
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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, **meta.__dict__, "state_dict": state}, tmp)
    _fsync(tmp)
    os.replace(tmp, path)  # atomically: a crash leaves the old file or the new one
    if sidecar is not None:
        side = path.with_suffix(".json")
        tmp = side.with_name(f".{side.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(sidecar, indent=1, default=str))
        _fsync(tmp)
        os.replace(tmp, side)
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
        "n_servers": (
            is_int(meta.n_servers) and (meta.n_servers >= 1 or (meta.n_servers == 0 and meta.layout == "set")),
            "an integer >= 1 (0: any, for layout set)",
        ),
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
        "layout": (meta.layout in ("paper", "extended", "set"), "paper, extended, set"),
        "spec": (isinstance(meta.spec, dict), "a dict of ArchSpec fields"),
    }
    for name, (ok, allowed) in checks.items():
        if not ok:
            raise CheckpointError(
                f"checkpoint {source!r}: {name}={getattr(meta, name)!r} is invalid; allowed: {allowed}"
            )


# -- training checkpoints ------------------------------------------------------------------


def fault_point(point: str, **info: Any) -> None:
    """Called at the points where a crash is most harmful (crash tests replace it with a
    function that raises, to kill training there). Does nothing."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _step_of(path: Path) -> int | None:
    name = path.name.removeprefix(".old-")
    if not name.startswith("step-"):
        return None
    try:
        return int(name.removeprefix("step-"))
    except ValueError:
        return None


def write_step_checkpoint(
    root: str | Path, step: int, files: dict[str, Callable[[Path], None]], state: dict[str, Any]
) -> Path:
    """Write one training checkpoint atomically and return its folder.

    :param root: the folder holding the step folders.
    :param step: the env step the state belongs to.
    :param files: file name -> a function writing that file to the path it is given.
    :param state: JSON-serialisable progress (finite numbers only) stored in the manifest.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:09d}"
    tmp = root / f".tmp-step-{step:09d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    sums = {}
    for name, write in files.items():
        write(tmp / name)
        _fsync(tmp / name)
        sums[name] = {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
        fault_point("file-written", name=name, step=step)
    manifest = {"format": TRAIN_FORMAT, "step": step, "files": sums, **state}
    text = json.dumps(manifest, indent=1, allow_nan=False)
    (tmp / MANIFEST).write_text(text)
    _fsync(tmp / MANIFEST)
    _fsync(tmp)
    fault_point("manifest-written", step=step)
    old = None
    if final.exists():  # the same step again (e.g. a final evaluation added): swap it out first
        old = root / f".old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync(root)
    fault_point("renamed", step=step)
    for other in root.iterdir():
        if other != final and other.is_dir() and _step_of(other) is not None:
            shutil.rmtree(other, ignore_errors=True)
    return final


def _finite_json(text: str) -> Any:
    def bad(name: str) -> Any:
        raise ValueError(f"{name} is not allowed (numbers must be finite)")

    return json.loads(text, parse_constant=bad)


def verify_step_checkpoint(path: Path) -> dict[str, Any]:
    """The manifest of the checkpoint folder ``path``, after checking that it is complete:
    every file present with its recorded size and SHA-256, finite progress values."""
    problem = None
    manifest: dict[str, Any] = {}
    try:
        manifest = _finite_json((path / MANIFEST).read_text())
    except FileNotFoundError:
        problem = f"{MANIFEST} is missing"
    except ValueError as err:
        problem = f"{MANIFEST} is unreadable ({err})"
    if problem is None:
        if not isinstance(manifest, dict) or manifest.get("format") != TRAIN_FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            problem = f"{MANIFEST} has format {got!r}, want {TRAIN_FORMAT!r}"
        elif manifest.get("step") != _step_of(path):
            problem = f"{MANIFEST} says step {manifest.get('step')!r}, the folder step {_step_of(path)}"
        else:
            for name, want in (manifest.get("files") or {}).items():
                f = path / name
                if not f.is_file():
                    problem = f"{name} is missing"
                elif f.stat().st_size != want.get("bytes"):
                    problem = f"{name} has {f.stat().st_size} bytes, the manifest {want.get('bytes')}"
                elif _sha256(f) != want.get("sha256"):
                    problem = f"{name} does not match its SHA-256 in the manifest (a damaged file)"
                if problem:
                    break
            wall = manifest.get("wall_s")
            if problem is None and not (isinstance(wall, (int, float)) and math.isfinite(wall) and wall >= 0):
                problem = f"wall_s={wall!r} is invalid; allowed: seconds >= 0"
            if problem is None and not isinstance(manifest.get("eval_curve"), list):
                problem = "its curve is missing"
            for key in ("episodes", "eval_index"):
                v = manifest.get(key, 0)
                if problem is None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    problem = f"{key}={v!r} is invalid; allowed: an integer >= 0"
    if problem is not None:
        raise CheckpointError(
            f"training checkpoint {str(path)!r} is inconsistent: {problem}; allowed: a complete checkpoint. "
            f"Delete that folder to start this run over (or set train.resume=false)"
        )
    return manifest


def find_step_checkpoint(root: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint folder under ``root`` and its verified manifest, or ``None``.
    Removes ``.tmp-*`` folders of interrupted writes (saying so); raises
    ``CheckpointError`` if the newest checkpoint is inconsistent."""
    root = Path(root)
    if not root.is_dir():
        return None
    for stale in sorted(root.glob(".tmp-step-*")):
        print(f"[eatbench train] removing {stale}, a checkpoint whose write was interrupted", file=sys.stderr)
        shutil.rmtree(stale, ignore_errors=True)
    found = [(step, not p.name.startswith(".old-"), p) for p in root.iterdir() if (step := _step_of(p)) is not None]
    if not found:
        return None
    _, _, newest = max(found)
    manifest = verify_step_checkpoint(newest)
    for _, _, other in found:  # older complete ones, left by a crash before their deletion
        if other != newest:
            shutil.rmtree(other, ignore_errors=True)
    return newest, manifest
