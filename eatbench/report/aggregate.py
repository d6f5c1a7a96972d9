"""Read result files (``summary.json`` + ``records.csv`` per run) into pandas tables.

Everything in a report is computed from these files alone. Times are seconds, rates tasks/s.
A run's files live in ``<root>/<experiment>/<scheduler>/<point>/seed=<seed>/``; a folder
without ``summary.json`` is an unfinished run and is ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from eatbench.metrics import mean_ci95

#: columns that identify a run (everything else in ``load_runs`` is a metric or a setting).
ID_COLUMNS = ("experiment", "scheduler", "point", "seed")
#: settings taken from each run's resolved config (the x axes of the figures).
SETTING_COLUMNS = ("cluster", "n_servers", "workload", "arrival", "rate", "cv", "backend", "git_revision")
#: metrics shown in tables, with their display format.
TABLE_METRICS = {
    "response_mean": "{:.1f}",
    "response_p50": "{:.1f}",
    "response_p90": "{:.1f}",
    "response_p99": "{:.1f}",
    "wait_mean": "{:.1f}",
    "quality_mean": "{:.3f}",
    "slo_attainment": "{:.1%}",
    "reward_total": "{:.0f}",
    "cold_start_rate": "{:.1%}",
    "utilisation_mean": "{:.1%}",
}


def base_experiment(name: str) -> str:
    """``paper_rates@1a2b3c`` -> ``paper_rates`` (a variant run with extra overrides)."""
    return name.split("@", 1)[0]


def summary_files(root: str | Path) -> list[Path]:
    """Every finished run's ``summary.json`` under ``root`` (sorted)."""
    return sorted(Path(root).glob("*/*/*/seed=*/summary.json"))


