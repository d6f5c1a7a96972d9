"""Result files, provenance, resume and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eatbench.cli import main
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import load_run, run_dir, run_experiment


def test_result_files_carry_config_seed_revision_and_versions(tmp_path):
    cfg = compose_experiment([f"output.root={tmp_path}", "seed=2", "scheduler=fifo"])
    result = run_experiment(cfg)
    assert result.out_dir == run_dir(cfg) and result.out_dir.is_relative_to(tmp_path)
    payload = json.loads((result.out_dir / "summary.json").read_text())
    assert payload["seed"] == 2 and payload["scheduler"] == "fifo" and payload["backend"]["backend"] == "sim"
    assert payload["config"]["workload"]["rate"] == 0.07 and payload["config"]["cluster"]["name"] == "paper4"
    assert payload["git_revision"] and payload["versions"]["numpy"]
    assert payload["summary"]["tasks_done"] == 32
    lines = (result.out_dir / "records.csv").read_text().splitlines()
    assert len(lines) == 33 and lines[0].startswith("task_id,arrival,status,start")
    again = load_run(result.out_dir)
    assert json.dumps([r.to_dict() for r in again.records]) == json.dumps([r.to_dict() for r in result.records])


def test_rerun_resumes_from_finished_results(tmp_path, monkeypatch):
    cfg = compose_experiment([f"output.root={tmp_path}", "scheduler=greedy"])
    first = run_experiment(cfg)
    import eatbench.experiment.runner as runner

    monkeypatch.setattr(runner, "build_engine", lambda *a, **k: pytest.fail("should not run again"))
    second = run_experiment(cfg)
    assert second.summary == json.loads((first.out_dir / "summary.json").read_text())["summary"]
    # an interrupted run (no summary.json) is redone
    (first.out_dir / "summary.json").unlink()
    monkeypatch.undo()
    assert run_experiment(cfg).summary["tasks_done"] == 32


def test_points_with_different_settings_get_different_directories():
    a = compose_experiment(["workload.rate=0.05"])
    b = compose_experiment(["workload.rate=0.05", "engine.window=5"])
    assert run_dir(a) != run_dir(b)
    assert run_dir(a).parent == run_dir(compose_experiment(["workload.rate=0.05", "seed=9"])).parent


def test_cli_run_accepts_overrides(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "run",
            "scheduler=earliest_finish",
            "cluster=hetero8",
            "workload.rate=0.05",
            "seed=3",
            f"output.root={tmp_path}/res",
        ]
    )
    out = capsys.readouterr().out
    assert "scheduler=earliest_finish seed=3" in out and "response_mean" in out
    summaries = list((tmp_path / "res").rglob("summary.json"))
    assert len(summaries) == 1
    assert json.loads(summaries[0].read_text())["config"]["cluster"]["name"] == "hetero8"


def test_cli_reports_bad_input_and_unknown_commands(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "eatbench.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )

    bad = run("run", "workload.rate=-1", f"output.root={tmp_path}")
    assert bad.returncode != 0 and "workload.rate=-1.0 is invalid" in bad.stderr
    unknown = run("fly")
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr
    assert "eatbench run scheduler=greedy" in run("--help").stdout


def test_multirun_sweeps_seeds_and_schedulers(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eatbench.cli",
            "run",
            "-m",
            "seed=0,1",
            "scheduler=fifo,greedy",
            f"output.root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(tmp_path.rglob("summary.json"))) == 4


def test_a_remeasured_profile_file_is_a_new_point(tmp_path):
    from eatbench.engine.profiles import paper_profile

    path = tmp_path / "p.csv"
    paper_profile().to_csv(path)
    cfg = compose_experiment(["profile=csv", f"profile.path={path}"])
    before = run_dir(cfg)
    path.write_text(path.read_text().replace("0.315", "0.3"))
    assert run_dir(cfg) != before


def test_scheduler_parameters_and_checkpoints_key_the_run_folder(tmp_path):
    a = compose_experiment(["scheduler=fifo", "scheduler.params.steps=10"])
    b = compose_experiment(["scheduler=fifo", "scheduler.params.steps=20"])
    assert run_dir(a) != run_dir(b) and run_dir(a).parent.parent == run_dir(b).parent.parent
    ckpt = tmp_path / "policy.pt"
    ckpt.write_bytes(b"one")
    c = compose_experiment(["scheduler=eat", f"scheduler.checkpoint={ckpt}"])
    before = run_dir(c)
    ckpt.write_bytes(b"two")
    assert run_dir(c) != before
