"""Training is crash-safe and a resumed run is the same run.

A tiny SAC training (60 env steps, an evaluation and a checkpoint every 20) is killed at
several points — mid-rollout, while a checkpoint file is being written, right after a
checkpoint folder is renamed into place, by Ctrl-C, and by SIGKILL in a subprocess — and
resumed each time; it must end with exactly the weights and curve of an uninterrupted run
with the same seed. Damaged or old-format checkpoints are refused with a clear message.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from eatbench.core.config import ConfigError  # noqa: E402
from eatbench.experiment.compose import REPO_ROOT, compose_experiment  # noqa: E402
from eatbench.schedulers.rl import checkpoint as ckpt  # noqa: E402
from eatbench.training import train as train_mod  # noqa: E402

torch.set_num_threads(1)
ARGS = [
    "scheduler=sac",
    "cluster.name=tiny2",
    "cluster.servers=[paper_gpu,paper_gpu]",
    "workload.k_choices=[1,2]",
    "workload.n_tasks=12",
    "train.total_steps=60",
    "train.eval_every=20",
    "train.eval_episodes=1",
    "train.wandb=disabled",
    "train.progress=false",
    "train.threads=1",
    "+train.params={learning_starts: 10, batch_size: 8, buffer_size: 200}",
]


def _cfg(out: Path, *extra: str):
    return compose_experiment([*ARGS, f"train.out_dir={out}", *extra])


class Crash(Exception):
    """Stands for the process dying at a fault point (nothing after it runs)."""


def _crash_at(point: str, step: int, name: str | None = None):
    def fault(p: str, **info) -> None:
        if p == point and info.get("step") == step and (name is None or info.get("name") == name):
            raise Crash(f"{p} at step {step}")

    return fault


def _set_fault(monkeypatch, fault) -> None:
    monkeypatch.setattr(ckpt, "fault_point", fault)
    monkeypatch.setattr(train_mod, "fault_point", fault)


def _weights(result) -> dict:
    return torch.load(result.policy_path, weights_only=True)["state_dict"]


def _same_run(a, b) -> None:
    """Same final weights (bit for bit), same curve apart from wall time."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    def strip(curve):
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in curve]

    assert json.dumps(strip(a.curve)) == json.dumps(strip(b.curve))  # NaN-safe comparison


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    result = train_mod.train(_cfg(out))
    assert [row["step"] for row in result.curve] == [0, 20, 40, 60]
    return result


def test_killed_at_several_points_then_resumed_is_the_same_training(reference, tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)
    folder = tmp_path / train_mod.run_name(cfg) / train_mod.CHECKPOINT_DIR
    # 1. dies mid-rollout between two checkpoints (step 33: the state at 20 is kept)
    # 2. dies while the step-40 checkpoint writes replay.pkl: a partial .tmp folder is left
    # 3. dies right after step 60's folder is renamed into place, before older ones are deleted
    for fault, left, partial in [
        (_crash_at("step", 33), ["step-000000020"], False),
        (_crash_at("file-written", 40, "replay.pkl"), ["step-000000020"], True),
        (_crash_at("renamed", 60), ["step-000000040", "step-000000060"], False),
    ]:
        _set_fault(monkeypatch, fault)
        with pytest.raises(Crash):
            train_mod.train(cfg)
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".tmp")) == left
        assert any(p.name.startswith(".tmp-step-000000040") for p in folder.iterdir()) == partial
    # the next run removed the partial folder, and said so
    assert "removing" in capsys.readouterr().err
    _set_fault(monkeypatch, lambda point, **info: None)
    resumed = train_mod.train(cfg)
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000060"]
    _same_run(reference, resumed)


