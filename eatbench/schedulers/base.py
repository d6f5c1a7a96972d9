"""The scheduler protocol. A scheduler sees the engine through its read-only
``EngineView`` (``eatbench.engine.view``) at each decision epoch and returns a ``Decision`` to
launch one task, or ``None`` to wait for the next epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from eatbench.core.registry import Registry

if TYPE_CHECKING:
    from eatbench.core.config import ExperimentConfig
    from eatbench.core.tasks import Task
    from eatbench.engine.loop import Decision
    from eatbench.engine.view import EngineView


class Scheduler(ABC):
    """Base class: holds the step count, the allowed k values and a seeded RNG.

    Subclasses implement ``decide`` only. Register one with ``@SCHEDULERS.register(name)``
    and add ``conf/scheduler/<name>.yaml``.

    :param steps: denoising steps for schedulers that do not choose them.
    """

    registry_name: str = "scheduler"

    def __init__(self, steps: int = 20) -> None:
        if steps < 1:
            raise ValueError(f"scheduler.params.steps={steps} is invalid; allowed: an integer >= 1")
        self.steps = steps
        self.k_options: list[int] = [1]
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int, k_options: list[int]) -> None:
        """Called before each episode.

        :param seed: the experiment seed (seed the scheduler's own randomness from it).
        :param k_options: the k values a task without a fixed k may run with.
        """
        self.rng = np.random.default_rng([seed, 0x5C4ED])
        self.k_options = list(k_options)

    def ks_for(self, task: Task) -> list[int]:
        """The k values ``task`` may run with."""
        return [task.k] if task.k is not None else self.k_options

    @classmethod
    def checkpoint_file(cls, cfg: ExperimentConfig) -> str | None:
        """The file this scheduler would load for ``cfg`` (learned schedulers), else ``None``.
        Result folders are keyed by its contents, so a retrained policy is a new run."""
        return None

    def provenance(self) -> dict[str, object]:
        """Facts about this scheduler's inputs that the run's ``summary.json`` records under
        ``scheduler_provenance`` (e.g. a checkpoint's SHA-256); empty by default."""
        return {}

    def clamp_steps(self, view: EngineView, steps: int) -> int:
        """``steps`` clamped to the engine's ``[min_steps, max_steps]``."""
        return min(max(steps, view.min_steps), view.max_steps)

    @abstractmethod
    def decide(self, view: EngineView) -> Decision | None:
        """The decision at this epoch, or ``None`` to wait. ``view`` is read-only: it
        answers questions about the engine's state and hands out nothing mutable."""


SCHEDULERS: Registry[Scheduler] = Registry("scheduler")


def torch_on_one_thread() -> None:
    """Run torch on one intra-op thread in this process (schedulers that decide with a
    network call it at every episode start). A decision is one small forward pass, so more
    threads gain nothing; and the thread count changes how float sums are split, so
    near-tied scores, hence decisions and records, would depend on the machine's cores and on
    whether a sweep runs in worker processes (which use one thread) or not."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def is_learned(name: str) -> bool:
    """True if the registered scheduler ``name`` loads a trained checkpoint (its class has
    ``load_checkpoint``): the one definition of a learned scheduler."""
    return name in SCHEDULERS and hasattr(SCHEDULERS.get_class(name), "load_checkpoint")


def learned_names() -> list[str]:
    """The registered learned schedulers (see :func:`is_learned`), sorted."""
    return [name for name in SCHEDULERS.names() if is_learned(name)]
