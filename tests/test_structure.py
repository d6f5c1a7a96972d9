"""Structure (issue 10): the config module imports no registry, registry names are checked
where things are built, keys a run ignores never split its result folder, accepted-but-inert
keys are refused, and each helper exists once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from eatbench.cli import main
from eatbench.core.config import ConfigError, validate
from eatbench.experiment.compose import REPO_ROOT, compose_experiment
from eatbench.experiment.runner import check_registered, run_dir, run_experiment


def test_config_module_imports_no_registry():
    code = (
        "import sys, eatbench.core.config, eatbench.experiment.compose; "
        "print(sorted(m for m in sys.modules if m.startswith(('eatbench.schedulers', 'eatbench.backends', "
        "'eatbench.engine.profiles', 'eatbench.engine.loop', 'eatbench.experiment.runner'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("scheduler", "edf", r"scheduler.name='edf' is invalid; allowed: .*earliest_finish"),
        ("backend", "tpu", r"backend.name='tpu' is invalid; allowed: gpu, sim"),
        ("profile", "a100", r"profile.name='a100' is invalid; allowed: csv, h100_sd15, paper"),
        ("quality", "vibes", r"quality.name='vibes' is invalid; allowed: monotone, paper, table"),
    ],
)
def test_registry_names_are_checked_where_things_are_built(field, value, allowed):
    cfg = compose_experiment()
    bad = dataclasses.replace(cfg, **{field: dataclasses.replace(getattr(cfg, field), name=value)})
    assert validate(bad) is not None  # the schema alone knows no registry
    with pytest.raises(ConfigError, match=allowed):
        check_registered(bad)
    with pytest.raises(ConfigError, match=allowed):
        run_experiment(bad, write=False)


def _folder(overrides: list[str]) -> str:
    return str(run_dir(compose_experiment(overrides), "R"))


def test_keys_a_run_ignores_do_not_split_its_result_folder():
    base = _folder(["scheduler=fifo"])
    # eatbench run trains nothing
    assert _folder(["scheduler=fifo", "train.total_steps=5", "train.layout=extended"]) == base
    # the gamma and cosine keys mean nothing to the paper's bernoulli arrivals
    assert _folder(["scheduler=fifo", "workload.cv=3", "workload.rate_high=0.5", "workload.periods=2"]) == base
    # ... but a key the run reads does
    assert _folder(["scheduler=fifo", "workload.slot=0.2"]) != base
    gamma = _folder(["scheduler=fifo", "workload.arrival=gamma"])
    assert _folder(["scheduler=fifo", "workload.arrival=gamma", "workload.cv=3"]) != gamma
    assert _folder(["scheduler=fifo", "workload.arrival=gamma", "workload.slot=0.2"]) == gamma


def test_paper_point_keeps_its_folder_name():
    """The paper sweep's folders are named as before this change (hash of the same config)."""
    cfg = compose_experiment(["scheduler=fifo", "workload.rate=0.05"], experiment="paper_rates")
    cfg = dataclasses.replace(cfg, seed=0)
    assert run_dir(cfg, "R").parent.name == "paper4-paper-bernoulli-rate0.05-fb1ac96c-27ca97"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scheduler=greedy", "+scheduler.params.steps=20"], r"scheduler 'greedy' takes no parameter steps"),
        (["scheduler=random", "+scheduler.params.steps=20"], r"scheduler 'random' takes no parameter steps"),
        (
            ["scheduler=eat", "+scheduler.params.steps=20"],
            r"scheduler.params.steps=20 is invalid; allowed: no steps for the learned scheduler 'eat'",
        ),
    ],
)
def test_steps_are_refused_where_the_scheduler_chooses_them(overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_experiment(compose_experiment(overrides), write=False)


def test_eatbench_run_refuses_a_wandb_mode(tmp_path, capsys):
    assert main(["run", "output.wandb=offline", f"output.root={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "output.wandb='offline' is invalid for `eatbench run`" in err and "allowed: disabled" in err
    assert not (tmp_path / "out").exists()


def test_quality_group_selects_a_measured_curve(tmp_path, capsys):
    curve = tmp_path / "curve.csv"
    curve.write_text("steps,quality\n1,0.1\n10,0.5\n32,0.9\n")
    cfg = compose_experiment(["quality=table", f"quality.path={curve}", "workload.n_tasks=5"])
    assert cfg.quality.name == "table"
    table = run_experiment(cfg, write=False)
    paper = run_experiment(compose_experiment(["workload.n_tasks=5"]), write=False)
    assert table.summary["quality_mean"] != paper.summary["quality_mean"]
    out = tmp_path / "out"
    assert main(["run", "quality=table", f"output.root={out}"]) == 2
    assert "quality.path" in capsys.readouterr().err


def test_learned_schedulers_are_defined_once():
    from eatbench.schedulers import is_learned, learned_names

    assert {"eat", "dsac", "sac", "eat_nodiff", "eat_wide", "authors_eat"} <= set(learned_names())
    assert not any(is_learned(n) for n in ("greedy", "fifo", "oracle", "no_such"))


def test_profile_csv_has_one_writer(tmp_path):
    from eatbench.engine.profiles import PROFILE_COLUMNS, LatencyProfile, paper_profile, write_profile_csv

    path = tmp_path / "p.csv"
    paper_profile().to_csv(path, comment="note")
    again = LatencyProfile.from_csv(path)
    assert again.rows == paper_profile().rows
    rows = [{**{c: r for c, r in zip(PROFILE_COLUMNS, ("g", "m", 8, 1, 0.1, 0.0, 1.0), strict=True)}, "batch": 2}]
    write_profile_csv(path, rows, [*PROFILE_COLUMNS, "batch"], ["measured"])
    assert path.read_text() == f"# measured\n{','.join(PROFILE_COLUMNS)},batch\ng,m,8,1,0.1,0.0,1.0,2\n"
    with pytest.raises(ValueError, match="columns=.* are invalid"):
        write_profile_csv(path, rows, ["batch"])


def test_gpu_backend_settings_are_typed_with_the_backends_defaults():
    import inspect

    from eatbench.backends.gpu.backend import GpuBackend
    from eatbench.core.config import BackendConfig

    init = inspect.signature(GpuBackend.__init__).parameters
    assert BackendConfig().settings() == {n: p.default for n, p in init.items() if n not in ("self", "context")}
    gpu = compose_experiment(["backend=gpu", "backend.random_init=tiny", "backend.devices=cpu"])
    assert gpu.backend.random_init == "tiny" and gpu.backend.devices == "cpu" and gpu.backend.task_timeout_s == 600.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["backend.model_path=/m"], r"backend.model_path='/m' is invalid; allowed: None \(backend=sim takes no"),
        (["backend=gpu", "backend.dtype=fp8"], r"backend.dtype='fp8' is invalid; allowed: fp32, fp16, bf16"),
        (["backend=gpu", "backend.random_init=tiny", "backend.patch_halo=-1"], r"backend.patch_halo=-1 is invalid"),
        (
            ["profile.path=/p.csv"],
            r"profile.path='/p.csv' is invalid; allowed: a profile CSV path with profile.name=csv",
        ),
        (["quality.path=/q.csv"], r"quality.path='/q.csv' is invalid; allowed: a CSV path .*with quality.name=table"),
    ],
)
def test_settings_are_checked_once_and_inert_ones_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_experiment(overrides)


def test_result_files_from_before_the_typed_settings_still_load():
    from eatbench.core.config import config_to_dict, to_experiment_config

    data = config_to_dict(compose_experiment(["backend=gpu", "backend.random_init=tiny"]))
    legacy = {**data, "backend": {"name": "gpu", "params": {"random_init": "tiny", "devices": "cpu"}}}
    cfg = to_experiment_config(legacy)
    assert cfg.backend.name == "gpu" and cfg.backend.random_init == "tiny" and cfg.backend.devices == "cpu"


def test_result_files_keep_the_backend_shape_and_read_back():
    from eatbench.core.config import config_to_dict, to_experiment_config

    sim = compose_experiment()
    assert config_to_dict(sim)["backend"] == {"name": "sim", "params": {}}
    gpu = compose_experiment(["backend=gpu", "backend.random_init=tiny", "backend.devices=cpu"])
    echoed = config_to_dict(gpu)["backend"]
    assert echoed["name"] == "gpu" and echoed["params"] == gpu.backend.settings()
    for cfg in (sim, gpu):
        assert to_experiment_config(config_to_dict(cfg)) == cfg
