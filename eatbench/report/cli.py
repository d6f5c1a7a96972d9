"""``eatbench report`` and ``eatbench sweep`` (imported by ``eatbench.cli`` on start).

Where things go (the same default for every command, ``eatbench run``, ``eatbench run -m``,
``eatbench sweep``, ``python -m eatbench.experiment.sweep``, ``pytest benchmarks``, ``eatbench report``
and the nox sessions): result files in ``output.root`` (default ``reports/results``), the
report (``REPORT.md``, ``figures/``, ``data/``, W&B runs) in :func:`report_dir_for` of it:
``DIR/results`` -> ``DIR`` (so ``reports/``); any other root (or one directly in the current
directory) -> ``<root>/report``, never the current directory.

- ``eatbench report [output.root=DIR/results] [output.wandb=offline|online]
  [--wandb-report] [--wandb-report-json PATH] [+allow_dirty=true]``: rebuild the report from
  the result files alone; optionally log the runs to W&B, publish the W&B Report
  (``--wandb-report`` logs the runs online and saves the report; needs a W&B login) or write
  its definition (offline JSON). The committed report (``reports/``) is refused from a tree
  with uncommitted changes unless ``+allow_dirty=true`` (its first line then says so).
- ``eatbench sweep +experiment=NAME [overrides...]``: run the experiment's whole grid
  in-process with a progress bar and resume (``python -m eatbench.experiment.sweep`` adds ``--quick``
  and ``--seeds``). ``eatbench run -m +experiment=NAME`` runs the same grid through a
  Hydra launcher instead.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from eatbench.core.commands import OPTIONS, command
from eatbench.core.config import ConfigError

DEFAULT_REPORT_DIR = Path("reports")
DEFAULT_ROOT = DEFAULT_REPORT_DIR / "results"


def report_dir_for(root: str | Path) -> Path:
    """The report directory of the results root ``root``: its parent when the root is
    ``DIR/results`` (``reports/results`` -> ``reports``), else ``<root>/report`` (never the
    current directory)."""
    root = Path(root)
    parent = root.parent
    if root.name == "results" and parent.resolve() != Path.cwd().resolve():
        return parent
    return root / "report"


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


@command(
    "report",
    "rebuild REPORT.md and figures from result files (output.root=DIR/results; --wandb-report[-json PATH])",
    flags={"--wandb-report": False, "--wandb-report-json": True},
)
def report_command(raw: DictConfig) -> object:
    from omegaconf import OmegaConf

    from eatbench.report.markdown import ReportError, write_report

    root = Path(raw.output.root)
    out_dir = report_dir_for(root)
    try:
        path = write_report(out_dir, root, allow_dirty=bool(OmegaConf.select(raw, "allow_dirty", default=False)))
    except ReportError as err:
        raise ConfigError(str(err)) from err
    print(f"[eatbench] report -> {path}")
    mode = str(raw.output.wandb)
    given = any(o.split("=", 1)[0] == "output.wandb" for o in _task_overrides())
    if OPTIONS.get("wandb_report") and not given:
        mode = "online"  # the W&B Report reads its runs from W&B: log them there first
    if mode != "disabled":
        from eatbench.report.wandb_log import log_experiments

        logged = log_experiments(root, mode=mode, wandb_dir=out_dir, figures_dir=out_dir / "figures")
        print(f"[eatbench] W&B ({mode}): {logged.runs} runs" + "".join(f"\n  error: {e}" for e in logged.errors))
        if mode == "offline" and logged.wandb_files:
            print(f"  upload: wandb sync {out_dir / 'wandb'}/offline-run-*")
    if OPTIONS.get("wandb_report_json"):
        from eatbench.report.wandb_report import write_report_json

        print(f"[eatbench] W&B report definition -> {write_report_json(root, str(OPTIONS['wandb_report_json']))}")
    if OPTIONS.get("wandb_report"):
        from eatbench.report.wandb_report import publish_report

        if mode != "online":
            raise ConfigError(
                f"output.wandb={mode} is invalid with --wandb-report; allowed: online (the default with "
                "--wandb-report: the report reads the runs from W&B; offline, use --wandb-report-json PATH)"
            )
        print(f"[eatbench] W&B report -> {publish_report(root)}")
    return str(path)


@command("sweep", "run an experiment's grid in-process with progress and resume (+experiment=NAME)", takes_sweeps=True)
def sweep_command(raw: DictConfig) -> object:
    from eatbench.experiment.sweep import run_sweep

    overrides = _task_overrides()
    experiment = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "+experiment"), None)
    if experiment is None:
        raise ConfigError("eatbench sweep needs +experiment=NAME (a conf/experiment file)")
    root = Path(raw.output.root)
    rest = [o for o in overrides if o.split("=", 1)[0] not in ("+experiment", "output.root")]
    rest += list(OPTIONS.get("sweeps", ()))  # scheduler=a,b: replaces the experiment's list
    res = run_sweep(experiment, rest, root=root)
    note = "".join(f"\n  skipped {s}: {why}" for s, why in res.skipped.items())
    print(f"[eatbench] {res.experiment}: {len(res.results)} runs ({res.reused} reused) -> {root}{note}")
    return len(res.results)
