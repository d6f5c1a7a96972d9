"""Facts every result file carries: git revision, package versions, machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("eatbench", "numpy", "torch", "hydra-core", "gymnasium", "stable-baselines3", "diffusers", "wandb")


@functools.cache
def git_revision() -> str:
    """``HEAD``'s hash (with ``-dirty`` if the tree has changes), or ``unknown`` (also for an
    installed package: its site-packages folder is no checkout, even inside one)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # a folder in a checkout (.git/) or a worktree (.git file)
        return "unknown"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
    }


def provenance() -> dict[str, object]:
    return {"git_revision": git_revision(), "versions": package_versions(), "machine": machine()}
