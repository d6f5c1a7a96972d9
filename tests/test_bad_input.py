"""Bad input from every source (CLI overrides, YAML files, profile/quality/trace CSVs,
checkpoints) is refused with exit status 2, one message naming the field or file (line,
column) and the allowed values, no Python traceback, and nothing under the output root.

Most cases run the CLI in-process (``eatbench.cli.main``); a few run it as a subprocess to
prove the exit status and the absence of a traceback end to end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eatbench.cli import main
from eatbench.experiment.compose import REPO_ROOT, conf_dir

PROFILE_HEAD = "gpu_kind,model,resolution,k,step_s,fixed_s,cold_start_s\n"
PROFILE_OK = "".join(f"paper_gpu,sd14,1440,{k},0.2,0.0,24\n" for k in (1, 2, 4))


def _profile(row1: str) -> str:
    """A profile CSV whose first row (line 2) is ``row1``; rows for k=2, 4 follow."""
    return PROFILE_HEAD + row1 + "\n" + "".join(PROFILE_OK.splitlines(keepends=True)[1:])


PROFILE = ["run", "profile=csv", "profile.path={file}"]
QUALITY = ["run", "quality.name=table", "quality.path={file}"]
TRACE = ["run", "workload=trace", "workload.trace_path={file}"]

# (id, command line after `eatbench`, file contents or None, regex the message must match)
CASES = [
    # -- YAML and overrides ------------------------------------------------------------
    ("yaml-syntax", ["run", "cluster=bad_syntax"], None, r"config file .*bad_syntax.yaml line \d+ column \d+: YAML"),
    ("unknown-key", ["run", "workload.ratee=1"], None, r"unknown config key 'workload.ratee'; allowed here: name"),
    ("unknown-key-new", ["run", "+workload.ratee=1"], None, r"unknown config key 'workload.ratee'; allowed here"),
    (
        "unknown-free-form-key",
        ["run", "scheduler=greedy", "scheduler.params.steps=10"],
        None,
        r"unknown config key 'scheduler.params.steps'; allowed: keys the chosen scheduler config sets under "
        r"scheduler.params, or a new one added with \+scheduler.params.steps=",
    ),
    ("unknown-group", ["run", "scheduler=edf"], None, r"scheduler='edf' is invalid; allowed: .*earliest_finish"),
    ("override-grammar", ["run", "workload.rate=[1,"], None, r"override is invalid .*; allowed: key=value"),
    ("non-number", ["run", "workload.rate=abc"], None, r"workload.rate='abc' is invalid; allowed: a number"),
    ("non-integer", ["run", "seed=1.5"], None, r"seed='1.5' is invalid; allowed: an integer"),
    # -- NaN and infinity from the command line --------------------------------------
    ("rate-nan", ["run", "workload.rate=nan"], None, r"workload.rate=nan is invalid; allowed: a finite number"),
    ("rate-inf", ["run", "workload.rate=inf"], None, r"workload.rate=inf is invalid; allowed: a finite number"),
    ("horizon-inf", ["run", "workload.horizon=inf"], None, r"workload.horizon=inf is invalid; allowed"),
    ("speed-nan", ["run", "cluster.gpu_kinds.paper_gpu.speed=nan"], None, r"speed=nan is invalid; allowed"),
    ("reward-nan", ["run", "engine.reward.w_q=nan"], None, r"engine.reward.w_q=nan is invalid; allowed"),
    ("slot-nan", ["run", "engine.slot=-inf"], None, r"engine.slot=-inf is invalid; allowed"),
    ("sweep-nan", ["run", "-m", "workload.rate=0.01,nan"], None, r"workload.rate=nan is invalid; allowed"),
    # -- values --------------------------------------------------------------------------
    (
        "reward-cap",
        ["run", "engine.reward.cap=0"],
        None,
        r"engine.reward.cap=0.0 is invalid; allowed: a reward cap > 0",
    ),
    ("reward-neg", ["run", "engine.reward.w_t=-1"], None, r"engine.reward.w_t=-1.0 is invalid; allowed: a weight >= 0"),
    ("max-steps", ["run", "engine.max_steps=100000"], None, r"engine.max_steps=100000 is invalid; allowed: min_steps"),
    ("memory", ["run", "cluster.gpu_kinds.paper_gpu.memory_gib=0"], None, r"memory_gib=0.0 is invalid; allowed"),
    (
        "n-tasks-huge",
        ["run", "workload=poisson", "workload.n_tasks=1000000000"],
        None,
        r"workload.n_tasks=1000000000 is invalid; allowed: at most ~\d+ tasks .*GiB",
    ),
    (
        "poisson-rate-0",
        ["run", "workload=poisson", "workload.rate=0"],
        None,
        r"workload.rate=0.0 is invalid; allowed: a rate > 0 tasks/s .*no task would arrive",
    ),
    (
        "cosine-rate-0",
        ["run", "workload=cosine", "workload.rate_low=0", "workload.rate_high=0", "workload.initial_queue=0"],
        None,
        r"workload.rate_high=0.0 is invalid; allowed: a rate > 0",
    ),
    ("cosine-periods", ["run", "workload=cosine", "workload.periods=-1"], None, r"workload.periods=-1.0 is invalid"),
    ("prompts-missing", ["run", "workload.prompts=/no/such/prompts.txt"], None, r"workload.prompts='/no/such"),
    ("output-root", ["run", "output.root=''"], None, r"output.root='' is invalid; allowed: a folder path"),
    # -- scheduler parameters --------------------------------------------------------------
    (
        "steps-1000",
        ["run", "scheduler=fifo", "scheduler.params.steps=1000"],
        None,
        r"scheduler.params.steps=1000 is invalid; allowed: an integer in engine.min_steps..engine.max_steps \(1..32\)",
    ),
    ("steps-many", ["run", "scheduler=fifo", "scheduler.params.steps=many"], None, r"steps='many' is invalid; allowed"),
    ("steps-0", ["run", "scheduler=round_robin", "scheduler.params.steps=0"], None, r"steps=0 is invalid; allowed"),
    ("steps-float", ["run", "scheduler=fifo", "scheduler.params.steps=2.5"], None, r"steps=2.5 is invalid; allowed"),
    (
        "step-grid",
        ["run", "scheduler=greedy", "+scheduler.params.step_grid=[10,40]"],
        None,
        r"scheduler.params.step_grid\[1\]=40 is invalid; allowed: an integer in",
    ),
    (
        "wait-prob",
        ["run", "scheduler=random", "scheduler.params.wait_prob=often"],
        None,
        r"wait_prob='often' is invalid; allowed: a probability",
    ),
    ("unknown-param", ["run", "scheduler=fifo", "+scheduler.params.colour=red"], None, r"colour; allowed: steps"),
    (
        "checkpoint-missing",
        ["run", "scheduler=eat", "checkpoint=/no/such/policy.pt"],
        None,
        r"scheduler.checkpoint='/no/such/policy.pt' is invalid; allowed: an existing policy file",
    ),
    (
        "checkpoint-auto",
        ["run", "scheduler=eat_wide", "cluster=hetero8"],
        None,
        r"checkpoint=auto is invalid for cluster 'hetero8'.*no shipped eat_wide checkpoint",
    ),
    (
        "checkpoint-heuristic",
        ["run", "scheduler=fifo", "checkpoint=/x.pt"],
        None,
        r"checkpoint='/x.pt' is invalid with",
    ),
    ("profile-no-path", ["run", "profile=csv"], None, r"profile.path=None is invalid; allowed: a profile CSV path"),
    ("profile-ignored", ["run", "profile.path=/x.csv"], None, r"profile.path='/x.csv' is invalid; allowed:"),
    ("quality-no-path", ["run", "quality.name=table"], None, r"quality.path=None is invalid; allowed: a CSV path"),
    ("quality-ignored", ["run", "quality.path=/x.csv"], None, r"quality.path='/x.csv' is invalid; allowed:"),
    (
        "trace-ignored",
        ["run", "workload.trace_path=/x.csv"],
        None,
        r"trace_path='/x.csv' is invalid; allowed: null unless",
    ),
    # -- names that become folders, sizes, seeds, paths ------------------------------------------
    ("experiment-group", ["run", "experiment=paper_rates"], None, r"allowed: \+experiment=<ablations, .*paper_rates"),
    (
        "workload-name",
        ["run", "workload.name=../../etc"],
        None,
        r"workload.name='../../etc' is invalid; allowed: a non-empty name without /",
    ),
    (
        "cluster-name",
        ["run", "cluster.name=a/b"],
        None,
        r"cluster.name='a/b' is invalid; allowed: a non-empty name without /",
    ),
    ("window-huge", ["run", "engine.window=1000000000"], None, r"engine.window=1000000000 is invalid; allowed"),
    ("seed-huge", ["run", "seed=99999999999"], None, r"seed=99999999999 is invalid; allowed: an integer in 0.."),
    ("prompts-binary", ["run", "workload.prompts={file}"], "\udcff", r"workload.prompts=.* is invalid \(unreadable"),
    ("root-is-file", ["run", "output.root={file}"], "x", r"output.root=.* is invalid \(it is a file\)"),
    ("out-dir-is-file", ["train", "scheduler=sac", "train.out_dir={file}"], "x", r"train.out_dir=.* \(it is a file\)"),
    ("export-is-dir", ["train", "scheduler=sac", "train.export={tmp}"], None, r"train.export=.* \(it is a folder\)"),
    # -- training settings (checked by `run` too, and by `train` before it starts) ------------
    ("eval-every-0", ["train", "scheduler=sac", "train.eval_every=0"], None, r"train.eval_every=0 is invalid; allowed"),
    (
        "time-scale-0",
        ["train", "scheduler=sac", "train.time_scale=0"],
        None,
        r"train.time_scale=0.0 is invalid; allowed",
    ),
    (
        "rate-low-high",
        ["train", "scheduler=sac", "train.rate_low=0.5", "train.rate_high=-0.1"],
        None,
        r"train.rate_low=0.5 is invalid; allowed: 0 <= rate_low <= rate_high \(-0.1\)",
    ),
    ("rate-low-neg", ["train", "scheduler=sac", "train.rate_low=-0.1"], None, r"train.rate_low=-0.1 is invalid"),
    ("rate-high-0", ["train", "scheduler=sac", "train.rate_low=0", "train.rate_high=0"], None, r"train.rate_high=0.0"),
    ("rate-half-null", ["train", "scheduler=sac", "train.rate_low=null"], None, r"train.rate_low=None is invalid"),
    ("total-steps-neg", ["train", "scheduler=sac", "train.total_steps=-5"], None, r"train.total_steps=-5 is invalid"),
    ("total-steps-0", ["train", "scheduler=sac", "train.total_steps=0"], None, r"train.total_steps=0 is invalid"),
    ("eval-episodes-0", ["train", "scheduler=sac", "train.eval_episodes=0"], None, r"train.eval_episodes=0 is invalid"),
    ("threads-neg", ["train", "scheduler=sac", "train.threads=-1"], None, r"train.threads=-1 is invalid"),
    ("max-minutes-nan", ["train", "scheduler=sac", "train.max_minutes=nan"], None, r"train.max_minutes=nan is invalid"),
    (
        "layout",
        ["train", "scheduler=sac", "train.layout=wide"],
        None,
        r"train.layout='wide' is invalid; allowed: paper",
    ),
    ("train-wandb", ["train", "scheduler=sac", "train.wandb=maybe"], None, r"train.wandb='maybe' is invalid"),
    ("not-learned", ["train", "scheduler=greedy"], None, r"scheduler='greedy' is not learned; allowed: eat"),
    (
        "train-backend",
        ["train", "scheduler=sac", "backend=gpu", "backend.random_init=tiny", "backend.devices=cpu"],
        None,
        r"backend='gpu' is invalid for training; allowed: sim",
    ),
    (
        "preset",
        ["train", "scheduler=sac", "train.preset=fast"],
        None,
        r"train.preset='fast' is invalid; allowed: paper",
    ),
    ("params-key", ["train", "scheduler=sac", "+train.params={lr: 1}"], None, r"unknown keys \['lr'\]; allowed"),
    (
        "params-nan",
        ["train", "scheduler=sac", "+train.params.learning_rate=nan"],
        None,
        r"train.params.learning_rate=nan is invalid; allowed: a finite number",
    ),
    (
        "params-type",
        ["train", "scheduler=sac", "+train.params.batch_size=big"],
        None,
        r"train.params.batch_size='big' is invalid; allowed: an integer >= 0",
    ),
    ("params-zero", ["train", "scheduler=sac", "+train.params.batch_size=0"], None, r"batch_size=0 is invalid"),
    # -- profile CSV -------------------------------------------------------------------------
    ("profile-text", PROFILE, _profile("paper_gpu,sd14,1440,1,fast,0,24"), r"line 2: column step_s='fast' is invalid"),
    ("profile-nan", PROFILE, _profile("paper_gpu,sd14,1440,1,nan,0,24"), r"line 2: column step_s='nan' is invalid"),
    ("profile-inf", PROFILE, _profile("paper_gpu,sd14,1440,1,0.2,inf,24"), r"line 2: column fixed_s='inf' is invalid"),
    (
        "profile-zero",
        PROFILE,
        _profile("paper_gpu,sd14,1440,1,0,0,0"),
        r"line 2: column step_s='0' is invalid; allowed: seconds per denoising step > 0",
    ),
    ("profile-neg", PROFILE, _profile("paper_gpu,sd14,1440,1,0.2,0,-3"), r"column cold_start_s='-3' is invalid"),
    ("profile-k", PROFILE, _profile("paper_gpu,sd14,1440,1.5,0.2,0,24"), r"line 2: column k='1.5' is invalid"),
    ("profile-res", PROFILE, _profile("paper_gpu,sd14,0,1,0.2,0,24"), r"column resolution='0' is invalid"),
    ("profile-kind", PROFILE, _profile(",sd14,1440,1,0.2,0,24"), r"line 2: column gpu_kind='' is invalid"),
    ("profile-ragged", PROFILE, _profile("paper_gpu,sd14,1440,1,0.2"), r"line 2 has 5 cells; allowed: 7"),
    ("profile-dup", PROFILE, PROFILE_HEAD + PROFILE_OK + PROFILE_OK, r"line 5: row .* repeats line 2"),
    ("profile-cols", PROFILE, "gpu_kind,model\npaper_gpu,sd14\n", r"lacks columns .*needs gpu_kind"),
    ("profile-rows", PROFILE, PROFILE_HEAD, r"has no rows"),
    ("profile-empty", PROFILE, "", r"is empty"),
    ("profile-missing", ["run", "profile=csv", "profile.path=/no/such/profile.csv"], None, r"profile.path='/no/such"),
    # -- quality CSV -------------------------------------------------------------------------
    ("quality-text", QUALITY, "steps,quality\n5,0.1\n20,good\n", r"line 3: column quality='good' is invalid"),
    ("quality-nan", QUALITY, "steps,quality\n5,nan\n20,0.2\n", r"line 2: column quality='nan' is invalid"),
    ("quality-inf", QUALITY, "steps,quality\n5,0.1\n20,inf\n", r"line 3: column quality='inf' is invalid"),
    ("quality-steps", QUALITY, "steps,quality\n-5,0.1\n", r"line 2: column steps='-5' is invalid; allowed"),
    ("quality-frac", QUALITY, "steps,quality\n2.5,0.1\n", r"column steps='2.5' is invalid"),
    ("quality-dup", QUALITY, "steps,quality\n5,0.1\n5,0.2\n", r"line 3: column steps='5' .*repeats line 2"),
    ("quality-cols", QUALITY, "step,q\n5,0.1\n", r"needs columns steps, quality"),
    ("quality-none", QUALITY, "steps,quality\n5,\n", r"has no measured quality values"),
    (
        "quality-missing",
        ["run", "quality.name=table", "quality.path=/no/such.csv"],
        None,
        r"quality.path='/no/such.csv'",
    ),
    # -- trace CSV ---------------------------------------------------------------------------
    ("trace-text", TRACE, "arrival\n1.0\nabc\n", r"line 3: column arrival='abc' is invalid; allowed: seconds"),
    ("trace-nan", TRACE, "arrival\n1.0\nnan\n", r"line 3: column arrival='nan' is invalid"),
    ("trace-inf", TRACE, "arrival\n1.0\ninf\n", r"line 3: column arrival='inf' is invalid"),
    ("trace-neg", TRACE, "arrival\n-1.0\n", r"line 2: column arrival='-1.0' is invalid"),
    ("trace-order", TRACE, "arrival\n2.0\n1.0\n", r"line 3: column arrival='1.0' is invalid; allowed: arrivals sorted"),
    ("trace-res-0", TRACE, "arrival,resolution\n1.0,0\n", r"line 2: column resolution='0' is invalid"),
    ("trace-res-8", TRACE, "arrival,resolution\n1.0,500\n", r"column resolution='500' is invalid; .*divisible by 8"),
    ("trace-slo-neg", TRACE, "arrival,slo\n1.0,-3\n", r"line 2: column slo='-3' is invalid; allowed: seconds > 0"),
    ("trace-slo-nan", TRACE, "arrival,slo\n1.0,nan\n", r"line 2: column slo='nan' is invalid"),
    ("trace-k-big", TRACE, "arrival,k\n1.0,8\n", r"line 2: column k='8' is invalid; .*<= the cluster's 4 servers"),
    ("trace-k-odd", TRACE, "arrival,k\n1.0,3\n", r"line 2: column k='3' is invalid; allowed: a power of two"),
    ("trace-column", TRACE, "arrival,resolutoin\n1.0,512\n", r"columns \['resolutoin'\] are invalid; allowed: arrival"),
    (
        "trace-model",
        TRACE,
        "arrival,model\n1.0,sdxl\n",
        r"profile 'paper' has no model 'sdxl' on paper_gpu; allowed: sd14",
    ),
    (
        "trace-res-profile",
        [*TRACE, "profile=h100_sd15", "cluster=h100x4", "workload.model=sd15", "workload.resolutions=[512]"],
        "arrival,model,resolution\n1,sd15,2048\n",
        r"resolution=2048 is invalid for profile 'h100_sd15', which covers resolutions 512..1024 px .*allowed",
    ),
    ("trace-header", TRACE, "time\n1.0\n", r"needs an 'arrival' column"),
    ("trace-rows", TRACE, "arrival\n", r"has no rows"),
    ("trace-horizon", [*TRACE, "workload.horizon=1"], "arrival\n5.0\n", r"workload.horizon=1.0 is invalid"),
    (
        "trace-missing",
        ["run", "workload=trace", "workload.trace_path=/no/such.csv"],
        None,
        r"trace_path='/no/such.csv'",
    ),
]


@pytest.fixture
def conf_with_bad_yaml(tmp_path, monkeypatch):
    """A copy of conf/ with a cluster file that is not valid YAML, selected by EATBENCH_CONF."""
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    (conf / "cluster" / "bad_syntax.yaml").write_text("name: bad\ngpu_kinds: {a: [1,\nservers: x\n")
    monkeypatch.setenv("EATBENCH_CONF", str(conf))
    return conf


def _command(case_args: list[str], content: str | None, tmp_path: Path) -> tuple[list[str], Path]:
    out = tmp_path / "out"
    file = tmp_path / "input.csv"
    if content is not None:
        file.write_text(content, errors="surrogateescape")  # "\udcff": a byte that is not UTF-8
    args = [a.replace("{file}", str(file)).replace("{tmp}", str(tmp_path)) for a in case_args]
    cmd, rest = args[0], args[1:]
    keys = {a.split("=", 1)[0] for a in rest}
    defaults = {"output.root": f"output.root={out}", "train.out_dir": f"train.out_dir={out}/train"}
    return [cmd, *rest, *(v for k, v in defaults.items() if k not in keys)], out


@pytest.mark.parametrize("case_args, content, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message_and_nothing_written(
    case_args, content, message, tmp_path, capsys, conf_with_bad_yaml, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a stray relative folder would land here
    argv, out = _command(case_args, content, tmp_path)
    rc = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 2, text
    assert "Traceback" not in text
    import re

    assert re.search(message, captured.err), captured.err
    assert re.search(r"allowed|needs|Available options", captured.err), captured.err  # says what would do
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["conf", *(["input.csv"] if content is not None else [])]
    )


def test_unknown_command_is_refused(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; allowed: run" in capsys.readouterr().err


def test_a_checkpoint_with_nan_metadata_or_weights_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from eatbench.core.config import ConfigError
    from eatbench.schedulers.rl.checkpoint import SHIPPED, load_policy

    blob = torch.load(SHIPPED / "sac-paper4.pt", weights_only=True)
    bad = tmp_path / "nan_meta.pt"
    torch.save({**blob, "time_scale": float("nan")}, bad)
    with pytest.raises(ConfigError, match=r"time_scale=nan is invalid; allowed: seconds, a finite number > 0"):
        load_policy(bad)
    state = dict(blob["state_dict"])
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("inf"))
    torch.save({**blob, "state_dict": state}, tmp_path / "inf_weights.pt")
    with pytest.raises(ConfigError, match=rf"weights {name} hold NaN or infinity; allowed: finite weights"):
        load_policy(tmp_path / "inf_weights.pt")
    (tmp_path / "cut.pt").write_bytes((SHIPPED / "sac-paper4.pt").read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"is unreadable"):
        load_policy(tmp_path / "cut.pt")


@pytest.mark.parametrize(
    "args, content, message",
    [
        (TRACE, "arrival\n1.0\nabc\n", r"line 3: column arrival='abc' is invalid; allowed"),
        (["train", "scheduler=sac", "train.eval_every=0"], None, r"train.eval_every=0 is invalid; allowed"),
        (["run", "cluster=bad_syntax"], None, r"bad_syntax.yaml line \d+ column \d+: YAML syntax .* is invalid"),
    ],
    ids=["trace", "train", "yaml"],
)
def test_end_to_end_exit_status_and_no_traceback(args, content, message, tmp_path, conf_with_bad_yaml):
    argv, out = _command(args, content, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "eatbench.cli", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    import re

    assert re.search(message, proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_an_error_found_after_hydra_started_leaves_nothing_under_the_output_root(tmp_path, capsys, monkeypatch):
    """An error found inside the Hydra job (here: the up-front check of `eatbench run` is
    reduced to composing, so scheduler parameters are first checked when the scheduler is built):
    the job's log folder Hydra made is removed again, and the exit status is 2."""
    from eatbench import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(cli.CHECKS, "run", lambda cfg: None)  # compose only
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "+scheduler.params.colour=red", f"output.root={out}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "scheduler.params" in err and "colour" in err and "Traceback" not in err
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
