"""Config composition, overrides and the errors for bad input."""

from __future__ import annotations

import pytest

from eatbench.core.config import ConfigError, server_kinds, to_experiment_config
from eatbench.experiment.compose import compose_experiment, compose_raw, sweep_params


def test_default_config_is_the_paper_setting():
    cfg = compose_experiment()
    assert cfg.cluster.name == "paper4" and len(cfg.cluster.servers) == 4
    assert cfg.workload.arrival == "bernoulli" and cfg.workload.n_tasks == 32 and cfg.workload.initial_queue == 10
    assert cfg.workload.k_choices == [1, 2, 4] and cfg.profile.name == "paper"
    assert cfg.engine.reward.w_t == 250 and cfg.engine.reward.w_q == 10 and cfg.engine.reward.cap == 10


def test_overrides_select_groups_and_values():
    cfg = compose_experiment(["scheduler=earliest_finish", "cluster=hetero8", "workload.rate=0.05", "seed=3"])
    assert cfg.scheduler.name == "earliest_finish" and cfg.cluster.name == "hetero8"
    assert cfg.workload.rate == 0.05 and cfg.seed == 3
    assert len({*cfg.cluster.servers}) == 3


def test_generated_cluster_interleaves_kinds_in_their_shares():
    cfg = compose_experiment(["cluster=hetero", "cluster.size=32"])
    kinds = server_kinds(cfg.cluster)
    assert len(kinds) == 32
    assert kinds.count("fast_gpu") == 8 and kinds.count("paper_gpu") == 12 and kinds.count("slow_gpu") == 12
    assert len(set(kinds[:4])) >= 2  # mixed from the start
    assert len(server_kinds(compose_experiment(["cluster=uniform", "cluster.size=64"]).cluster)) == 64


def test_experiment_file_carries_its_sweep():
    raw = compose_raw(experiment="paper_rates")
    params = sweep_params(raw)
    assert params["workload.rate"] == ["0.01", "0.03", "0.05", "0.07", "0.09", "0.11"]
    assert "greedy" in params["scheduler"] and params["seed"] == [str(s) for s in range(30)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["workload.rate=-0.1"], r"workload.rate=-0.1 is invalid; allowed: a rate >= 0"),
        (["workload.k_choices=[1,2,8]"], r"k <= the cluster's 4 servers"),
        (["workload.k_choices=[3]"], r"powers of two"),
        (["workload.arrival=weibull"], r"workload.arrival='weibull'.*bernoulli, poisson, gamma, cosine, trace"),
        (["scheduler.name=edf"], r"scheduler.name='edf'.*allowed: .*earliest_finish"),
        (["profile.name=a100"], r"profile.name='a100'.*allowed: csv, h100_sd15, paper"),
        (["cluster.servers=[paper_gpu,v100]"], r"cluster.servers\[1\]='v100'.*allowed: paper_gpu"),
        (["engine.decision_mode=batch"], r"engine.decision_mode.*event, slotted"),
        (["engine.min_steps=40"], r"engine.min_steps=40"),
        (["workload.n_tasks=null", "workload.horizon=null"], r"workload.n_tasks"),
        (["output.wandb=maybe"], r"output.wandb.*offline, online, disabled"),
        (["workload.ratee=1"], r"ratee"),
        (["scheduler=edf"], r"scheduler/edf"),
        (["workload.rate=abc"], r"workload.rate"),
    ],
)
def test_bad_config_stops_with_a_message_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_experiment(overrides)


def test_profile_missing_a_gpu_kind_is_caught_before_running():
    from eatbench.experiment.runner import run_experiment

    cfg = compose_experiment(["cluster=h100x4"])  # paper profile has no h100 rows
    with pytest.raises(ConfigError, match="no GPU kind 'h100'"):
        run_experiment(cfg, write=False)
    ok = compose_experiment(["cluster=h100x4", "profile=h100_sd15", "workload=sd15", "workload.n_tasks=20"])
    assert run_experiment(ok, write=False).summary["tasks_done"] == 20


def test_scheduler_params_are_checked_by_the_scheduler():
    from eatbench.experiment.runner import run_experiment

    with pytest.raises(ConfigError, match="takes no parameter colour; allowed: steps"):
        run_experiment(compose_experiment(["scheduler=fifo", "+scheduler.params.colour=red"]), write=False)
    with pytest.raises(ConfigError, match="wait_prob"):
        run_experiment(compose_experiment(["scheduler=random", "scheduler.params.wait_prob=2"]), write=False)


