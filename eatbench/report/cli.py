"""``eatbench report`` and ``eatbench sweep`` (imported by ``eatbench.cli`` on start).

- ``eatbench report [output.root=DIR/results] [output.wandb=offline] [+allow_dirty=true]``:
  rebuild ``DIR/REPORT.md`` (default ``reports/``) and its figures from the result files
  alone. The committed report (``reports/``) is refused from a tree with uncommitted
  changes unless ``+allow_dirty=true`` (its first line then says so).
- ``eatbench sweep +experiment=NAME [overrides...]``: run the experiment's whole grid
  in-process with a progress bar and resume (``python -m eatbench.sweep`` adds ``--quick``
  and ``--seeds``). ``eatbench run -m +experiment=NAME`` runs the same grid through a
  Hydra launcher instead.

For both, results live in ``output.root`` (default ``reports/results``) and the report
directory is its parent.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from eatbench.cli import command
from eatbench.config import ConfigError

DEFAULT_ROOT = Path("reports") / "results"


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def _results_root(overrides: list[str], raw: DictConfig) -> Path:
    """``output.root`` if given on the command line, else ``reports/results``."""
    given = any(o.split("=", 1)[0] == "output.root" for o in overrides)
    return Path(raw.output.root) if given else DEFAULT_ROOT


@command("report", "rebuild REPORT.md and figures from result files (output.root=DIR/results)")
def report_command(raw: DictConfig) -> object:
    from omegaconf import OmegaConf

    from eatbench.report.markdown import ReportError, write_report

    root = _results_root(_task_overrides(), raw)
    try:
        path = write_report(root.parent, root, allow_dirty=bool(OmegaConf.select(raw, "allow_dirty", default=False)))
    except ReportError as err:
        raise ConfigError(str(err)) from err
    print(f"[eatbench] report -> {path}")
    mode = str(raw.output.wandb)
    if mode != "disabled":
        from eatbench.report.wandb_log import log_experiments

        logged = log_experiments(root, mode=mode, wandb_dir=root.parent, figures_dir=root.parent / "figures")
        print(f"[eatbench] W&B ({mode}): {logged.runs} runs" + "".join(f"\n  error: {e}" for e in logged.errors))
    return str(path)


@command("sweep", "run an experiment's grid in-process with progress and resume (+experiment=NAME)")
def sweep_command(raw: DictConfig) -> object:
    from eatbench.config import ConfigError
    from eatbench.sweep import run_sweep

    overrides = _task_overrides()
    experiment = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "+experiment"), None)
    if experiment is None:
        raise ConfigError("eatbench sweep needs +experiment=NAME (a conf/experiment file)")
    root = _results_root(overrides, raw)
    rest = [o for o in overrides if o.split("=", 1)[0] not in ("+experiment", "output.root")]
    res = run_sweep(experiment, rest, root=root)
    note = "".join(f"\n  skipped {s}: {why}" for s, why in res.skipped.items())
    print(f"[eatbench] {res.experiment}: {len(res.results)} runs ({res.reused} reused) -> {root}{note}")
    return len(res.results)
