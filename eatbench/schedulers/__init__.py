"""Schedulers, looked up by name (``scheduler=greedy``). Importing this package registers
every built-in scheduler; :func:`register_target` registers one defined elsewhere, named by
its YAML's ``_target_: my_package.my_module.MyScheduler``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eatbench.schedulers import heuristics as _heuristics  # noqa: F401  (registers)
from eatbench.schedulers import oracle as _oracle  # noqa: F401  (registers; OR-Tools loads on use)
from eatbench.schedulers.base import SCHEDULERS, Scheduler, is_learned, learned_names

if TYPE_CHECKING:
    from eatbench.core.config import SchedulerConfig

__all__ = ["SCHEDULERS", "Scheduler", "is_learned", "learned_names", "register_target"]
from eatbench.schedulers import authors as _authors  # noqa: F401,E402  (registers the release's actors)
from eatbench.schedulers import rl as _rl  # noqa: F401,E402  (registers learned schedulers)


def register_target(config: SchedulerConfig) -> None:
    """Register ``config._target_`` (a ``Scheduler`` subclass outside this package, imported by
    its path) as ``config.name``; nothing to do without a ``_target_``. Idempotent, so every
    process that builds the config (a sweep's workers too) can call it.

    :raises eatbench.core.registry.UnknownNameError: "scheduler._target_=... is invalid; allowed: ...".
    """
    if config._target_:
        SCHEDULERS.register_target(config.name, config._target_, Scheduler, "scheduler")
