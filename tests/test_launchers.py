"""Hydra launchers write the same self-contained result files: a small multirun through Ray
(a local Ray instance, 2 CPUs, no dashboard, started for the test) equals the joblib run's,
and ``eatbench report`` aggregates the files wherever they ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eatbench.experiment.compose import REPO_ROOT

#: 2 schedulers x 2 seeds at one rate, 8 tasks each: 4 tiny jobs.
GRID = ["+experiment=paper_rates", "scheduler=fifo,greedy", "seed=0,1", "workload.rate=0.05", "workload.n_tasks=8"]
#: fields of summary.json that say where and how fast a run ran, not what it computed
#: (and ``config.output.root``, the folder each run was told to write to).
PROVENANCE = ("git_revision", "versions", "machine")
TIMING = ("wall_s", "decision_time_mean_s", "decision_time_p99_s")


def _multirun(tmp_path: Path, name: str, launcher: list[str]) -> Path:
    root = tmp_path / name / "results"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
        "RAY_AUTH_MODE": "disabled",  # a throwaway local instance: no token written to ~/.ray
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "eatbench.cli", "run", "-m", *launcher, *GRID, f"output.root={root}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root


def _results(root: Path) -> dict[str, tuple[dict, str]]:
    """``relative run folder -> (summary.json without provenance and timing, records.csv)``."""
    out = {}
    for path in sorted(root.glob("*/*/*/seed=*/summary.json")):
        payload = json.loads(path.read_text())
        for key in PROVENANCE:
            payload.pop(key)
        payload["config"]["output"].pop("root")  # where, not what
        for key in TIMING:
            payload["summary"].pop(key)
        out[str(path.parent.relative_to(root))] = (payload, (path.parent / "records.csv").read_text())
    return out


def test_ray_multirun_writes_the_same_result_files_as_joblib(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the [ray] extra is not installed")
    joblib = _results(_multirun(tmp_path, "joblib", ["hydra.launcher.n_jobs=2"]))
    ray_root = _multirun(tmp_path, "ray", ["hydra/launcher=local_ray"])
    ray = _results(ray_root)
    assert len(joblib) == 4 and sorted(ray) == sorted(joblib)
    for folder, (summary, records) in joblib.items():
        assert ray[folder][1] == records, folder  # per-task records identical
        assert ray[folder][0] == summary, folder  # summaries equal but for provenance and timing

    from eatbench.cli import main

    main(["report", f"output.root={ray_root}", f"hydra.run.dir={tmp_path}/h"])
    runs = (ray_root.parent / "data" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4 and {r.split(",")[1] for r in runs[1:]} == {"fifo", "greedy"}