def test_unknown_key_in_a_plain_dict_names_the_allowed_keys():
    with pytest.raises(ConfigError, match="unknown config key 'workload.speed'; allowed here: .*rate"):
        to_experiment_config({"workload": {"speed": 3}})


def test_unknown_experiment_is_named():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; allowed: .*paper_rates"):
        compose_experiment(experiment="nope")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["workload.arrival=gamma", "workload.cv=0"], r"workload.cv=0.0 is invalid"),
        (
            ["workload.rate=20", "workload.slot=0.1"],
            r"workload.slot=0.1 is invalid; allowed: slot > 0 with rate\*slot <= 1",
        ),
        (["workload=cosine", "workload.rate_low=0.5", "workload.rate_high=0.1"], r"workload.rate_low=0.5"),
        (["workload=cosine", "workload.period_length=0"], r"workload.period_length"),
        (["workload.arrival=trace", "workload.trace_path=null"], r"workload.trace_path=None"),
        (["workload.initial_queue=-1"], r"workload.initial_queue=-1"),
        (["workload.n_tasks=0"], r"workload.n_tasks=0"),
        (["workload.horizon=-5"], r"workload.horizon=-5.0"),
        (["workload.resolutions=[500]"], r"divisible by 8"),
        (["workload.k_choices=[]"], r"a non-empty list"),
        (["workload.slo_factor=0"], r"workload.slo_factor=0.0"),
        (["workload.slo_steps=0"], r"workload.slo_steps=0"),
        (["engine.slot=0"], r"engine.slot=0.0"),
        (["engine.window=0"], r"engine.window=0"),
        (["cluster.size=8"], r"cluster.size=8 is invalid; allowed: 0 when cluster.servers is listed"),
        (["cluster=uniform", "cluster.size=0"], r"cluster.size=0"),
        (["cluster=uniform", "+cluster.mix.a100=1.0"], r"cluster.mix.a100='a100'.*allowed: paper_gpu"),
        (["cluster=uniform", "cluster.mix.paper_gpu=0"], r"a share > 0"),
        (["cluster.gpu_kinds.paper_gpu.speed=0"], r"cluster.gpu_kinds.paper_gpu.speed=0.0"),
        (["cluster.gpu_kinds.paper_gpu.relative_to=v100"], r"relative_to='v100'"),
        (["seed=-1"], r"seed=-1"),
        (["backend.name=tpu"], r"backend.name='tpu'.*allowed: gpu, sim"),
        (["quality.name=fancy"], r"quality.name='fancy'.*allowed: monotone, paper, table"),
    ],
)
def test_every_validated_field_names_itself_and_the_allowed_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_experiment(overrides)


def test_checkpoint_shorthand_becomes_the_schedulers_checkpoint():
    cfg = compose_experiment(["scheduler=eat", "checkpoint=/tmp/policy.pt"])
    assert cfg.scheduler.checkpoint == "/tmp/policy.pt"
    assert compose_experiment(["scheduler=eat"]).scheduler.checkpoint == "auto"


def test_shipped_trace_workload_runs_without_a_task_count_or_horizon():
    """A trace ends with its file: n_tasks and horizon may both be null."""
    from eatbench.experiment.runner import run_experiment

    cfg = compose_experiment(["workload=trace"])
    assert cfg.workload.n_tasks is None and cfg.workload.horizon is None
    summary = run_experiment(cfg, write=False).summary
    assert summary["tasks_done"] + summary["tasks_unfinished"] == 40  # the rows of conf/traces/example.csv


def test_nan_anywhere_in_the_config_names_its_field():
    for override, field_name in [
        ("workload.slot=nan", "workload.slot"),
        ("cluster.gpu_kinds.paper_gpu.speed=inf", "cluster.gpu_kinds.paper_gpu.speed"),
        ("+scheduler.params.wait_prob=nan", "scheduler.params.wait_prob"),
        ("train.time_scale=nan", "train.time_scale"),
    ]:
        with pytest.raises(ConfigError, match=rf"{field_name}=(nan|inf) is invalid; allowed: a finite number"):
            compose_experiment([override])


def test_names_that_become_folders_cannot_leave_the_output_root():
    with pytest.raises(ConfigError, match=r"experiment='../x' is invalid; allowed: a non-empty name without /"):
        to_experiment_config({"experiment": "../x"})
    with pytest.raises(ConfigError, match=r"cluster.name='a b' is invalid"):
        to_experiment_config({"cluster": {"name": "a b"}})
