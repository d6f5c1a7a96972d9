"""A gymnasium environment over the engine: observation and action encoding only.

``EdgeAIGCEnv`` (registered as ``eatbench/EdgeAIGC-v0``) steps the very ``Engine`` the
runner uses, one decision epoch per ``step``. ``ObservationEncoder`` and
``ActionDecoder`` are shared with the learned schedulers, so a policy trained here is
evaluated by the runner on exactly the same encoding.

Observation: rows of ``FEATURES`` numbers, flattened: ``window`` task rows, one row per
server, one global row. Times are relative (no absolute clock) and divided by
``time_scale`` seconds; everything is clipped to [0, ``OBS_CLIP``].

- task row:   present, wait / time_scale, k / N (0 if the scheduler chooses k), resolution / 1024
- server row: idle, remaining busy time / time_scale, warm group size / N, GPU speed
- global row: queued tasks / window, running tasks / N, reserved servers / N, 0

Action (Box in [-1, 1]), ``paper`` layout: ``[execute, steps, score_1..score_window]``:
launch if execute > 0 the present task with the highest score, with steps mapped
linearly onto [min_steps, max_steps], on the paper's placement rule. ``extended`` layout
appends one number that picks k among the allowed values for tasks without a fixed k.
A launch that cannot be placed is a wait with reward 0, as in the paper.

``set`` layout (ours, size-agnostic): tokens and actions of ``eatbench.tokens``; with a
``ScenarioSampler`` every episode draws its own cluster and load, and the server tokens
are padded to ``max_servers``. ``unfinished_penalty`` (0 in the paper's setting) is
subtracted, per task that has not ended, from the reward of an episode's last step, so
that a policy that stops serving pays for it.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from eatbench.cluster import Cluster
from eatbench.config import ExperimentConfig, validate
from eatbench.engine import Decision, Engine
from eatbench.view import EngineView, absolute_speed

FEATURES = 4
OBS_CLIP = 10.0
LAYOUTS = ("paper", "extended", "set")  # set: size-agnostic tokens (ours), see eatbench.tokens


class ObservationEncoder:
    """Engine state -> flat float32 vector (see the module docstring).

    :param window: visible task rows.
    :param n_servers: server rows.
    :param time_scale: seconds that map to 1.0.
    :param speeds: GPU speed of each server (relative throughput).
    """

    def __init__(self, window: int, n_servers: int, time_scale: float, speeds: list[float]) -> None:
        self.window = window
        self.n_servers = n_servers
        self.time_scale = time_scale
        self.speeds = np.asarray(speeds, dtype=np.float32)
        self.rows = window + n_servers + 1
        self.size = self.rows * FEATURES

    def space(self) -> gym.spaces.Box:
        return gym.spaces.Box(0.0, OBS_CLIP, shape=(self.size,), dtype=np.float32)

    def encode(self, view: EngineView) -> np.ndarray:
        obs = np.zeros((self.rows, FEATURES), dtype=np.float32)
        now, n, ts = view.now, self.n_servers, self.time_scale
        for i, task in enumerate(view.visible()):
            obs[i] = (1.0, (now - task.arrival) / ts, (task.k or 0) / n, task.resolution / 1024)
        base = self.window
        for s in range(n):
            group = view.warm_group(s)
            obs[base + s] = (
                float(view.is_idle(s)),
                view.time_until_free(s) / ts,
                (len(group[0]) / n) if group else 0.0,
                self.speeds[s],
            )
        obs[-1] = (view.queue_length / self.window, view.n_running / n, view.n_reserved / n, 0.0)
        np.clip(obs, 0.0, OBS_CLIP, out=obs)
        return obs.reshape(-1)


class ActionDecoder:
    """Flat action in [-1, 1] -> ``Decision`` or ``None`` (wait).

    :param window: number of task-score slots.
    :param layout: ``paper`` or ``extended`` (adds a k choice).
    :param k_options: k values for tasks without a fixed k.
    :param min_steps: fewest denoising steps.
    :param max_steps: most denoising steps.
    """

    def __init__(self, window: int, layout: str, k_options: list[int], min_steps: int, max_steps: int) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is invalid; allowed: {', '.join(LAYOUTS)}")
        self.window, self.layout, self.k_options = window, layout, list(k_options)
        self.min_steps, self.max_steps = min_steps, max_steps
        self.size = 2 + window + (1 if layout == "extended" else 0)

    def space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-1.0, 1.0, shape=(self.size,), dtype=np.float32)

    def steps(self, a: float) -> int:
        frac = (float(np.clip(a, -1, 1)) + 1) / 2
        return int(round(self.min_steps + frac * (self.max_steps - self.min_steps)))

    def k_choice(self, a: float) -> int:
        frac = (float(np.clip(a, -1, 1)) + 1) / 2
        return self.k_options[min(int(frac * len(self.k_options)), len(self.k_options) - 1)]

    def decode(self, view: EngineView, action: np.ndarray) -> Decision | None:
        if action[0] <= 0:
            return None
        visible = view.visible()
        if not visible:
            return None
        scores = action[2 : 2 + len(visible)]
        task = visible[int(np.argmax(scores))]
        if task.k is not None:
            k = task.k
        elif self.layout == "extended":
            k = self.k_choice(action[2 + self.window])
        else:
            k = self.k_options[0]
        servers = view.default_servers(k, task.model, task.resolution)
        if servers is None:
            return None
        return Decision(task.id, self.steps(action[1]), servers)


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
        (``eatbench.schedulers.rl.scenarios.ScenarioSampler``); ``None``: the config's.
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
        from eatbench.workload import k_options

        self.config = validate(config or ExperimentConfig())
        self.rate_range = tuple(rate_range) if rate_range else None
        self.max_episode_steps = max_episode_steps
        self.layout = layout
        self.scenarios = scenarios
        self.unfinished_penalty = unfinished_penalty
        cluster = Cluster.from_config(self.config.cluster)
        e = self.config.engine
        if layout == "set":
            from eatbench.tokens import TokenActionDecoder, TokenEncoder

            if max_servers is None:
                max_servers = scenarios.space.max_servers if scenarios is not None else len(cluster)
            if scenarios is None and len(cluster) > max_servers:
                raise ValueError(f"max_servers={max_servers} is invalid; allowed: >= the cluster's {len(cluster)}")
            self.encoder = TokenEncoder(e.window, max_servers, time_scale)
            ks = k_options(self.config, max_servers)
            self.decoder = TokenActionDecoder(e.window, ks, e.min_steps, e.max_steps)
        else:
            if scenarios is not None:
                raise ValueError(f"layout={layout!r} takes no scenarios (its size is fixed); allowed: layout=set")
            speeds = [absolute_speed(cluster, s.gpu_kind) for s in cluster.servers]
            self.encoder = ObservationEncoder(e.window, len(cluster), time_scale, speeds)
            self.decoder = ActionDecoder(
                e.window, layout, k_options(self.config, len(cluster)), e.min_steps, e.max_steps
            )
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
        from eatbench.runner import build_engine

        self.engine = build_engine(cfg)
        self._steps = 0
        self.engine.next_decision()
        return self._observe(), self._info()

    def _observe(self) -> np.ndarray:
        if self.layout == "set":
            return self.encoder.encode(self.engine.view)
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
