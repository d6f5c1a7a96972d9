"""Installable and extensible: a built wheel, installed into a fresh environment, runs an
experiment from an unrelated directory (its configs are package data, found as
``pkg://eatbench.conf``); a scheduler defined outside the package runs through
``hydra.searchpath=[file://DIR] scheduler=mine`` with no edit inside eatbench."""

from __future__ import annotations

import csv
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from eatbench.core.config import ConfigError
from eatbench.experiment.compose import PACKAGE_DIR, REPO_ROOT, compose_experiment

#: a small experiment: 8 tasks of the default cluster and workload, one seed
TINY = ["workload.n_tasks=8", "seed=0"]

SCHEDULER_MODULE = '''\
"""A scheduler of one's own, outside eatbench: the newest visible task first, fixed steps."""

from eatbench.engine.loop import Decision
from eatbench.schedulers import Scheduler


class NewestFirst(Scheduler):
    def decide(self, engine):
        for task in sorted(engine.visible(), key=lambda t: -t.arrival):
            for k in self.ks_for(task):
                servers = engine.default_servers(k, task.model)
                if servers is not None:
                    return Decision(task.id, self.steps, servers)
        return None
'''


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: offline, no PYTHONPATH pointing at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EATBENCH_CONF")}
    return {**env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONNOUSERSITE": "1", **extra}


def _records(out: Path) -> list[dict[str, str]]:
    (path,) = out.glob("*/*/*/seed=*/records.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


def _out_of_tree_scheduler(tmp_path: Path, target: str = "my_pkg.my_sched.NewestFirst") -> tuple[Path, Path]:
    """``(code dir, config dir)``: ``my_pkg/my_sched.py`` and ``scheduler/mine.yaml``."""
    code, conf = tmp_path / "code", tmp_path / "myconf"
    (code / "my_pkg").mkdir(parents=True)
    (code / "my_pkg" / "__init__.py").write_text("")
    (code / "my_pkg" / "my_sched.py").write_text(SCHEDULER_MODULE)
    (conf / "scheduler").mkdir(parents=True)
    (conf / "scheduler" / "mine.yaml").write_text(f"_target_: {target}\nname: mine\nparams: {{steps: 13}}\n")
    return code, conf


def test_out_of_tree_scheduler_runs_through_the_search_path(tmp_path: Path) -> None:
    code, conf = _out_of_tree_scheduler(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    # the scheduler's module is importable (PYTHONPATH); eatbench is the checkout under test
    env = _clean_env(PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(code)]))
    cmd = [sys.executable, "-m", "eatbench.cli", "run", f"hydra.searchpath=[file://{conf}]", "scheduler=mine"]
    proc = subprocess.run([*cmd, *TINY, "output.root=out"], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    records = _records(work / "out")
    assert len(records) == 8 and {r["status"] for r in records} == {"done"}
    assert {r["steps"] for r in records} == {"13"}  # its own parameter, on every launch
    # newest first: while tasks queue up, a later arrival starts before an earlier one
    by_arrival = sorted(records, key=lambda r: float(r["arrival"]))
    assert any(float(a["start"]) > float(b["start"]) for a, b in zip(by_arrival, by_arrival[1:], strict=False))
    (summary,) = (work / "out").glob("*/mine/*/seed=0/summary.json")
    config = json.loads(summary.read_text())["config"]["scheduler"]
    assert config == {
        "name": "mine",
        "params": {"steps": 13},
        "checkpoint": None,
        "_target_": "my_pkg.my_sched.NewestFirst",
    }


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("no_such_pkg.mod.Sched", "ModuleNotFoundError"),
        ("eatbench.schedulers.heuristics.NoSuchClass", "AttributeError"),
        ("collections.OrderedDict", "is not a eatbench.schedulers.base.Scheduler subclass"),
        ("NoDots", ""),
    ],
)
def test_a_bad_target_is_refused_naming_the_field(target: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose_experiment([f"scheduler._target_={target}", "scheduler.name=mine"])
    assert f"scheduler._target_={target!r} is invalid" in str(err.value)
    assert why in str(err.value) and "allowed: the import path package.module.Class" in str(err.value)


def test_a_target_may_not_take_a_built_in_name() -> None:
    target = "eatbench.schedulers.heuristics.FifoScheduler"
    with pytest.raises(ConfigError, match=r"scheduler.name='greedy' is invalid with scheduler._target_="):
        compose_experiment([f"scheduler._target_={target}", "scheduler.name=greedy"])
    # a built-in class by its path under its own name is the same class: accepted
    assert compose_experiment([f"scheduler._target_={target}", "scheduler.name=fifo"]).scheduler.name == "fifo"


def test_a_built_wheel_runs_an_experiment_from_an_unrelated_directory(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources (nothing written into the checkout),
    install it into a fresh virtual environment whose dependencies come from this one's
    site-packages (offline: no index), and run ``eatbench run`` where there is no conf/."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(PACKAGE_DIR, src / "eatbench", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    env = _clean_env(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)]
    proc = subprocess.run(build, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dist.glob("eatbench-*.whl")

    # the environment inside a clone (as `.venv` often is): its HEAD is not the installed code's
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "a clone"], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the dependencies (torch, hydra, ...) from this environment, after the venv's own
    # site-packages, without running its .pth files (so no editable eatbench comes along)
    Path(purelib, "_eatbench_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)]
    proc = subprocess.run(install, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import eatbench.experiment.compose as c; print(c.conf_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv)  # the installed copy, not this checkout
    # the default workload and the trace workload (its CSV is package data too), in one -m run
    run = [str(venv / "bin" / "eatbench"), "run", "-m", "workload=paper,trace", "scheduler=fifo", *TINY]
    proc = subprocess.run(
        [*run, "hydra/launcher=basic", "output.root=out"], cwd=work, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summaries = sorted((work / "out").glob("default/fifo/*/seed=0/summary.json"))
    assert len(summaries) == 2
    assert sorted(json.loads(p.read_text())["config"]["workload"]["name"] for p in summaries) == ["paper", "trace"]
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    # an installed copy has no git history (not the HEAD of the clone its environment sits in)
    assert json.loads(summaries[0].read_text())["git_revision"] == "unknown"

    # the same records as this checkout gives for the same experiment
    from eatbench.cli import main

    here = tmp_path / "here"
    assert main(["run", "scheduler=fifo", *TINY, f"output.root={here}"]) == 0
    (installed,) = (work / "out").glob("default/fifo/paper4-paper-*/seed=0/records.csv")
    (local,) = here.glob("default/fifo/*/seed=0/records.csv")
    assert installed.relative_to(work / "out") == local.relative_to(here)
    assert installed.read_text() == local.read_text()
