"""A gymnasium environment over the engine.

``EdgeAIGCEnv`` (registered as ``eatbench/EdgeAIGC-v0``) steps the very ``Engine`` the
runner builds, one decision epoch per ``step``. Observations and actions are those of
``eatbench.schedulers.rl.encoding``, which the learned schedulers use too, so a policy
trained here is evaluated by the runner on exactly the same encoding.

With a ``ScenarioSampler`` (``set`` layout) every episode draws its own cluster and load,
and the server tokens are padded to ``max_servers``. ``unfinished_penalty`` (0 in the
paper's setting) is subtracted, per task that has not ended, from the reward of an
episode's last step, so that a policy that stops serving pays for it.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from eatbench.core.config import ExperimentConfig, validate
from eatbench.engine.loop import Engine
from eatbench.experiment.runner import build_engine
from eatbench.schedulers.rl.encoding import make_codec


class EdgeAIGCEnv(gym.Env):
    """Scheduling AIGC tasks on an edge cluster, one decision epoch per step.

    :param config: the experiment (cluster, workload, engine, reward); default: the
        paper's 4-server setting.
    :param layout: action layout, ``paper`` or ``extended``.
    :param time_scale: seconds that map to 1.0 in observations.
    :param rate_range: if given, ``(low, high)`` tasks/s: each episode draws its arrival
        rate uniformly from it (train one policy for a whole sweep).
    :param max_episode_steps: truncate an episode after this many decisions.
    :param scenarios: ``set`` layout only: draws each episode's cluster and load
        (``eatbench.training.scenarios.ScenarioSampler``); ``None``: the config's.
    :param max_servers: ``set`` layout: server token slots (default: the cluster's size,
        or the scenario space's largest).
    :param unfinished_penalty: reward subtracted per task not ended when an episode ends.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: ExperimentConfig | None = None,
        layout: str = "paper",
        time_scale: float = 100.0,
        rate_range: tuple[float, float] | None = None,
        max_episode_steps: int = 2000,
        scenarios=None,
        max_servers: int | None = None,
        unfinished_penalty: float = 0.0,
    ) -> None:
        self.config = validate(config or ExperimentConfig())
        self.rate_range = tuple(rate_range) if rate_range else None
        self.max_episode_steps = max_episode_steps
        self.layout = layout
        self.scenarios = scenarios
        self.unfinished_penalty = unfinished_penalty
        if scenarios is not None and layout != "set":
            raise ValueError(f"layout={layout!r} takes no scenarios (its size is fixed); allowed: layout=set")
        if layout == "set" and max_servers is None and scenarios is not None:
            max_servers = scenarios.space.max_servers
        self.encoder, self.decoder = make_codec(self.config, layout, time_scale, max_servers)
        self.observation_space = self.encoder.space()
        self.action_space = self.decoder.space()
        self.engine: Engine | None = None
        self._episode_rng = np.random.default_rng(0)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._episode_rng = np.random.default_rng(seed)
        episode_seed = int(self._episode_rng.integers(2**31 - 1))
        cfg = self.scenarios.sample(self._episode_rng) if self.scenarios is not None else self.config
        if self.rate_range and self.scenarios is None:
            rate = float(self._episode_rng.uniform(*self.rate_range))
            cfg = dataclasses.replace(cfg, workload=dataclasses.replace(cfg.workload, rate=rate))
        cfg = dataclasses.replace(cfg, seed=episode_seed)
        self.engine = build_engine(cfg)
        self._steps = 0
        self.engine.next_decision()
        return self._observe(), self._info()

    def _observe(self) -> np.ndarray:
        return self.encoder.encode(self.engine.view)

    def step(self, action):
        engine = self.engine
        assert engine is not None, "call reset() first"
        decision = self.decoder.decode(engine.view, np.asarray(action, dtype=np.float32))
        reward = engine.apply(decision)
        self._steps += 1
        alive = engine.next_decision()
        terminated = not alive
        truncated = alive and self._steps >= self.max_episode_steps
        if (terminated or truncated) and self.unfinished_penalty:
            reward -= self.unfinished_penalty * sum(1 for r in engine.records.values() if r.status == "unfinished")
        return self._observe(), float(reward), terminated, truncated, self._info()

    def _info(self) -> dict:
        e = self.engine
        return {"time": e.now, "queued": e.view.queue_length, "launches": e.n_launches} if e else {}
