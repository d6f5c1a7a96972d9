"""How the learned schedulers see the engine and act on it: observation and action encodings.

Shared by the gymnasium environment (``eatbench.training.env``) and the learned schedulers,
so a policy trained there is evaluated on exactly the same encoding.

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

``set`` layout (ours, size-agnostic): tokens and actions of ``eatbench.schedulers.rl.tokens``,
server tokens padded to ``max_servers``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from eatbench.core.config import TRAIN_LAYOUTS, ExperimentConfig
from eatbench.engine.cluster import Cluster
from eatbench.engine.loop import Decision
from eatbench.engine.view import EngineView, absolute_speed
from eatbench.engine.workload import k_options

FEATURES = 4
OBS_CLIP = 10.0
LAYOUTS = TRAIN_LAYOUTS  # paper, extended, set (size-agnostic tokens, ours: eatbench.schedulers.rl.tokens)


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


def make_codec(config: ExperimentConfig, layout: str, time_scale: float, max_servers: int | None = None) -> tuple:
    """``(encoder, decoder)`` of ``layout`` for ``config``'s cluster and engine settings.

    :param time_scale: seconds that map to 1.0 in observations.
    :param max_servers: ``set`` layout: server token slots (default: the cluster's size).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid; allowed: {', '.join(LAYOUTS)}")
    cluster = Cluster.from_config(config.cluster)
    e = config.engine
    if layout == "set":
        from eatbench.schedulers.rl.tokens import TokenActionDecoder, TokenEncoder

        max_servers = len(cluster) if max_servers is None else max_servers
        if len(cluster) > max_servers:
            raise ValueError(f"max_servers={max_servers} is invalid; allowed: >= the cluster's {len(cluster)}")
        encoder = TokenEncoder(e.window, max_servers, time_scale)
        return encoder, TokenActionDecoder(e.window, k_options(config, max_servers), e.min_steps, e.max_steps)
    speeds = [absolute_speed(cluster, s.gpu_kind) for s in cluster.servers]
    encoder = ObservationEncoder(e.window, len(cluster), time_scale, speeds)
    return encoder, ActionDecoder(e.window, layout, k_options(config, len(cluster)), e.min_steps, e.max_steps)
