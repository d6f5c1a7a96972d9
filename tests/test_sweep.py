"""Sweeps: grid expansion, quick grid, resume after an interruption, clear errors, launchers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import eatbench.experiment.runner as runner
from eatbench.core.config import ConfigError
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.sweep import check_checkpoint, plan, quick_grid, run_sweep, variant_name


def test_plan_expands_points_and_schedulers_and_overrides_fix_keys():
    groups, seeds, _ = plan("paper_rates")
    assert seeds == list(range(30))  # 30 paired evaluation seeds per point
    rates = {g[0] for g in groups}
    assert rates == {f"workload.rate={r}" for r in ("0.01", "0.03", "0.05", "0.07", "0.09", "0.11")}
    groups, seeds, _ = plan("paper_rates", ["scheduler=fifo", "workload.rate=0.05"], seeds=2)
    assert groups == [[]] and seeds == [0, 1]


def test_quick_grid_keeps_five_seeds_and_three_values():
    grid = quick_grid({"seed": [str(s) for s in range(30)], "workload.rate": list("abcdef"), "scheduler": list("xyzw")})
    assert grid == {"seed": ["0", "1", "2", "3", "4"], "workload.rate": ["a", "d", "f"], "scheduler": list("xyzw")}


def test_interrupted_sweep_resumes_without_rerunning_finished_jobs(tmp_path, monkeypatch):
    overrides = ["scheduler=fifo", "workload.rate=0.05"]
    calls = {"n": 0}
    real = runner.build_engine

    def flaky(cfg, out_dir=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the sweep is interrupted in its third job
        return real(cfg, out_dir)

    monkeypatch.setattr(runner, "build_engine", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("paper_rates", overrides, root=tmp_path, seeds=4, progress=False)
    done = sorted(tmp_path.glob("*/fifo/*/seed=*/summary.json"))
    assert [p.parent.name for p in done] == ["seed=0", "seed=1"]
    first = done[0].read_text()
    calls["n"] = -100
    res = run_sweep("paper_rates", overrides, root=tmp_path, seeds=4, progress=False)
    assert res.reused == 2 and len(res.results) == 4 and calls["n"] == -98  # only seeds 2, 3 ran
    assert done[0].read_text() == first
    # selecting part of the grid (a scheduler, a rate) joins the experiment's own results
    assert res.experiment == "paper_rates" == variant_name("paper_rates", overrides, ["workload.rate", "scheduler"])
    assert variant_name("paper_rates", ["workload.n_tasks=8"], ["workload.rate"]).startswith("paper_rates@")


def test_parallel_sweep_writes_the_same_files_as_a_serial_one(tmp_path):
    serial = run_sweep("paper_rates", ["workload.rate=0.05"], root=tmp_path / "a", seeds=3, progress=False)
    parallel = run_sweep("paper_rates", ["workload.rate=0.05"], root=tmp_path / "b", seeds=3, progress=False, jobs=2)
    assert len(serial.results) == len(parallel.results) > 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("records.csv"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("records.csv"))
    assert files_a == files_b and len(files_a) == len(serial.results)
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_unknown_experiment_and_malformed_override_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; allowed: .*paper_rates"):
        plan("nope")
    with pytest.raises(ConfigError, match="bad config or override"):
        plan("paper_rates", ["workload.rate=[0.1"])
    with pytest.raises(ConfigError, match="unknown config key 'workload.bogus'"):
        run_sweep(
            "paper_rates",
            ["+workload.bogus=1", "scheduler=fifo", "workload.rate=0.05"],
            root="/nonexistent",
            seeds=1,
            progress=False,
        )


def test_missing_checkpoint_is_a_clear_error():
    cfg = compose_experiment(["scheduler=eat", "checkpoint=/no/such/policy.pt"])
    with pytest.raises(
        ConfigError, match=r"scheduler.checkpoint='/no/such/policy.pt': no such file .*eatbench train scheduler=eat"
    ):
        check_checkpoint(cfg)
    with pytest.raises(ConfigError, match="no such file"):
        run_sweep(
            "paper_rates",
            ["scheduler=eat", "checkpoint=/no/such/policy.pt"],
            root="/nonexistent",
            seeds=1,
            progress=False,
        )


def test_module_cli_runs_a_quick_sweep(tmp_path, capsys):
    from eatbench.experiment.sweep import main

    assert (
        main(["paper_rates", "--quick", "--root", str(tmp_path), "-o", "scheduler=greedy", "-o", "workload.rate=0.07"])
        == 0
    )
    assert "5 runs (0 reused)" in capsys.readouterr().out
    assert main(["nope", "--root", str(tmp_path)]) == 2


def test_submitit_local_multirun_writes_self_contained_results(tmp_path):
    """A tiny Hydra multirun through the SLURM launcher's local executor (subprocess)."""
    cmd = [
        sys.executable, "-m", "eatbench.cli", "run", "-m", "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={tmp_path}/multirun", f"output.root={tmp_path}/results",
        "scheduler=fifo,greedy", "seed=0", "workload.n_tasks=8",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted((tmp_path / "results" / "default").glob("*/*/seed=0/summary.json"))
    assert [f.parents[2].name for f in files] == ["fifo", "greedy"]
    payload = json.loads(files[0].read_text())
    assert (
        payload["config"]["workload"]["n_tasks"] == 8 and payload["git_revision"] and payload["summary"]["tasks"] == 8
    )
