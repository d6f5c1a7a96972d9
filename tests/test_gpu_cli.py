"""``eatbench profile`` / ``quality-curve`` / ``fidelity``: option handling and clear errors
before any worker process starts (no pipeline runs here; seconds)."""

from __future__ import annotations

import json
import multiprocessing
import re

import pytest

from eatbench.core.config import ConfigError
from eatbench.experiment.compose import compose_raw
from eatbench.gpu_cli import (
    FidelityArgs,
    ProfileArgs,
    QualityArgs,
    is_tiny_test_model,
    profile_command,
    profile_plan,
    quality_plan,
    split_config,
)

CPU2 = ["++cluster.gpu_kinds={cpu:{speed:1.0}}", "cluster.servers=[cpu,cpu]", "cluster.name=cpu2"]
TINY_WL = ["workload.model=tiny", "workload.resolutions=[64]", "workload.k_choices=[1,2]"]
GPU_TINY = ["backend=gpu", "backend.random_init=tiny", "backend.devices=cpu"]


def _split(namespace: str, *overrides: str):
    return split_config(compose_raw(list(overrides)), namespace)


# ----------------------------------------------------------------- option handling
def test_options_are_taken_out_of_the_config_and_typed() -> None:
    cfg, args = _split("profile_args", *GPU_TINY, *CPU2, *TINY_WL, "+profile_args.steps=5", "+profile_args.ks=[1,2]")
    assert isinstance(args, ProfileArgs)
    assert (args.steps, args.ks, args.repeats) == (5, [1, 2], 3)
    assert cfg.backend.name == "gpu" and cfg.workload.model == "tiny"
    _, qargs = _split("quality_args")
    assert isinstance(qargs, QualityArgs) and qargs.steps == [1, 2, 4, 8, 16, 32]
    _, fargs = _split("fidelity_args", "+fidelity_args.seeds=[0,1]")
    assert isinstance(fargs, FidelityArgs) and fargs.seeds == [0, 1]


def test_unknown_option_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option profile_args\.stepz; allowed: out, steps, repeats"):
        _split("profile_args", "+profile_args.stepz=3")


def test_wrong_option_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="profile_args"):
        _split("profile_args", "+profile_args.steps=many")


def test_another_commands_options_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\+profile_args\.\* belongs to `eatbench profile`"):
        _split("fidelity_args", "+profile_args.steps=3")


def test_experiment_config_stays_strict() -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        split_config({"profile_args": {}, "nonsense": 1}, "profile_args")


# ------------------------------------------------------------------------ profile
def test_profile_plan_comes_from_cluster_and_workload() -> None:
    cfg, args = _split("profile_args", *GPU_TINY, *CPU2, *TINY_WL, "output.root=/tmp/eb")
    plan = profile_plan(cfg, args)
    assert plan == {
        "gpu_kind": "cpu",
        "model": "tiny",
        "resolutions": [64],
        "ks": [1, 2],
        "out": "/tmp/eb/profiles/cpu_tiny.csv",
    }


def test_profile_plan_needs_a_gpu_kind_on_mixed_clusters() -> None:
    cfg, args = _split("profile_args", "cluster=hetero8")
    with pytest.raises(ConfigError, match="profile_args.gpu_kind is required"):
        profile_plan(cfg, args)
    cfg, args = _split("profile_args", "cluster=hetero8", "+profile_args.gpu_kind=nope")
    with pytest.raises(ConfigError, match=r"profile_args.gpu_kind='nope' is invalid; allowed: "):
        profile_plan(cfg, args)


def test_profile_plan_refuses_k_beyond_the_cluster() -> None:
    cfg, args = _split("profile_args", *CPU2, *TINY_WL, "+profile_args.ks=[1,4]")
    with pytest.raises(ConfigError, match="k <= the cluster's 2 servers"):
        profile_plan(cfg, args)


