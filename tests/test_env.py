"""The gymnasium environment over the engine."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import eatbench
from eatbench.experiment.compose import compose_experiment
from eatbench.schedulers.rl.encoding import FEATURES
from eatbench.training.env import EdgeAIGCEnv


@pytest.mark.parametrize("layout", ["paper", "extended"])
def test_env_passes_gymnasiums_checker_without_warnings(layout):
    cfg = compose_experiment(["workload.k_choices=null"]) if layout == "extended" else None
    env = EdgeAIGCEnv(cfg, layout=layout)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_env_is_registered_and_shapes_follow_the_cluster():
    env = gym.make(eatbench.ENV_ID, config=compose_experiment(["cluster=paper8", "workload.k_choices=[1,2,4,8]"]))
    assert env.observation_space.shape == ((10 + 8 + 1) * FEATURES,)
    assert env.action_space.shape == (12,)
    assert EdgeAIGCEnv(layout="extended").action_space.shape == (13,)
    with pytest.raises(ValueError, match="layout='wide'"):
        EdgeAIGCEnv(layout="wide")


def _episode(env, seed, actions_seed=0):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(actions_seed)
    total, arrivals, done = 0.0, [], False
    arrivals = [t.arrival for t in env.unwrapped.engine.tasks]
    while not done:
        obs, r, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        assert env.observation_space.contains(obs)
        total += r
        done = term or trunc
    return total, arrivals


def test_reset_seed_gives_the_same_workload_and_other_seeds_differ():
    env = EdgeAIGCEnv()
    r1, a1 = _episode(env, 5)
    r2, a2 = _episode(env, 5)
    _, a3 = _episode(env, 6)
    assert (r1, a1) == (r2, a2)
    assert a1 != a3


def test_unseeded_resets_draw_new_workloads_each_episode():
    env = EdgeAIGCEnv()
    env.reset(seed=1)
    first = [t.arrival for t in env.engine.tasks]
    env.reset()
    second = [t.arrival for t in env.engine.tasks]
    assert first != second


def test_rate_range_varies_the_rate_per_episode():
    cfg = compose_experiment(["workload=poisson", "workload.n_tasks=200"])
    env = EdgeAIGCEnv(cfg, rate_range=(0.01, 0.5))
    rates = []
    for seed in range(6):
        env.reset(seed=seed)
        ts = env.engine.tasks
        rates.append(len(ts) / ts[-1].arrival)
    assert max(rates) > 3 * min(rates)


def test_observation_is_relative_time_and_normalised():
    env = EdgeAIGCEnv(time_scale=100.0)
    obs, _ = env.reset(seed=0)
    rows = obs.reshape(-1, FEATURES)
    assert rows[:10, 0].sum() == 10  # 10 tasks queued at t=0
    assert np.allclose(rows[:10, 1], 0.0)  # they have waited 0 s
    assert np.all(rows[10:14, 0] == 1.0)  # all servers idle
    assert rows[-1, 0] == pytest.approx(1.0)  # 10 queued / window 10


def test_launch_reward_is_the_paper_reward_and_a_wait_earns_zero():
    env = EdgeAIGCEnv()
    env.reset(seed=0)
    engine = env.engine
    wait = np.full(env.action_space.shape, -1.0, dtype=np.float32)
    assert env.step(wait)[1] == 0.0
    env.reset(seed=0)
    engine = env.engine
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    action[0], action[1], action[2] = 1.0, 1.0, 1.0  # launch the first task with 32 steps
    task = engine.visible()[0]
    servers = engine.default_servers(task.k, task.model)
    est = engine.estimate(task, servers, 32)
    expected = engine.reward(task, est, 32)
    _, reward, *_ = env.step(action)
    assert reward == pytest.approx(expected)
    assert reward == pytest.approx(min(10, 250 / (0 + est.duration)) + 10 * 0.27)


def test_extended_layout_chooses_k():
    cfg = compose_experiment(["workload.k_choices=null"])
    env = EdgeAIGCEnv(cfg, layout="extended")
    env.reset(seed=0)
    action = np.ones(env.action_space.shape, dtype=np.float32)  # last slot 1.0 -> largest k
    env.step(action)
    rec = next(iter(env.engine.records.values()))
    assert rec.k == 4


def test_engine_config_is_honoured():
    cfg = compose_experiment()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, window=4))
    env = EdgeAIGCEnv(cfg)
    assert env.action_space.shape == (6,)
