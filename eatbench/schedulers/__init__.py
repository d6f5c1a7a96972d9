"""Schedulers, looked up by name (``scheduler=greedy``). Importing this package registers
every built-in scheduler."""

from eatbench.schedulers import heuristics as _heuristics  # noqa: F401  (registers)
from eatbench.schedulers import oracle as _oracle  # noqa: F401  (registers; OR-Tools loads on use)
from eatbench.schedulers.base import SCHEDULERS, Scheduler, is_learned, learned_names

__all__ = ["SCHEDULERS", "Scheduler", "is_learned", "learned_names"]
from eatbench.schedulers import authors as _authors  # noqa: F401,E402  (registers the release's actors)
from eatbench.schedulers import rl as _rl  # noqa: F401,E402  (registers learned schedulers)
