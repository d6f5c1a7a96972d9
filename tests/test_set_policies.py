"""Size-agnostic learned schedulers (ours): token state, networks on any cluster size,
padding, the training distribution, cross-cluster evaluation and a short training run."""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from eatbench.core.config import ConfigError, validate  # noqa: E402
from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import build_engine, run_experiment  # noqa: E402
from eatbench.schedulers.rl.set_networks import SetActorNet, SetQNet  # noqa: E402
from eatbench.schedulers.rl.tokens import TOKEN, TokenEncoder  # noqa: E402
from eatbench.training.env import EdgeAIGCEnv  # noqa: E402
from eatbench.training.presets import ARCHS, SET_ARCHS  # noqa: E402
from eatbench.training.scenarios import ScenarioSampler, mean_task_seconds  # noqa: E402

torch.set_num_threads(1)


def _cfg(*overrides: str):
    return compose_experiment(list(overrides))


def _cluster(n: int) -> list[str]:
    if n == 1:
        return ["cluster=uniform", "cluster.size=1", "workload.k_choices=[1]"]
    return ["cluster=hetero8"] if n == 8 else ["cluster=uniform", f"cluster.size={n}"]


def _tokens(cfg, max_servers=None, decisions: int = 3) -> np.ndarray:
    """Tokens of ``cfg``'s engine after a few FIFO launches (so servers are busy/warm)."""
    from eatbench.schedulers.heuristics import FifoScheduler

    engine = build_engine(validate(cfg))
    sched = FifoScheduler()
    sched.reset(0, [1])
    for _ in range(decisions):
        if not engine.next_decision():
            break
        engine.apply(sched.decide(engine.view))
    engine.next_decision()
    return TokenEncoder(cfg.engine.window, max_servers, 100.0).encode(engine.view)


@pytest.mark.parametrize("arch", SET_ARCHS)
def test_one_network_runs_on_1_4_7_and_64_servers(arch):
    net = SetActorNet(10, ARCHS[arch]).eval()
    outs = []
    for n in (1, 4, 7, 64):
        obs = torch.from_numpy(_tokens(_cfg(*_cluster(n), "workload=poisson")))
        assert obs.shape[0] == (10 + n + 1) * TOKEN
        out = net(obs.unsqueeze(0))
        assert out.shape == (1, 2 * 13) and bool(torch.isfinite(out).all())
        outs.append(out)
    assert not torch.allclose(outs[0], outs[-1])  # the state (and so the action) depends on the cluster


@pytest.mark.parametrize("arch", SET_ARCHS)
def test_masked_padding_changes_no_output(arch):
    cfg = _cfg("cluster=hetero8", "workload=bursty")
    plain = torch.from_numpy(_tokens(cfg, None)).unsqueeze(0)
    padded = torch.from_numpy(_tokens(cfg, 40)).unsqueeze(0)
    assert padded.shape[1] == plain.shape[1] + 32 * TOKEN
    net = SetActorNet(10, ARCHS[arch]).eval()
    assert torch.allclose(net(plain), net(padded), atol=1e-5)
    q = SetQNet(10, ARCHS[arch])
    act = torch.rand(1, 13) * 2 - 1
    assert torch.allclose(q(plain, act), q(padded, act), atol=1e-5)
    # ... while a change in a real token does change it
    moved = plain.clone()
    moved[0, 10 * TOKEN + 5] += 1.0  # first server: busy for 100 s more
    assert not torch.allclose(net(plain), net(moved), atol=1e-5)


def test_scenarios_are_valid_and_span_the_space():
    base = _cfg()
    sampler = ScenarioSampler(base)
    rng = np.random.default_rng(0)
    sizes, arrivals, utils = set(), set(), []
    per_task = mean_task_seconds(base)
    for _ in range(60):
        cfg = validate(sampler.sample(rng))
        n = len(cfg.cluster.servers)
        sizes.add(n)
        arrivals.add(cfg.workload.arrival)
        assert 2 <= n <= 16 and all(k <= n for k in cfg.workload.k_choices)
        speeds = [cfg.cluster.gpu_kinds[s].speed for s in cfg.cluster.servers]
        utils.append(cfg.workload.rate * per_task / sum(speeds))
    assert arrivals == {"bernoulli", "poisson", "gamma", "cosine"}
    assert min(sizes) <= 4 and max(sizes) >= 14
    assert 0.1 <= min(utils) < 0.3 and 0.7 < max(utils) <= 0.9


def test_unfinished_penalty_is_charged_at_the_episode_end():
    cfg = _cfg("workload.n_tasks=6", "workload.horizon=null", "workload.initial_queue=6")
    env = EdgeAIGCEnv(cfg, layout="set", unfinished_penalty=3.0)
    env.reset(seed=0)
    wait = np.full(env.action_space.shape, -1.0, dtype=np.float32)  # never launch
    done, last = False, 0.0
    while not done:
        _, last, term, trunc, _ = env.step(wait)
        done = term or trunc
    assert last == pytest.approx(-3.0 * 6)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.scenarios=some", r"train.scenarios='some' is invalid; allowed: none, mixed"),
        ("train.n_envs=0", r"train.n_envs=0 is invalid; allowed: an integer in \[1, 256\]"),
        (
            "train.unfinished_penalty=-1",
            r"train.unfinished_penalty=-1.0 is invalid; allowed: a reward >= 0 per unfinished task",
        ),
        ("train.layout=tokens", r"train.layout='tokens' is invalid; allowed: paper, extended, set"),
    ],
)
def test_bad_training_settings_of_the_set_layout_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(_cfg("scheduler=eat_set", override))


