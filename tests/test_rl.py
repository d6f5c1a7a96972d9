"""Learned schedulers: networks, SB3 policy wiring, training, checkpoints."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from eatbench.core.config import ConfigError  # noqa: E402
from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import run_experiment  # noqa: E402
from eatbench.schedulers import SCHEDULERS  # noqa: E402
from eatbench.schedulers.rl.checkpoint import CheckpointError, load_policy, save_policy  # noqa: E402
from eatbench.schedulers.rl.encoding import FEATURES  # noqa: E402
from eatbench.schedulers.rl.networks import FusedPolicy, PolicyNet, compile_for_cpu  # noqa: E402
from eatbench.training.env import EdgeAIGCEnv  # noqa: E402
from eatbench.training.presets import ARCHS  # noqa: E402

torch.set_num_threads(1)
TINY = ["cluster.name=tiny2", "cluster.servers=[paper_gpu,paper_gpu]", "workload.k_choices=[1,2]"]


def _cfg(*overrides: str):
    return compose_experiment(list(overrides))


def _sac(arch: str, env, **kw):
    from stable_baselines3 import SAC

    from eatbench.training.policies import ActorOnlyExtractorPolicy, policy_kwargs

    return SAC(ActorOnlyExtractorPolicy, env, policy_kwargs=policy_kwargs(ARCHS[arch]), device="cpu", seed=0, **kw)


@pytest.mark.parametrize("layout", ["paper", "extended"])
@pytest.mark.parametrize("arch", sorted(a for a, spec in ARCHS.items() if not spec.tokens))
def test_network_shapes_for_every_arch_and_layout(arch, layout):
    cfg = _cfg("workload.k_choices=null") if layout == "extended" else _cfg()
    env = EdgeAIGCEnv(cfg, layout=layout)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    assert act_dim == 12 + (layout == "extended")
    net = PolicyNet(obs_dim, act_dim, FEATURES, ARCHS[arch])
    obs = torch.rand(3, obs_dim)
    out = net(obs)
    assert out.shape == (3, act_dim) and bool((out.abs() <= 1).all())
    assert torch.allclose(FusedPolicy(net)(obs), out, atol=1e-5)
    compiled = compile_for_cpu(FusedPolicy(net), obs_dim)  # what the scheduler runs (batch 1)
    assert torch.allclose(compiled(obs[:1]), out[:1], atol=1e-5)


def test_critic_is_plain_mlp_and_its_optimizer_holds_no_actor_extractor_params():
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from eatbench.training.policies import EncoderExtractor

    model = _sac("eat", EdgeAIGCEnv(_cfg()), buffer_size=1000)
    pol = model.policy
    assert isinstance(pol.actor.features_extractor, EncoderExtractor)
    assert isinstance(pol.critic.features_extractor, FlattenExtractor)
    assert isinstance(pol.critic_target.features_extractor, FlattenExtractor)
    actor_ids = {id(p) for p in pol.actor.features_extractor.parameters()}
    critic_ids = {id(p) for g in pol.critic.optimizer.param_groups for p in g["params"]}
    assert actor_ids and not actor_ids & critic_ids
    # the SB3 actor's deterministic action is what the scheduler's PolicyNet computes
    env = EdgeAIGCEnv(_cfg())
    net = PolicyNet(env.observation_space.shape[0], 12, FEATURES, ARCHS["eat"])
    net.load_state_dict({k: v for k, v in pol.actor.state_dict().items() if not k.startswith("log_std")})
    obs, _ = env.reset(seed=1)
    a_sb3, _ = model.predict(obs, deterministic=True)
    a_sb3_again, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a_sb3, a_sb3_again)  # fixed diffusion noise in eval mode
    np.testing.assert_allclose(net(torch.from_numpy(obs)[None])[0].detach().numpy(), a_sb3, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A short EAT training on a 2-server cluster (also exercises export and resume)."""
    from eatbench.training.train import train

    out = tmp_path_factory.mktemp("train")
    cfg = _cfg(
        "scheduler=eat",
        *TINY,
        f"train.out_dir={out}",
        "train.total_steps=300",
        "train.eval_every=150",
        "train.eval_episodes=1",
        "train.wandb=disabled",
        "train.progress=false",
        "+train.params={learning_starts: 100, batch_size: 32}",
    )
    result = train(cfg)
    return cfg, result


def test_training_writes_curve_policy_and_resumes(tiny_policy):
    from eatbench.training.train import train

    cfg, result = tiny_policy
    assert [row["step"] for row in result.curve] == [0, 150, 300]
    for name in ("curve.csv", "curve.json", "policy.pt", "policy.json", "checkpoint/step-000000300/model.zip"):
        assert (result.run_dir / name).is_file(), name
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, total_steps=450))
    again = train(more)
    assert [row["step"] for row in again.curve] == [0, 150, 300, 450]


def test_checkpoint_round_trip_gives_identical_decisions(tiny_policy, tmp_path):
    cfg, result = tiny_policy
    meta, state = load_policy(result.policy_path)
    copy = save_policy(tmp_path / "copy.pt", meta, state)
    runs = []
    for path in (result.policy_path, copy, copy):
        c = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, checkpoint=str(path)), seed=3)
        records = run_experiment(c, write=False).records
        runs.append([(r.task_id, r.steps, r.servers, r.start) for r in records])
    assert runs[0] == runs[1] == runs[2]
    assert any(r[1] > 0 for r in runs[0])  # it launched something


