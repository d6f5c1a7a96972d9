"""The training distribution of the size-agnostic learned schedulers (ours): every
training episode draws a cluster and a load, so that one checkpoint serves every figure.

``ScenarioSpace`` (the defaults are what the shipped ``*_set`` checkpoints were trained
on, fixed before training):

- servers: uniform in [``min_servers``, ``max_servers``] = [2, 16];
- GPU kinds: with probability 1/2 one kind for the whole cluster, else a random mix of
  ``KINDS`` (the speeds of ``eatbench/conf/cluster/hetero8.yaml``: 0.4, 1.0, 2.5 x the paper GPU);
- arrivals: ``bernoulli``, ``poisson``, ``gamma`` with CV in [1.5, 3] (bursts), ``cosine``;
- load: utilisation u uniform in [0.1, 0.9]; the arrival rate is u times the cluster's
  capacity in tasks/s (``capacity``: sum of server speeds over the mean server-seconds a
  task needs at 20 steps, k drawn from the workload's ``k_choices``, warm);
- tasks: 32 to 160 per episode, k from the workload's ``k_choices`` that fit the
  cluster, 0 to 10 queued at t=0, no horizon (the episode ends when every task has
  ended or nothing can happen any more).

Held out of this distribution (chosen before training; the ``heldout`` experiment):
clusters of 24 and 48 servers, a GPU kind of speed 1.6 never seen in training, and Gamma
bursts of CV 4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from eatbench.core.config import ClusterConfig, ExperimentConfig, GpuKindConfig

#: GPU kinds of the training clusters: name -> speed relative to the paper's GPU
KINDS: dict[str, float] = {"paper_gpu": 1.0, "fast_gpu": 2.5, "slow_gpu": 0.4}
ARRIVALS = ("bernoulli", "poisson", "gamma", "cosine")


@dataclass(frozen=True)
class ScenarioSpace:
    """Ranges the training episodes are drawn from (see the module docstring)."""

    min_servers: int = 2
    max_servers: int = 16
    utilisation: tuple[float, float] = (0.1, 0.9)
    cv: tuple[float, float] = (1.5, 3.0)
    n_tasks: tuple[int, int] = (32, 160)
    initial_queue: tuple[int, int] = (0, 10)


def capacity(speeds: list[float], task_seconds: float) -> float:
    """Tasks per second the cluster can serve at full load: sum of speeds / task_seconds,
    where ``task_seconds`` is the mean server-seconds of one task on the paper GPU."""
    return sum(speeds) / task_seconds


def mean_task_seconds(cfg: ExperimentConfig, steps: int = 20) -> float:
    """Mean server-seconds (k x warm duration at ``steps`` steps on the paper GPU) of a
    task of ``cfg.workload`` (k uniform over its ``k_choices``)."""
    from eatbench.engine.cluster import Cluster
    from eatbench.engine.profiles import load_profile

    cluster = Cluster.from_config(ClusterConfig(name="ref", gpu_kinds={"paper_gpu": GpuKindConfig()}))
    profile = load_profile(cfg.profile.name, cfg.profile.path, cluster.gpu_kinds)
    w = cfg.workload
    ks = w.k_choices or [1]
    work = [k * profile.duration(["paper_gpu"] * k, w.model, r, steps, False) for k in ks for r in w.resolutions]
    return float(np.mean(work))


class ScenarioSampler:
    """Draws one training episode's experiment from ``space`` around ``base``."""

    def __init__(self, base: ExperimentConfig, space: ScenarioSpace | None = None) -> None:
        self.base = base
        self.space = space or ScenarioSpace()
        self.task_seconds = mean_task_seconds(base)

    def sample(self, rng: np.random.Generator) -> ExperimentConfig:
        sp = self.space
        n = int(rng.integers(sp.min_servers, sp.max_servers + 1))
        names = list(KINDS)
        if rng.random() < 0.5:
            servers = [names[int(rng.integers(len(names)))]] * n
        else:
            servers = [names[int(i)] for i in rng.integers(len(names), size=n)]
        kinds = {
            name: GpuKindConfig(speed=KINDS[name], relative_to=None if name == "paper_gpu" else "paper_gpu")
            for name in sorted(set(servers) | {"paper_gpu"})
        }
        cluster = ClusterConfig(name=f"scenario{n}", gpu_kinds=kinds, servers=servers)
        util = float(rng.uniform(*sp.utilisation))
        rate = util * capacity([KINDS[s] for s in servers], self.task_seconds)
        arrival = ARRIVALS[int(rng.integers(len(ARRIVALS)))]
        w = dataclasses.replace(
            self.base.workload,
            arrival=arrival,
            rate=rate,
            cv=float(rng.uniform(*sp.cv)) if arrival == "gamma" else 1.0,
            rate_low=0.2 * rate,
            rate_high=1.8 * rate,
            period_length=float(rng.uniform(200, 2000)),
            n_tasks=int(rng.integers(sp.n_tasks[0], sp.n_tasks[1] + 1)),
            initial_queue=int(rng.integers(sp.initial_queue[0], sp.initial_queue[1] + 1)),
            horizon=None,
            k_choices=[k for k in self.base.workload.k_choices if k <= n] if self.base.workload.k_choices else None,
        )
        return dataclasses.replace(self.base, cluster=cluster, workload=w)