def test_a_fixed_layout_checkpoint_may_not_claim_any_cluster_size(tmp_path):
    from eatbench.schedulers.rl.checkpoint import CheckpointError, PolicyMeta, load_policy, save_policy

    meta = PolicyMeta("eat", {}, "paper", "any", 0, 10, 100.0, [1], 36, 12)
    path = save_policy(tmp_path / "p.pt", meta, {"w": torch.zeros(1)})
    with pytest.raises(
        CheckpointError, match=r"n_servers=0 is invalid; allowed: an integer >= 1 \(0: any, for layout set\)"
    ):
        load_policy(path)


def test_the_campaign_refuses_an_unknown_scheduler(capsys):
    from eatbench.training.campaign import main

    with pytest.raises(SystemExit):
        main(["--archs", "eat_set,greedy"])
    assert "--archs=greedy is invalid; allowed: eat_set, dsac_set, sac_set, eat_nodiff_set" in capsys.readouterr().err


def test_set_layout_needs_a_set_architecture():
    from eatbench.training.train import train

    with pytest.raises(ConfigError, match=r"train.layout='paper' is invalid for scheduler 'eat_set'"):
        train(_cfg("scheduler=eat_set"))
    with pytest.raises(ConfigError, match=r"train.scenarios='mixed' is invalid"):
        validate(_cfg("scheduler=eat", "train.scenarios=mixed"))


TINY = ["cluster.name=tiny2", "cluster.servers=[paper_gpu,paper_gpu]", "workload.k_choices=[1,2]"]


@pytest.fixture(scope="module")
def trained_eat(tmp_path_factory):
    """eat_set trained briefly on a 2-server cluster (the real training path, set layout)."""
    from eatbench.training.train import train

    out = tmp_path_factory.mktemp("set-train")
    cfg = _cfg(
        "scheduler=eat_set",
        *TINY,
        "train.layout=set",
        "train.preset=set",
        "train.n_envs=8",
        f"train.out_dir={out}",
        "train.total_steps=6000",
        "train.eval_every=3000",
        "train.eval_episodes=2",
        "train.wandb=disabled",
        "train.progress=false",
        "+train.params={learning_starts: 500}",
    )
    return cfg, train(cfg)


def test_training_over_scenarios_runs(tmp_path):
    """The size-agnostic training path (``+train=set``: scenario draws, 4 envs) end to end."""
    from eatbench.training.train import train

    cfg = _cfg(
        "scheduler=sac_set",
        "+train=set",
        "train.n_envs=4",
        f"train.out_dir={tmp_path}",
        "train.total_steps=800",
        "train.eval_every=800",
        "train.eval_episodes=1",
        "train.wandb=disabled",
        "train.progress=false",
        "+train.params={learning_starts: 200}",
    )
    result = train(cfg)
    assert result.steps >= 800 and result.policy_path.is_file()
    assert [row["step"] for row in result.curve][0] == 0


def test_a_checkpoint_trained_on_one_cluster_runs_on_others(trained_eat):
    cfg, result = trained_eat
    for cluster in (_cluster(8) + ["workload=bursty", "workload.n_tasks=60"], _cluster(64) + ["workload=poisson"]):
        c = _cfg("scheduler=eat_set", f"checkpoint={result.policy_path}", *cluster)
        res = run_experiment(c, write=False)
        assert res.summary["decisions"] > 0 and res.summary["tasks_done"] > 0
        assert res.meta["scheduler_provenance"]["policy_layout"] == "set"


def test_short_training_beats_random_on_a_tiny_cluster(trained_eat):
    """EAT itself (not only SAC): a few thousand steps on a 2-server cluster beat Random on
    the paper reward it is trained for, by a margin that holds across seeds: the paired
    difference over 12 workload seeds has its 95% interval above 5% of Random's reward."""
    from eatbench.core.stats import paired_difference

    _, result = trained_eat
    learned = _cfg("scheduler=eat_set", f"checkpoint={result.policy_path}", *TINY)
    rand = _cfg("scheduler=random", *TINY)
    mine, base = [], []
    for seed in range(12):
        summary = run_experiment(dataclasses.replace(learned, seed=seed), write=False).summary
        assert summary["completion_rate"] == 1.0
        mine.append(summary["reward_total"])
        base.append(run_experiment(dataclasses.replace(rand, seed=seed), write=False).summary["reward_total"])
    diff = paired_difference(mine, base)
    assert diff.low > 0.05 * statistics.fmean(base), (diff, mine, base)
    assert result.curve[-1]["eval_return"] > result.curve[0]["eval_return"]


@pytest.mark.parametrize("arch", ["eat", "dsac", "sac", "eat_nodiff"])
def test_fixed_layout_names_fall_back_to_the_shipped_size_agnostic_policy(arch):
    """``scheduler=eat cluster=hetero8`` (no fixed-layout checkpoint for hetero8) runs the
    shipped ``eat_set`` policy, and the run says so; on paper4 it stays the paper's layout."""
    res = run_experiment(
        _cfg(f"scheduler={arch}", "cluster=hetero8", "workload=bursty", "workload.n_tasks=40"), write=False
    )
    assert res.meta["scheduler_provenance"] == {"policy_arch": f"{arch}_set", "policy_layout": "set"}
    assert res.summary["tasks_done"] > 0
    paper = run_experiment(_cfg(f"scheduler={arch}", "cluster=paper4"), write=False)
    assert "scheduler_provenance" not in paper.meta