def test_profile_needs_the_gpu_backend() -> None:
    with pytest.raises(ConfigError, match=r"backend.name='sim' is invalid for `eatbench profile`; allowed: gpu"):
        profile_command(compose_raw(CPU2 + TINY_WL))


def test_profile_with_a_missing_model_errors_before_workers_start(tmp_path) -> None:
    before = set(multiprocessing.active_children())
    raw = compose_raw(
        ["backend=gpu", f"backend.model_path={tmp_path / 'no_model'}", "backend.devices=cpu"]
        + CPU2
        + TINY_WL
        + [f"+profile_args.out={tmp_path / 'p.csv'}"]
    )
    with pytest.raises(ConfigError, match=r"backend.model_path=.* is invalid .*does not exist locally"):
        profile_command(raw)
    assert set(multiprocessing.active_children()) == before
    assert not (tmp_path / "p.csv").exists()


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys) -> None:
    from eatbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["profile", "+profile_args.repeats=0", f"hydra.run.dir={tmp_path}/h", *CPU2, *TINY_WL, *GPU_TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "eatbench profile: config error: profile_args.repeats=0 is invalid" in err


# ------------------------------------------------------------------ quality curve
def _fake_pipeline(path, widths: list[int]) -> str:
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text("{}")
    (path / "unet" / "config.json").write_text(json.dumps({"block_out_channels": widths}))
    return str(path)


def test_quality_curve_refuses_random_weights() -> None:
    cfg, args = _split("quality_args", "backend=gpu", "backend.random_init=sd15")
    with pytest.raises(ConfigError, match="random weights have no meaningful image quality"):
        quality_plan(cfg, args)


def test_quality_curve_refuses_the_tiny_test_pipeline(tmp_path) -> None:
    tiny = _fake_pipeline(tmp_path / "tiny", [32, 64])
    assert is_tiny_test_model(tiny)
    assert not is_tiny_test_model(_fake_pipeline(tmp_path / "sd", [320, 640, 1280, 1280]))
    cfg, args = _split("quality_args", "backend=gpu", f"backend.model_path={tiny}")
    with pytest.raises(ConfigError, match="tiny test pipeline"):
        quality_plan(cfg, args)


def test_quality_curve_needs_model_and_clip(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"backend.model_path=None is invalid; allowed: .*required"):
        _split("quality_args", "backend=gpu")  # the config itself is refused
    sd = _fake_pipeline(tmp_path / "sd", [320, 640, 1280, 1280])
    cfg, args = _split("quality_args", "backend=gpu", f"backend.model_path={sd}")
    with pytest.raises(ConfigError, match="clip_model_path is required"):
        quality_plan(cfg, args)
    with pytest.raises(ConfigError, match=r"backend.clip_model_path=.* is invalid \(it is not a local directory"):
        _split(
            "quality_args",
            "backend=gpu",
            f"backend.model_path={sd}",
            f"backend.clip_model_path={tmp_path / 'no_clip'}",
        )


def test_quality_plan_with_real_looking_inputs(tmp_path) -> None:
    sd = _fake_pipeline(tmp_path / "sd", [320, 640, 1280, 1280])
    (tmp_path / "clip").mkdir()
    cfg, args = _split(
        "quality_args",
        "backend=gpu",
        f"backend.model_path={sd}",
        f"backend.clip_model_path={tmp_path / 'clip'}",
        "backend.devices=cpu",
        "workload=sd15",
        "+quality_args.steps=[20,5,5]",
        "+quality_args.n_prompts=3",
        "output.root=/tmp/eb",
    )
    kw = quality_plan(cfg, args)
    assert kw["steps_list"] == [5, 20]
    assert len(kw["prompts"]) == 3
    assert (kw["resolution"], kw["device"], kw["dtype"]) == (512, "cpu", "fp32")
    assert kw["out_csv"] == "/tmp/eb/quality/sd15.csv"


# ------------------------------------------------- backend.*: config errors, no traceback
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backend.model_path=/no/such/model"], r"backend.model_path='/no/such/model' is invalid"),
        (["backend.random_init=huge"], r"backend.random_init='huge' is invalid; allowed: sd15, sdxl"),
        (
            ["backend.random_init=tiny", "backend.devices=cuda:7"],
            r"backend.devices='cuda:7' is invalid \('cuda:7' is not present.*\); allowed: auto, cpu, cuda",
        ),
        (
            ["backend.random_init=tiny", "+backend.bogus=1"],
            r"unknown config key 'backend.bogus'; allowed here: name, model_path, random_init",
        ),
        (
            ["backend.random_init=tiny", "backend.task_timeout_s=0"],
            r"backend.task_timeout_s=0.0 is invalid; allowed: seconds > 0",
        ),
    ],
)
def test_bad_gpu_backend_params_are_config_errors_before_any_worker(overrides, message, tmp_path, capsys) -> None:
    from eatbench.cli import main

    before = set(multiprocessing.active_children())
    root = tmp_path / "results"
    try:  # refused before Hydra starts (a return value) or inside the task (SystemExit)
        code = main(["run", "backend=gpu", *overrides, f"output.root={root}", f"hydra.run.dir={tmp_path}/h"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("eatbench run: config error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert set(multiprocessing.active_children()) == before
    assert not root.exists()


# ----------------------------------------------------------------------- fidelity
def test_fidelity_needs_the_gpu_backend(tmp_path, capsys) -> None:
    from eatbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fidelity", f"hydra.run.dir={tmp_path}/h"])
    assert exc.value.code == 2
    assert "backend.name='sim' is invalid for `eatbench fidelity`; allowed: gpu" in capsys.readouterr().err


# ------------------------------------------------------- the prepared GPU session and check
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check_under_test", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_stops_an_overrunning_section(tmp_path) -> None:
    import argparse
    import time

    gc = _gpu_check_module()
    out = gc.Out(str(tmp_path / "check.jsonl"))
    a = argparse.Namespace(budget_s=600.0, section_timeout_s=0.5)
    t0 = time.monotonic()
    assert gc.section(out, "hangs", a, time.sleep, 30) is None
    assert time.monotonic() - t0 < 5
    assert gc.section(out, "fine", a, lambda: 42) == 42
    records = [json.loads(line) for line in (tmp_path / "check.jsonl").read_text().splitlines()]
    stopped = next(r for r in records if r["what"] == "hangs")
    assert stopped["stopped"] is True and "ran past its 0.5 s limit" in stopped["error"]
    assert gc.FAILED == ["hangs"]
    assert any(r["what"] == "fine_section" and r["ok"] for r in records)


def test_gpu_session_env_check_fails_fast_without_diffusers(tmp_path) -> None:
    """No wheelhouse and no diffusers: the session stops after the environment check, in
    seconds, with exit status 2, having said what is missing; the check never starts."""
    import os
    import subprocess
    import sys
    import time

    blocker = tmp_path / "no_diffusers"
    blocker.mkdir()
    (blocker / "diffusers.py").write_text("raise ImportError('No module named diffusers (hidden by the test)')\n")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "WHEELHOUSE": str(tmp_path / "no_wheels"),
        "SITE_DIR": str(tmp_path / "site"),
        "PYTHONPATH": str(blocker),
    }
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_session.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 60, elapsed  # importing torch, then stop
    env_records = [json.loads(line) for line in (out / "env.jsonl").read_text().splitlines()]
    assert env_records[0]["what"] == "env" and "cannot import diffusers" in env_records[0]["error"]
    assert env_records[-1] == {**env_records[-1], "what": "done", "ok": False}
    steps = [json.loads(line) for line in (out / "session.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == ["install", "monitor", "env", "done"]
    assert "no wheels" in steps[0]["note"] and steps[2]["rc"] == 2
    assert steps[-1]["rc"] == 2 and steps[-1]["failed"] == ["env"]
    assert not (out / "gpu_check.jsonl").exists()  # the check never started
