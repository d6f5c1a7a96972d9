"""Size-agnostic (set-based) observation and action of the learned schedulers: ours, not
the paper's.

The paper's layout (``eatbench.schedulers.rl.encoding.ObservationEncoder``) has one row per server, so a
policy is tied to the server count it was trained for. Here the state is a set of
tokens, one per visible task and one per server plus one global token, each ``TOKEN``
numbers wide; a network that attends over tokens (or pools them) runs on any cluster.

Token layout (times divided by ``time_scale`` seconds, everything clipped to
[0, ``OBS_CLIP``]); columns 0-3 say what the token is:

- ``[is_task, is_server, is_global, present, ...]``; ``present`` = 0 marks padding
  (training pads the server tokens to ``max_servers`` so the replay buffer has one shape);
- task:   wait / time_scale, k / 8 (0 if the scheduler chooses k), resolution / 1024,
  isolated duration at ``ref_steps`` steps on the fastest kind / time_scale, 0;
- server: idle, time until free / time_scale, warm group size / 8, GPU speed, reserved;
- global: queued tasks / window, running tasks / servers, reserved servers / servers,
  log2(servers) / 6, 0.

Tokens are ordered tasks (``window`` slots, oldest first), servers, global.

Action (Box in [-1, 1]): ``[execute, steps, k, score_1..score_window]``: launch if
execute > 0 the visible task with the highest score, with steps mapped linearly onto
[min_steps, max_steps] and k (for tasks without a fixed k) from the allowed values, on the
gang that finishes it earliest (the ``earliest_finish`` scheduler's candidate gangs: the
k unreserved servers that free up first, or a warm group of size k for the task's model).
The placement is a rule, not learned: see the README for the measurement behind it.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from eatbench.engine.loop import Decision
from eatbench.engine.placement import earliest_finish_gang
from eatbench.engine.view import EngineView
from eatbench.schedulers.rl.encoding import OBS_CLIP

TOKEN = 9  # numbers per token
KIND_COLUMNS = 4  # is_task, is_server, is_global, present

K_SCALE = 8.0
REF_STEPS = 20


class TokenEncoder:
    """Engine state -> ``(window + servers + 1) x TOKEN`` float32 tokens, flattened.

    :param window: task slots.
    :param max_servers: server slots (tokens beyond the cluster's size are padding);
        ``None``: exactly the cluster's servers (no padding).
    :param time_scale: seconds that map to 1.0.
    """

    def __init__(self, window: int, max_servers: int | None, time_scale: float) -> None:
        self.window = window
        self.max_servers = max_servers
        self.time_scale = time_scale

    def n_tokens(self, n_servers: int) -> int:
        return self.window + (self.max_servers if self.max_servers is not None else n_servers) + 1

    def space(self) -> gym.spaces.Box:
        if self.max_servers is None:
            raise ValueError("an unpadded token encoder has no fixed observation space")
        return gym.spaces.Box(0.0, OBS_CLIP, shape=(self.n_tokens(self.max_servers) * TOKEN,), dtype=np.float32)

    def encode(self, view: EngineView) -> np.ndarray:
        """Tokens of the engine's state (GPU speeds from ``view.speed``)."""
        n = view.n_servers
        if self.max_servers is not None and n > self.max_servers:
            raise ValueError(f"cluster has {n} servers; this encoder pads to max_servers={self.max_servers}")
        tok = np.zeros((self.n_tokens(n), TOKEN), dtype=np.float32)
        now, ts = view.now, self.time_scale
        speeds = [view.speed(s) for s in range(n)]
        fastest = [view.gpu_kind(int(np.argmax(speeds)))]
        profile = view.profile
        for i, task in enumerate(view.visible()):
            k = task.k or 0
            iso = profile.duration(fastest * max(k, 1), task.model, task.resolution, REF_STEPS, False)
            tok[i] = (1, 0, 0, 1, (now - task.arrival) / ts, k / K_SCALE, task.resolution / 1024, iso / ts, 0)
        base = self.window
        for s in range(n):
            group = view.warm_group(s)
            tok[base + s] = (
                0,
                1,
                0,
                1,
                float(view.is_idle(s)),
                view.time_until_free(s) / ts,
                (len(group[0]) / K_SCALE) if group else 0.0,
                speeds[s],
                float(view.is_reserved(s)),
            )
        queued, running = view.queue_length / self.window, view.n_running / n
        tok[-1] = (0, 0, 1, 1, queued, running, view.n_reserved / n, math.log2(n) / 6, 0)
        np.clip(tok, 0.0, OBS_CLIP, out=tok)
        return tok.reshape(-1)


class TokenActionDecoder:
    """``[execute, steps, k, score_1..score_window]`` in [-1, 1] -> ``Decision`` or ``None``.

    :param window: task-score slots.
    :param k_options: k values for tasks without a fixed k.
    :param min_steps: fewest denoising steps.
    :param max_steps: most denoising steps.
    """

    def __init__(self, window: int, k_options: list[int], min_steps: int, max_steps: int) -> None:
        self.window, self.k_options = window, list(k_options)
        self.min_steps, self.max_steps = min_steps, max_steps
        self.size = 3 + window

    def space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-1.0, 1.0, shape=(self.size,), dtype=np.float32)

    def steps(self, a: float) -> int:
        frac = (float(np.clip(a, -1, 1)) + 1) / 2
        return int(round(self.min_steps + frac * (self.max_steps - self.min_steps)))

    def k_choice(self, a: float, n_servers: int) -> int:
        ks = [k for k in self.k_options if k <= n_servers] or self.k_options[:1]
        frac = (float(np.clip(a, -1, 1)) + 1) / 2
        return ks[min(int(frac * len(ks)), len(ks) - 1)]

    def decode(self, view: EngineView, action: np.ndarray) -> Decision | None:
        if action[0] <= 0:
            return None
        visible = view.visible()
        if not visible:
            return None
        task = visible[int(np.argmax(action[3 : 3 + len(visible)]))]
        k = task.k if task.k is not None else self.k_choice(action[2], view.n_servers)
        steps = self.steps(action[1])
        gang = earliest_finish_gang(view, task, k, steps)
        return None if gang is None else Decision(task.id, steps, gang)
