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
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np

from eatbench.config import ExperimentConfig, validate
from eatbench.engine import Decision, Engine

FEATURES = 4
OBS_CLIP = 10.0
LAYOUTS = ("paper", "extended")


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

    def encode(self, engine: Engine) -> np.ndarray:
        obs = np.zeros((self.rows, FEATURES), dtype=np.float32)
        now, n, ts = engine.now, self.n_servers, self.time_scale
        for i, task in enumerate(engine.visible()):
            obs[i] = (1.0, (now - task.arrival) / ts, (task.k or 0) / n, task.resolution / 1024)
        base = self.window
        for s in range(n):
            idle = engine.running_task[s] < 0 and engine.reserved_by[s] < 0
            group = engine.residency.warm_group(s)
            obs[base + s] = (
                float(idle),
                max(0.0, engine.free_at[s] - now) / ts,
                (len(group[0]) / n) if group else 0.0,
                self.speeds[s],
            )
        obs[-1] = (
            len(engine.queue) / self.window,
            len(engine.jobs) / n,
            sum(1 for r in engine.reserved_by if r >= 0) / n,
            0.0,
        )
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

    def decode(self, engine: Engine, action: np.ndarray) -> Decision | None:
        if action[0] <= 0:
            return None
        visible = engine.visible()
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
        servers = engine.default_servers(k, task.model)
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
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: ExperimentConfig | None = None,
        layout: str = "paper",
        time_scale: float = 100.0,
        rate_range: tuple[float, float] | None = None,
        max_episode_steps: int = 2000,
    ) -> None:
        from eatbench.runner import k_options

        self.config = validate(config or ExperimentConfig())
        self.rate_range = tuple(rate_range) if rate_range else None
        self.max_episode_steps = max_episode_steps
        from eatbench.cluster import Cluster

        cluster = Cluster.from_config(self.config.cluster)
        speeds = [_absolute_speed(cluster, s.gpu_kind) for s in cluster.servers]
        e = self.config.engine
        self.encoder = ObservationEncoder(e.window, len(cluster), time_scale, speeds)
        self.decoder = ActionDecoder(e.window, layout, k_options(self.config, len(cluster)), e.min_steps, e.max_steps)
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
        cfg = self.config
        if self.rate_range:
            rate = float(self._episode_rng.uniform(*self.rate_range))
            cfg = dataclasses.replace(cfg, workload=dataclasses.replace(cfg.workload, rate=rate))
        cfg = dataclasses.replace(cfg, seed=episode_seed)
        from eatbench.runner import build_engine

        self.engine = build_engine(cfg)
        self._steps = 0
        self.engine.next_decision()
        return self.encoder.encode(self.engine), self._info()

    def step(self, action):
        engine = self.engine
        assert engine is not None, "call reset() first"
        decision = self.decoder.decode(engine, np.asarray(action, dtype=np.float32))
        reward = engine.apply(decision)
        self._steps += 1
        alive = engine.next_decision()
        terminated = not alive
        truncated = alive and self._steps >= self.max_episode_steps
        return self.encoder.encode(engine), float(reward), terminated, truncated, self._info()

    def _info(self) -> dict:
        e = self.engine
        return {"time": e.now, "queued": len(e.queue), "launches": e.n_launches} if e else {}


def _absolute_speed(cluster, kind: str) -> float:
    speed, seen = 1.0, set()
    while kind and kind not in seen:
        seen.add(kind)
        spec = cluster.gpu_kinds[kind]
        speed *= spec.speed
        kind = spec.relative_to
    return float(speed) if math.isfinite(speed) else 1.0
