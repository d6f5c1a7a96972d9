"""The registry of ``eatbench`` commands: ``@command(name, help)`` registers a task
function, which ``eatbench.cli.main`` runs as a Hydra app. A module low in the layers, so
that command modules anywhere (``eatbench.report.cli``, ``eatbench.gpu_cli``, a plugin's
own) register without importing the command line itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from eatbench.core.config import ExperimentConfig

#: command name -> (one-line help, task function taking the composed config)
COMMANDS: dict[str, tuple[str, Callable[[DictConfig], object]]] = {}
#: command name -> its own ``--flags`` (flag -> takes a value), taken out before Hydra parses the rest
FLAGS: dict[str, dict[str, bool]] = {}
#: the flags of the running command (``--wandb-report-json PATH`` -> ``{"wandb_report_json": "PATH"}``)
OPTIONS: dict[str, object] = {}
#: commands that run a grid themselves and take sweep overrides (``scheduler=a,b``) without ``-m``
TAKES_SWEEPS: set[str] = set()
#: command name -> a check of its validated config run before Hydra starts (raises ConfigError)
CHECKS: dict[str, Callable[[ExperimentConfig], None]] = {}


def command(
    name: str,
    help: str,
    flags: dict[str, bool] | None = None,
    takes_sweeps: bool = False,
    check: Callable[[ExperimentConfig], None] | None = None,
) -> Callable:
    """Register ``fn`` as ``eatbench <name>``; ``flags`` are its own ``--flag`` options
    (``True``: takes a value), read by the task from :data:`OPTIONS`. With ``takes_sweeps``,
    sweep overrides (``scheduler=a,b``) are kept from Hydra (which refuses them without
    ``-m``) and given to the task as ``OPTIONS["sweeps"]``. ``check``: inspect the validated
    config (and the files it names) before Hydra starts, so bad input fails with nothing
    written under the output root."""

    def add(fn: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
        COMMANDS[name] = (help, fn)
        FLAGS[name] = dict(flags or {})
        if takes_sweeps:
            TAKES_SWEEPS.add(name)
        if check is not None:
            CHECKS[name] = check
        return fn

    return add
