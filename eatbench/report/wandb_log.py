"""Log result files to Weights & Biases: one run per (experiment, scheduler, point, seed).

Each W&B run mirrors one result folder (``<experiment>/<scheduler>/<point>/seed=<s>/``):

- its **id** is derived from that folder (:func:`run_id`), so logging the same results again
  updates the same runs instead of creating duplicates;
- ``group`` is the experiment and ``job_type`` the scheduler; the config holds the ids, the
  swept settings (``rate`` in tasks/s, ``n_servers``) and the resolved experiment config;
- one history row with the settings and the metrics, and ``define_metric`` makes the
  experiment's swept setting (``rate`` or ``n_servers``) the x-axis of every metric, so a
  W&B line plot grouped by scheduler draws the F-figures;
- its summary is the run's ``summary.json`` metrics (all of them, e.g. ``completion_rate``
  and ``tasks_unfinished``) plus the settings;
- the per-task records as a ``wandb.Table`` (``task_records``); the experiment's report figures are
  attached to its first run.

W&B is offline by default and never required: every run is first written as JSONL under
``<wandb_dir>/eatbench-wandb/`` (the source of truth, read back by tests), and any W&B error
is collected and reported, never raised, so local results are never lost.
Offline runs land in ``<wandb_dir>/wandb/offline-run-*``; upload them with
``wandb sync <wandb_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eatbench.core.config import WANDB_MODES
from eatbench.report.aggregate import TABLE_METRICS, load_meta, load_runs

PROJECT = "eatbench"
#: metrics of the history row (besides the x values), the y-axes of the W&B report's plots.
HISTORY_METRICS = (*TABLE_METRICS, "tasks_done", "throughput", "goodput", "decision_time_mean_s")
#: x values of a run: arrival rate (tasks/s) and cluster size.
X_KEYS = ("rate", "n_servers")


@dataclass
class LogResult:
    """What was logged: run count, JSONL files, offline ``.wandb`` files, errors."""

    wandb_dir: Path
    runs: int = 0
    jsonl: list[Path] = field(default_factory=list)
    wandb_files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RunPayload:
    """Everything logged for one result folder (one W&B run).

    :param run_id: deterministic W&B run id (:func:`run_id`).
    :param name: display name ``<experiment>/<scheduler>/<point>/seed<seed>``.
    :param x: the experiment's swept setting (``rate`` or ``n_servers``): the plots' x-axis.
    :param config: ids, settings and the resolved experiment config.
    :param history: the one history row (x values and :data:`HISTORY_METRICS`).
    :param summary: every summary metric of the run plus its x values.
    :param records: the per-task records (``records.csv``).
    """

    run_id: str
    name: str
    x: str
    config: dict
    history: dict
    summary: dict
    records: pd.DataFrame


@dataclass(frozen=True)
class LogTarget:
    """Where and how runs are logged.

    :param mode: ``offline`` (no network), ``online`` or ``disabled`` (JSONL only).
    :param wandb_dir: W&B writes ``<wandb_dir>/wandb/``; JSONL goes to ``<wandb_dir>/eatbench-wandb/``.
    :param project: W&B project.
    :param entity: W&B entity (``None``: the logged-in user's default).
    """

    mode: str = "offline"
    wandb_dir: Path = Path("reports")
    project: str = PROJECT
    entity: str | None = None


def _clean(value: object) -> object:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())  # type: ignore[union-attr]
    return value


def run_id(experiment: str, scheduler: str, folder: str, seed: int) -> str:
    """Deterministic W&B run id of one result folder: the same (experiment, scheduler,
    point folder, seed) always gets the same id, so a rerun updates its run."""
    key = f"{experiment}/{scheduler}/{folder}/seed={int(seed)}"
    return "eb-" + hashlib.sha1(key.encode()).hexdigest()[:20]


def x_key(runs: pd.DataFrame) -> str:
    """The swept setting of an experiment's runs: ``n_servers`` if the cluster size varies
    and the rate does not vary per size, else ``rate``."""
    from eatbench.report.markdown import x_column

    names = runs["experiment"].unique()
    return x_column(str(names[0]), runs) if len(names) else "rate"


def run_payloads(runs: pd.DataFrame) -> Iterator[RunPayload]:
    """One :class:`RunPayload` per finished run (row of ``load_runs``), in a stable order."""
    for exp, grp in runs.groupby("experiment", sort=True):
        x = x_key(grp)
        grp = grp.sort_values(["scheduler", "n_servers", "rate", "point", "seed"])
        for _, row in grp.iterrows():
            folder = Path(row["path"]).parent.name
            meta = load_meta(row["path"])
            settings = {"rate": _clean(row["rate"]), "n_servers": int(row["n_servers"])}
            config = {
                "experiment": exp,
                "scheduler": row["scheduler"],
                "point": row["point"],
                "seed": int(row["seed"]),
                **settings,
                "backend": row["backend"],
                "git_revision": meta.get("git_revision", ""),
                "config": meta.get("config", {}),
            }
            history = {**settings, **{m: _clean(row[m]) for m in HISTORY_METRICS if m in row}}
            summary = {k: _clean(v) for k, v in (meta.get("summary") or {}).items()}
            summary.update(settings)
            records = pd.read_csv(Path(row["path"]) / "records.csv")
            yield RunPayload(
                run_id=run_id(exp, row["scheduler"], folder, row["seed"]),
                name=f"{exp}/{row['scheduler']}/{row['point']}/seed{int(row['seed'])}",
                x=x,
                config=config,
                history=history,
                summary=summary,
                records=records,
            )


def log_experiments(
    results_root: str | Path,
    experiments: Iterable[str] | None = None,
    *,
    mode: str = "offline",
    wandb_dir: str | Path = "reports",
    figures_dir: str | Path | None = None,
    project: str = PROJECT,
) -> LogResult:
    """Log every finished run under ``results_root`` to W&B (and JSONL).

    :param experiments: only these experiment folders (default: all).
    :param mode: ``offline`` (default; no network), ``online`` or ``disabled`` (JSONL only).
    :param wandb_dir: W&B writes ``<wandb_dir>/wandb/``; JSONL goes to ``<wandb_dir>/eatbench-wandb/``.
    :param figures_dir: PNGs named ``*_<experiment>.png`` to attach (to each experiment's first run).
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"output.wandb={mode} is invalid; allowed: {', '.join(WANDB_MODES)}")
    target = LogTarget(mode=mode, wandb_dir=Path(wandb_dir), project=project)
    out = LogResult(target.wandb_dir / "wandb")
    runs = load_runs(results_root, experiments)
    if runs.empty:
        return out
    wandb = _import_wandb(out) if mode != "disabled" else None
    first_of: set[str] = set()
    for payload in run_payloads(runs):
        jsonl = target.wandb_dir / "eatbench-wandb" / f"{payload.run_id}.jsonl"
        write_jsonl(jsonl, payload)
        out.jsonl.append(jsonl)
        out.runs += 1
        if wandb is None:
            continue
        exp = payload.config["experiment"]
        figures: list[Path] = []
        if figures_dir is not None and exp not in first_of:
            base = exp.split("@", 1)[0]
            figures = sorted(Path(figures_dir).glob(f"*_{base}.png"))
        first_of.add(exp)
        try:
            path = _log_one(wandb, target, payload, figures)
            out.wandb_files.append(path)
            _append_jsonl(jsonl, {"type": "wandb", "file": str(path)})
        except Exception as err:
            out.errors.append(f"{payload.name}: {type(err).__name__}: {err}")
    return out


def _import_wandb(out: LogResult):
    try:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        return wandb
    except Exception as err:  # wandb missing or broken: keep the JSONL
        out.errors.append(f"import wandb: {err}")
        return None


def _log_one(wandb, target: LogTarget, payload: RunPayload, figures: list[Path]) -> Path:
    """Log one run (created, or updated when its id exists) and return its ``.wandb`` file."""
    target.wandb_dir.mkdir(parents=True, exist_ok=True)
    if target.mode == "offline":  # a rerun replaces its local copy (``wandb sync`` merges by id anyway)
        for old in (target.wandb_dir / "wandb").glob(f"offline-run-*-{payload.run_id}"):
            shutil.rmtree(old, ignore_errors=True)
    cfg = payload.config
    run = wandb.init(
        project=target.project,
        entity=target.entity,
        dir=str(target.wandb_dir),
        mode=target.mode,
        id=payload.run_id,
        resume="allow",
        name=payload.name,
        group=cfg["experiment"],
        job_type=cfg["scheduler"],
        tags=[cfg["scheduler"], str(cfg["backend"])],
        config=cfg,
        reinit="finish_previous",
        settings=_lean_settings(wandb),
    )
    try:
        for key in X_KEYS:
            run.define_metric(key)
        for metric in payload.history:
            if metric not in X_KEYS:
                run.define_metric(metric, step_metric=payload.x)
        run.log(payload.history, step=0)
        for key, value in payload.summary.items():
            run.summary[key] = value
        if not payload.records.empty:
            records = payload.records.astype(object).where(payload.records.notna(), None)
            run.log({"task_records": wandb.Table(dataframe=records)}, step=0)
        for png in figures:
            run.log({f"figures/{png.stem}": wandb.Image(str(png))}, step=0)
        path = Path(run.dir).parent / f"run-{run.id}.wandb"
    finally:
        run.finish()
    return path


def _lean_settings(wandb):
    """Settings that keep W&B from collecting what a result run does not need (the pip package
    list, git state, system stats, console capture): a run is the record of one result folder,
    whose ``config`` already holds the git revision; skipping them makes each run much cheaper to
    log (hundreds of runs per sweep)."""
    return wandb.Settings(
        x_save_requirements=False,
        disable_git=True,
        x_disable_stats=True,
        console="off",
        save_code=False,
        disable_job_creation=True,
    )


def write_jsonl(path: Path, payload: RunPayload) -> None:
    """The local record of one run: a ``config`` line, a ``history`` line, a ``summary`` line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"type": "config", "id": payload.run_id, "name": payload.name, "x": payload.x, **payload.config}]
    lines.append({"type": "history", **payload.history})
    lines.append({"type": "summary", **payload.summary})
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