def test_corrupt_and_mismatched_checkpoints_fail_clearly(tiny_policy, tmp_path):
    cfg, result = tiny_policy
    bad = tmp_path / "bad.pt"
    bad.write_bytes(result.policy_path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_policy(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "missing.pt")
    meta, state = load_policy(result.policy_path)
    big = _cfg("scheduler=eat")  # 4 servers
    with pytest.raises(CheckpointError, match="trained for 2 servers"):
        SCHEDULERS.create("eat").load_state(meta, state, big)
    with pytest.raises(CheckpointError, match="'eat' policy, not 'dsac'"):
        SCHEDULERS.create("dsac").load_state(meta, state, cfg)
    wrong_layout = dataclasses.replace(meta, layout="extended")
    with pytest.raises(CheckpointError, match="observation/action sizes"):
        SCHEDULERS.create("eat").load_state(wrong_layout, state, cfg)
    # eat_wide has no size-agnostic fallback (eat, dsac, sac and eat_nodiff fall back to *_set)
    wide = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, name="eat_wide", checkpoint="auto"))
    with pytest.raises(ConfigError, match="no shipped eat_wide checkpoint for cluster 'tiny2'"):
        run_experiment(wide, write=False)


def test_extended_layout_policy_runs_and_checks_k_options(tmp_path):
    cfg = _cfg("scheduler=sac", *TINY, "workload.k_choices=null")
    env = EdgeAIGCEnv(cfg, layout="extended")
    from eatbench.training.train import _policy_meta

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, layout="extended"))
    meta = _policy_meta(cfg, env)
    net = PolicyNet(meta.obs_size, meta.action_size, FEATURES, ARCHS["sac"])
    path = save_policy(tmp_path / "ext.pt", meta, net.state_dict())
    c = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, checkpoint=str(path)))
    res = run_experiment(c, write=False)
    # the policy decided at every epoch and every arrived task is accounted for
    assert res.summary["decisions"] > 0 and res.summary["tasks"] == len(res.records) > 0
    assert res.summary["tasks_done"] + res.summary["tasks_unfinished"] == res.summary["tasks"]
    sched = SCHEDULERS.create("sac")
    sched.load_checkpoint(str(path), c)
    with pytest.raises(CheckpointError, match="chooses k among"):
        sched.reset(0, [1])


def _beats_random(arch: str, steps: int, seed: int, cluster: tuple[str, ...] = ()) -> tuple[float, float]:
    """Mean paper reward over 5 evaluation seeds of a policy trained ``steps`` env steps,
    and of Random, on the same workloads."""
    import statistics

    from eatbench.training.train import train

    out = os.environ.get("PYTEST_TMP", "/tmp") + f"/eatbench-rl-{arch}-{seed}-{os.getpid()}"
    cfg = _cfg(
        f"scheduler={arch}",
        *cluster,
        f"seed={seed}",
        f"train.out_dir={out}",
        f"train.total_steps={steps}",
        f"train.eval_every={steps}",
        "train.eval_episodes=1",
        "train.wandb=disabled",
        "train.progress=false",
        "train.resume=false",
        "+train.params={learning_starts: 200, batch_size: 64, train_freq: 1}",
    )
    result = train(cfg)
    learned = [
        run_experiment(
            dataclasses.replace(
                cfg,
                seed=s,
                checkpoint=str(result.policy_path),
                scheduler=dataclasses.replace(cfg.scheduler, checkpoint=str(result.policy_path)),
            ),
            write=False,
        ).summary["reward_total"]
        for s in range(5)
    ]
    rand = dataclasses.replace(cfg.scheduler, name="random", checkpoint=None, params={})
    baseline = [
        run_experiment(dataclasses.replace(cfg, seed=s, scheduler=rand), write=False).summary["reward_total"]
        for s in range(5)
    ]
    return statistics.fmean(learned), statistics.fmean(baseline)


# A fast (< 30 s) "beats Random" check was not reliable: 1500-2000 SAC steps gave 119 vs
# 139 (2 servers) and 131 vs 124 (paper4) paper reward. These run the real check on paper4.
# EAT shares this training loop (only its actor differs) but backpropagates through a
# 10-step diffusion chain: 6000 steps take ~2.5 min and do not yet beat Random reliably
# (measured 132 vs 124 and lost on the other seed), so the margin check runs on SAC.
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sac"])
@pytest.mark.parametrize("seed", [0, 1])
def test_training_beats_random(arch, seed):
    learned, rand = _beats_random(arch, 6000, seed)
    assert learned > 1.1 * rand, (learned, rand)


def test_bad_training_settings_name_the_field():
    from eatbench.core.config import ConfigError
    from eatbench.training.train import train

    with pytest.raises(ConfigError, match=r"train.preset='fast' is invalid; allowed: paper, tuned, set"):
        train(_cfg("scheduler=eat", "train.preset=fast"))
    with pytest.raises(ConfigError, match=r"train.params: unknown keys \['lr'\]; allowed: learning_rate"):
        train(_cfg("scheduler=sac", "+train.params={lr: 1}"))
    with pytest.raises(ConfigError, match=r"no learned architecture 'greedy'"):
        train(_cfg("scheduler=greedy"))