def test_ctrl_c_saves_at_a_consistent_point_and_resumes_exactly(reference, tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)

    def press_ctrl_c(point: str, **info) -> None:
        if point == "step" and info["step"] == 27:
            signal.raise_signal(signal.SIGINT)  # the handler only asks for a stop

    _set_fault(monkeypatch, press_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step 28; checkpoint saved; resume with: eatbench train" in lines[0]
    folder = tmp_path / train_mod.run_name(cfg) / train_mod.CHECKPOINT_DIR
    assert [p.name for p in folder.iterdir()] == ["step-000000028"]  # the next rollout boundary
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    _set_fault(monkeypatch, lambda point, **info: None)
    _same_run(reference, train_mod.train(cfg))


def test_damaged_or_old_checkpoints_are_refused_with_a_clear_message(reference, tmp_path):
    cfg = _cfg(tmp_path)
    run_dir = tmp_path / train_mod.run_name(cfg)
    step = run_dir / train_mod.CHECKPOINT_DIR / "step-000000060"
    step.mkdir(parents=True)
    for f in (reference.run_dir / train_mod.CHECKPOINT_DIR / "step-000000060").iterdir():
        (step / f.name).write_bytes(f.read_bytes())
    replay = step / "replay.pkl"
    data = bytearray(replay.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replay.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"step-000000060' is inconsistent: replay.pkl does not match its SHA-256"):
        train_mod.train(cfg)
    replay.write_bytes(replay.read_bytes()[:100])  # truncated, as by a kill mid-write without the manifest
    with pytest.raises(ConfigError, match=r"inconsistent: replay.pkl has 100 bytes"):
        train_mod.train(cfg)
    manifest = json.loads((step / "manifest.json").read_text())
    (step / "manifest.json").write_text(json.dumps({**manifest, "wall_s": float("nan")}))
    with pytest.raises(ConfigError, match=r"manifest.json is unreadable \(NaN is not allowed"):
        train_mod.train(cfg)
    (step / "manifest.json").unlink()
    with pytest.raises(ConfigError, match=r"inconsistent: manifest.json is missing; allowed: a complete checkpoint"):
        train_mod.train(cfg)
    for p in step.iterdir():
        p.unlink()
    step.rmdir()
    (run_dir / "model.zip").write_bytes(b"old")  # an older eatbench's layout
    (run_dir / "state.json").write_text("{}")
    with pytest.raises(
        ConfigError, match=r"train.resume=True is invalid .*older eatbench.*allowed: train.resume=false"
    ):
        train_mod.train(cfg)
    assert not (run_dir / "policy.pt").exists()


KILL_SCRIPT = """
import os, signal, sys
from eatbench.experiment.compose import compose_experiment
from eatbench.schedulers.rl import checkpoint
from eatbench.training import train

def fault(point, **info):  # SIGKILL while the step-40 checkpoint is being written
    if point == "file-written" and info["step"] == 40 and info["name"] == "replay.pkl":
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.fault_point = train.fault_point = fault
train.train(compose_experiment(sys.argv[1:]))
"""


def test_sigkill_mid_checkpoint_write_then_resume_is_the_same_training(reference, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = [*ARGS, f"train.out_dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    folder = tmp_path / train_mod.run_name(_cfg(tmp_path)) / train_mod.CHECKPOINT_DIR
    names = sorted(p.name for p in folder.iterdir())
    assert names[0].startswith(".tmp-step-000000040") and names[1] == "step-000000020", names
    _same_run(reference, train_mod.train(_cfg(tmp_path)))


def test_cli_ctrl_c_exits_130_with_one_line_saying_how_to_resume(reference, tmp_path, monkeypatch, capsys):
    from eatbench.cli import main

    def press_ctrl_c(point: str, **info) -> None:
        if point == "step" and info["step"] == 45:
            signal.raise_signal(signal.SIGINT)

    _set_fault(monkeypatch, press_ctrl_c)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *ARGS, f"train.out_dir={tmp_path}", f"output.root={tmp_path}/results"])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[eatbench train] interrupted at step 46; checkpoint saved; ")
    command = ["eatbench", "train", *ARGS, f"train.out_dir={tmp_path}", f"output.root={tmp_path}/results"]
    assert lines[0].endswith(f"resume with: {shlex.join(command)}")  # quoted: pastes into a shell as is
    assert shlex.split(lines[0].split("resume with: ", 1)[1]) == command
    _set_fault(monkeypatch, lambda point, **info: None)
    _same_run(reference, train_mod.train(_cfg(tmp_path)))


# -- result files of `eatbench run` ---------------------------------------------------------


def test_a_run_killed_while_writing_records_leaves_no_file_taken_as_valid(tmp_path, monkeypatch):
    """records.csv and summary.json are each written to a temporary file and renamed; a
    kill mid-write leaves only a hidden temporary file, and the rerun redoes the run."""
    from eatbench.experiment import runner

    cfg = compose_experiment(["scheduler=fifo", "workload.n_tasks=12", f"output.root={tmp_path}"])
    real_replace = os.replace

    def killed_during(name: str):
        def replace(src, dst):
            if Path(dst).name == name:
                raise Crash(f"killed while writing {name}")
            return real_replace(src, dst)

        return replace

    out = runner.run_dir(cfg)
    for name in ("records.csv", "summary.json"):
        monkeypatch.setattr(runner.os, "replace", killed_during(name))
        with pytest.raises(Crash):
            runner.run_experiment(cfg)
        assert not (out / "summary.json").exists()  # not a finished run
        assert not any(p.name == name for p in out.iterdir())  # no partial file under its real name
    monkeypatch.setattr(runner.os, "replace", real_replace)
    result = runner.run_experiment(cfg)  # the rerun does the run again
    lines = (out / "records.csv").read_text().splitlines()
    assert len(lines) == 1 + len(result.records) == 13
    assert runner.load_run(out).summary == json.loads((out / "summary.json").read_text())["summary"]
    (out / "summary.json").write_text('{"summary": {"tasks_done": 1')  # damaged by hand or a disk
    assert runner.run_experiment(cfg).summary["tasks_done"] == 12  # run again, not loaded
    assert json.loads((out / "summary.json").read_text())["summary"]["tasks_done"] == 12


def test_resuming_with_other_settings_is_refused_but_a_longer_budget_is_not(reference, tmp_path):
    cfg = _cfg(tmp_path, "train.total_steps=20")
    train_mod.train(cfg)
    with pytest.raises(
        ConfigError, match=r"train.resume=True is invalid here: .*other settings \(train.params.batch_size: 8 -> 16\)"
    ):
        train_mod.train(_cfg(tmp_path, "+train.params={learning_starts: 10, batch_size: 16, buffer_size: 200}"))
    with pytest.raises(ConfigError, match=r"workload.rate: 0.07 -> 0.05"):
        train_mod.train(_cfg(tmp_path, "workload.rate=0.05"))
    _same_run(reference, train_mod.train(_cfg(tmp_path)))  # 20 -> 60 steps: the same run as one of 60


def test_resume_false_starts_over_and_leaves_no_old_checkpoint(tmp_path, capsys):
    cfg = _cfg(tmp_path, "train.total_steps=20")
    train_mod.train(_cfg(tmp_path, "train.total_steps=40"))
    again = train_mod.train(_cfg(tmp_path, "train.total_steps=20", "train.resume=false"))
    assert "removing the previous checkpoints" in capsys.readouterr().err
    assert [row["step"] for row in again.curve] == [0, 20]
    folder = tmp_path / train_mod.run_name(cfg) / train_mod.CHECKPOINT_DIR
    assert [p.name for p in folder.iterdir()] == ["step-000000020"]


def test_ctrl_c_during_eatbench_run_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    from eatbench.cli import main
    from eatbench.experiment import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "workload.n_tasks=5", f"output.root={tmp_path}/results"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["eatbench run: interrupted"]


def test_a_time_limit_stops_saves_and_exports_and_a_rerun_continues_the_same_training(reference, tmp_path):
    """A limit reached at once stops at step 0 (the first rollout boundary), still exports a
    policy; rerunning without the limit resumes from the initial state to the same end."""
    stopped = train_mod.train(_cfg(tmp_path, "train.max_minutes=1e-9"))
    assert stopped.steps == 0 and stopped.policy_path.is_file()
    assert [row["step"] for row in stopped.curve] == [0]
    _same_run(reference, train_mod.train(_cfg(tmp_path)))