def load_runs(root: str | Path, experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per finished run: ids, settings, every summary metric, and ``path``.

    :param root: results root.
    :param experiments: keep only these experiment (folder) names.
    """
    keep = set(experiments) if experiments is not None else None
    rows = []
    for path in summary_files(root):
        payload = json.loads(path.read_text())
        if keep is not None and payload["experiment"] not in keep:
            continue
        cfg = payload.get("config", {})
        wl = cfg.get("workload", {})
        row = {
            "experiment": payload["experiment"],
            "scheduler": payload["scheduler"],
            "point": payload["point"],
            "seed": int(payload["seed"]),
            "cluster": cfg.get("cluster", {}).get("name", ""),
            "n_servers": int(payload["summary"].get("n_servers", 0)),
            "workload": wl.get("name", ""),
            "arrival": wl.get("arrival", ""),
            "rate": float(wl.get("rate", math.nan)),
            "cv": float(wl.get("cv", math.nan)),
            "backend": (payload.get("backend") or {}).get("backend", ""),
            "git_revision": payload.get("git_revision", ""),
        }
        for key, value in payload["summary"].items():
            row[key] = math.nan if value is None else value
        row["path"] = str(path.parent)
        rows.append(row)
    columns = [*ID_COLUMNS, *SETTING_COLUMNS]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*columns, "path"])
    return df.sort_values(["experiment", "scheduler", "n_servers", "rate", "seed"]).reset_index(drop=True)


def load_records(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-task records of ``runs`` (rows of :func:`load_runs`), with the run's ids and
    settings as extra columns."""
    frames = []
    for _, run in runs.iterrows():
        recs = pd.read_csv(Path(run["path"]) / "records.csv")
        for col in (*ID_COLUMNS, "rate", "n_servers"):
            recs[col] = run[col]
        frames.append(recs)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_meta(path: str | Path) -> dict:
    """The full ``summary.json`` payload of one run (config, versions, revision)."""
    return json.loads((Path(path) / "summary.json").read_text())


def aggregate(runs: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and 95% CI half-width across seeds, per (experiment, scheduler, point).

    Columns: ids, settings, ``seeds``, ``tasks_done_min``/``tasks_done_sum`` (the tasks
    behind each percentile: per seed, and pooled), and ``<metric>``, ``<metric>_ci95``.
    """
    metrics = list(metrics or TABLE_METRICS)
    rows = []
    for (exp, sched, point), grp in runs.groupby(["experiment", "scheduler", "point"], sort=False):
        first = grp.iloc[0]
        row = {"experiment": exp, "scheduler": sched, "point": point}
        row.update({c: first[c] for c in SETTING_COLUMNS if c in grp})
        row["seeds"] = len(grp)
        row["tasks_done_min"] = int(grp["tasks_done"].min())
        row["tasks_done_sum"] = int(grp["tasks_done"].sum())
        for m in metrics:
            if m not in grp:
                continue
            mean, ci = mean_ci95([float(v) for v in grp[m]])
            row[m], row[f"{m}_ci95"] = mean, ci
        rows.append(row)
    return pd.DataFrame(rows)


def reduction_table(runs: pd.DataFrame, target: str, metric: str = "response_mean", x: str = "rate") -> pd.DataFrame:
    """Reduction (%) of ``metric`` by ``target`` against every other scheduler at each ``x``.

    Paired by seed (the same seed gives the same task stream): per seed
    ``100 * (1 - target / baseline)``, then mean and 95% CI across seeds. Positive means
    ``target`` is better (lower).
    """
    rows = []
    mine = runs[runs["scheduler"] == target].set_index(["point", "seed"])[metric]
    for (sched, point), grp in runs[runs["scheduler"] != target].groupby(["scheduler", "point"], sort=False):
        per_seed = []
        for _, r in grp.iterrows():
            key = (point, r["seed"])
            if key in mine.index and r[metric] > 0:
                per_seed.append(100.0 * (1.0 - float(mine.loc[key]) / float(r[metric])))
        mean, ci = mean_ci95(per_seed)
        rows.append({"baseline": sched, x: grp.iloc[0][x], "reduction_pct": mean, "ci95": ci, "seeds": len(per_seed)})
    out = pd.DataFrame(rows, columns=["baseline", x, "reduction_pct", "ci95", "seeds"])
    return out.sort_values(["baseline", x]).reset_index(drop=True)


def fmt_ci(mean: float, ci: float, spec: str = "{:.1f}") -> str:
    """``12.3 ± 0.4`` (no ``±`` part when the CI is undefined)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = spec.format(mean)
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return text
    return f"{text} ± {spec.format(ci).rstrip('%')}" + ("%" if spec.endswith("%}") else "")


#: where the learned schedulers' shipped checkpoints and training curves live.
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def load_training_curves(root: str | Path = CHECKPOINT_DIR) -> pd.DataFrame:
    """Training curves written next to checkpoints: ``curve.csv`` files, and ``*.json``
    sidecars holding a ``curve`` list (plus ``scheduler`` and ``seed``).

    Columns: ``scheduler``, ``seed``, ``step`` (env steps), ``eval_return``, ``source``.
    A run folder named ``<scheduler>-...-seed<N>`` gives scheduler and seed when the file
    does not. Empty when there are none.
    """
    root = Path(root)
    frames: list[pd.DataFrame] = []
    seen: set[tuple[str, int, str]] = set()
    for path in sorted(root.glob("**/*.json")) + sorted(root.glob("**/curve.csv")):
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text())
                info = data if isinstance(data, dict) else {}
                rows = info.get("curve") if isinstance(data, dict) else data
            else:
                info, rows = {}, pd.read_csv(path).to_dict("records")
        except (OSError, ValueError):
            continue
        if not rows or not isinstance(rows, list) or not {"step", "eval_return"} <= set(rows[0]):
            continue
        sched, seed = _name_and_seed(path.parent.name if path.name.startswith("curve") else path.stem)
        sched = str(info.get("scheduler", sched))
        seed = int(info.get("seed", seed))
        key = (sched, seed, str(path.parent))
        if key in seen:  # curve.json and curve.csv of one run
            continue
        seen.add(key)
        df = pd.DataFrame(rows)[["step", "eval_return"]]
        df["scheduler"], df["seed"], df["source"] = sched, seed, str(path.relative_to(root))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["scheduler", "seed", "step", "eval_return", "source"])
    return pd.concat(frames, ignore_index=True)


def _name_and_seed(name: str) -> tuple[str, int]:
    """``eat-paper8-paper-tuned-seed3`` -> (``eat``, 3); no seed part -> 0."""
    head, _, tail = name.rpartition("-seed")
    seed = int(tail) if head and tail.isdigit() else 0
    return name.split("-", 1)[0], seed
