"""Log result files to Weights & Biases: one run per (experiment, scheduler, seed).

A run's history has one row per swept point (``point_index`` as the step, with ``rate`` and
``n_servers`` as x values), its config the resolved experiment config plus ids, its summary
``<x>=<v>/<metric>`` for every point, a per-task table (``tasks``) and, for the lowest seed,
the experiment's figures. Runs are grouped by experiment (``group``) and typed by scheduler
(``job_type``), so the W&B UI compares schedulers within an experiment.

W&B is offline by default and never required: every run is first written as JSONL under
``<wandb_dir>/eatbench-wandb/`` (the source of truth, read back by tests), and any W&B error
is collected and reported, never raised, so local results are never lost.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eatbench.report.aggregate import TABLE_METRICS, load_meta, load_records, load_runs

PROJECT = "eatbench"
HISTORY_METRICS = (*TABLE_METRICS, "tasks_done", "throughput", "goodput", "decision_time_mean_s")


@dataclass
class LogResult:
    """What was logged: run count, JSONL files, offline ``.wandb`` files, errors."""

    wandb_dir: Path
    runs: int = 0
    jsonl: list[Path] = field(default_factory=list)
    wandb_files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _clean(value: object) -> object:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())  # type: ignore[union-attr]
    return value


def run_payloads(runs: pd.DataFrame) -> Iterable[tuple[dict, list[dict], dict, pd.DataFrame]]:
    """Per (experiment, scheduler, seed): (config, history rows, summary, per-task records)."""
    for (exp, sched, seed), grp in runs.groupby(["experiment", "scheduler", "seed"], sort=True):
        grp = grp.sort_values(["n_servers", "rate", "point"]).reset_index(drop=True)
        meta = load_meta(grp.iloc[0]["path"])
        config = {
            "experiment": exp,
            "scheduler": sched,
            "seed": int(seed),
            "backend": grp.iloc[0]["backend"],
            "git_revision": meta.get("git_revision", ""),
            "points": list(grp["point"]),
            "config": meta.get("config", {}),
        }
        history, summary = [], {"points": len(grp)}
        x = "n_servers" if grp["n_servers"].nunique() > 1 else "rate"
        for i, row in grp.iterrows():
            item = {"point_index": int(i), "rate": _clean(row["rate"]), "n_servers": int(row["n_servers"])}
            item.update({m: _clean(row[m]) for m in HISTORY_METRICS if m in row})
            history.append(item)
            summary.update({f"{x}={row[x]:g}/{m}": _clean(row[m]) for m in TABLE_METRICS if m in row})
        yield config, history, summary, load_records(grp)


def log_experiments(
    results_root: str | Path,
    experiments: Iterable[str] | None = None,
    *,
    mode: str = "offline",
    wandb_dir: str | Path = "reports",
    figures_dir: str | Path | None = None,
    project: str = PROJECT,
) -> LogResult:
    """Log every (experiment, scheduler, seed) under ``results_root`` to W&B (and JSONL).

    :param mode: ``offline`` (default; no network), ``online`` or ``disabled`` (JSONL only).
    :param wandb_dir: W&B writes ``<wandb_dir>/wandb/``; JSONL goes to ``<wandb_dir>/eatbench-wandb/``.
    :param figures_dir: PNGs named ``*_<experiment>.png`` to attach (lowest seed's run only).
    """
    wandb_dir = Path(wandb_dir)
    out = LogResult(wandb_dir / "wandb")
    runs = load_runs(results_root, experiments)
    if runs.empty:
        return out
    wandb = None
    if mode != "disabled":
        try:
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb as _wandb

            wandb = _wandb
        except Exception as err:  # wandb missing or broken: keep the JSONL
            out.errors.append(f"import wandb: {err}")
    min_seed = runs.groupby("experiment")["seed"].min().to_dict()
    for config, history, summary, records in run_payloads(runs):
        name = f"{config['experiment']}/{config['scheduler']}/seed{config['seed']}"
        jsonl = wandb_dir / "eatbench-wandb" / f"{name.replace('/', '__')}.jsonl"
        write_jsonl(jsonl, config, history, summary)
        out.jsonl.append(jsonl)
        out.runs += 1
        if wandb is None:
            continue
        figures = []
        if figures_dir is not None and config["seed"] == min_seed[config["experiment"]]:
            base = config["experiment"].split("@", 1)[0]
            figures = sorted(Path(figures_dir).glob(f"*_{base}.png"))
        try:
            path = _log_one(wandb, project, mode, wandb_dir, name, config, history, summary, records, figures)
            out.wandb_files.append(path)
            _append_jsonl(jsonl, {"type": "wandb", "file": str(path)})
        except Exception as err:
            out.errors.append(f"{name}: {type(err).__name__}: {err}")
    return out


def _log_one(wandb, project, mode, wandb_dir, name, config, history, summary, records, figures) -> Path:
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        dir=str(wandb_dir),
        mode=mode,
        name=name,
        group=config["experiment"],
        job_type=config["scheduler"],
        tags=[config["scheduler"], str(config["backend"])],
        config=config,
        reinit="finish_previous",
    )
    try:
        for item in history:
            run.log(item, step=item["point_index"])
        for key, value in summary.items():
            run.summary[key] = value
        if not records.empty:
            run.log({"tasks": wandb.Table(dataframe=records.astype(object).where(records.notna(), None))})
        for png in figures:
            run.log({f"figures/{png.stem}": wandb.Image(str(png))})
        path = Path(run.dir).parent / f"run-{run.id}.wandb"
    finally:
        run.finish()
    return path


def write_jsonl(path: Path, config: dict, history: list[dict], summary: dict) -> None:
    """The local record of one run: a ``config`` line, ``history`` lines, a ``summary`` line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"type": "config", **config}]
    lines += [{"type": "history", **h} for h in history]
    lines.append({"type": "summary", **summary})
    path.write_text("".join(json.dumps(x, default=str) + "\n" for x in lines))


def _append_jsonl(path: Path, item: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(item) + "\n")


def read_jsonl(path: str | Path) -> tuple[dict, list[dict], dict, str | None]:
    """(config, history, summary, offline ``.wandb`` file or ``None``) of a JSONL record."""
    config: dict = {}
    history: list[dict] = []
    summary: dict = {}
    wandb_file = None
    for line in Path(path).read_text().splitlines():
        item = json.loads(line)
        kind = item.pop("type")
        if kind == "config":
            config = item
        elif kind == "history":
            history.append(item)
        elif kind == "summary":
            summary = item
        elif kind == "wandb":
            wandb_file = item["file"]
    return config, history, summary, wandb_file
