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

from eatbench.core.stats import mean_interval, paired_difference, paired_reduction

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
    """One row per finished run: ids, settings, every summary metric, and ``path``. When a
    point of a scheduler has runs in two folders (rerun with other scheduler parameters or a
    retrained checkpoint at the same path), the newest ``summary.json`` of each seed counts;
    runs of different checkpoint files (the training seeds of T2) all count.

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
        row["_checkpoint"] = str((cfg.get("scheduler") or {}).get("checkpoint") or "")
        row["_written"] = path.stat().st_mtime
        rows.append(row)
    columns = [*ID_COLUMNS, *SETTING_COLUMNS]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*columns, "path"])
    # a point rerun with other scheduler parameters or another checkpoint (a new folder beside
    # the old one) supersedes the older run of the same seed: only the newest counts
    key = ["experiment", "scheduler", "point", "seed", "_checkpoint"]  # named checkpoints stay apart (T2)
    df = df.sort_values("_written").drop_duplicates(key, keep="last").drop(columns=["_written", "_checkpoint"])
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
    """Mean and 95% bootstrap interval across seeds, per (experiment, scheduler, point).

    Columns: ids, settings, ``seeds``, ``tasks_min``/``tasks_sum`` (the tasks behind each
    percentile: per seed, and pooled; unfinished tasks count, censored), ``completion_min``
    (the lowest completion rate of any seed), ``unfinished_sum`` (tasks not finished over all
    seeds), and ``<metric>``, ``<metric>_lo``, ``<metric>_hi``.
    """
    metrics = list(metrics or TABLE_METRICS)
    rows = []
    for (exp, sched, point), grp in runs.groupby(["experiment", "scheduler", "point"], sort=False):
        first = grp.iloc[0]
        row = {"experiment": exp, "scheduler": sched, "point": point}
        row.update({c: first[c] for c in SETTING_COLUMNS if c in grp})
        row["seeds"] = len(grp)
        row["tasks_min"] = int(grp["tasks"].min())
        row["tasks_sum"] = int(grp["tasks"].sum())
        row["completion_min"] = float(grp["completion_rate"].min()) if "completion_rate" in grp else math.nan
        row["unfinished_sum"] = int((grp["tasks"] - grp["tasks_done"]).sum())
        for m in metrics:
            if m not in grp:
                continue
            iv = mean_interval([float(v) for v in grp[m]], m)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = iv.estimate, iv.low, iv.high
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(runs: pd.DataFrame, a: str, b: str, point: str, metric: str) -> tuple[list[float], list[float]]:
    """Values of ``metric`` for schedulers ``a`` and ``b`` at ``point`` on the seeds both ran."""
    sel = runs[runs["point"] == point]
    va = sel[sel["scheduler"] == a].set_index("seed")[metric]
    vb = sel[sel["scheduler"] == b].set_index("seed")[metric]
    seeds = sorted(set(va.index) & set(vb.index))
    return [float(va[s]) for s in seeds], [float(vb[s]) for s in seeds]


def reduction_table(runs: pd.DataFrame, target: str, metric: str = "response_mean", x: str = "rate") -> pd.DataFrame:
    """Reduction (%) of ``metric`` by ``target`` against every other scheduler at each ``x``.

    Paired by seed (the same seed gives the same task stream): ``100 * (1 - mean(target) /
    mean(baseline))`` with a paired 95% bootstrap interval over seeds. Positive means
    ``target`` is better (lower); ``separated`` when the interval excludes 0.
    """
    rows = []
    for (sched, point), grp in runs[runs["scheduler"] != target].groupby(["scheduler", "point"], sort=False):
        mine, base = _paired(runs, target, sched, point, metric)
        iv = paired_reduction(mine, base)
        rows.append(
            {
                "baseline": sched,
                x: grp.iloc[0][x],
                "reduction_pct": iv.estimate,
                "low": iv.low,
                "high": iv.high,
                "separated": iv.resolved,
                "seeds": iv.n,
            }
        )
    out = pd.DataFrame(rows, columns=["baseline", x, "reduction_pct", "low", "high", "separated", "seeds"])
    return out.sort_values(["baseline", x]).reset_index(drop=True)


def pairwise_table(runs: pd.DataFrame, metric: str = "response_mean", x: str = "rate") -> pd.DataFrame:
    """Every scheduler against every other at each ``x``: the paired mean difference
    ``row - col`` of ``metric`` over shared seeds with its 95% bootstrap interval."""
    rows = []
    scheds = sorted(runs["scheduler"].unique())
    for point, grp in runs.groupby("point", sort=False):
        xv = grp.iloc[0][x]
        present = [s for s in scheds if s in set(grp["scheduler"])]
        for a in present:
            for b in present:
                if a == b:
                    continue
                va, vb = _paired(runs, a, b, point, metric)
                iv = paired_difference(va, vb)
                rows.append(
                    {
                        "scheduler": a,
                        "other": b,
                        x: xv,
                        "diff": iv.estimate,
                        "low": iv.low,
                        "high": iv.high,
                        "separated": iv.resolved,
                        "seeds": iv.n,
                    }
                )
    return pd.DataFrame(rows, columns=["scheduler", "other", x, "diff", "low", "high", "separated", "seeds"])


def fmt_ci(mean: float, low: float = math.nan, high: float = math.nan, spec: str = "{:.1f}") -> str:
    """``12.3 [11.9, 12.8]`` (no interval part when it is undefined, e.g. under 3 seeds)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = spec.format(mean)
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return text
    return f"{text} [{spec.format(low)}, {spec.format(high)}]"


#: where the learned schedulers' shipped checkpoints and training curves live.
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


#: the sub-folder of the checkpoint folder holding one checkpoint per training seed.
SEEDS_SUBDIR = "seeds"
#: curve columns kept besides ``step`` (``eval_response_mean`` is absent from older curves).
CURVE_COLUMNS = ("eval_return", "eval_response_mean")


def load_training_curves(root: str | Path = CHECKPOINT_DIR) -> pd.DataFrame:
    """Training curves written next to checkpoints: ``curve.csv`` files, and ``*.json``
    sidecars holding a ``curve`` list (plus ``scheduler`` and ``seed``).

    Columns: ``scheduler``, ``seed``, ``step`` (env steps), ``eval_return``,
    ``eval_response_mean`` (s; ``nan`` where a curve lacks it), ``source``. A run folder named
    ``<scheduler>-...-seed<N>`` gives scheduler and seed when the file does not. One curve
    per (scheduler, seed, folder); a (scheduler, seed) found under ``seeds/`` (one checkpoint
    per training seed) wins over the same training run shipped elsewhere (``<arch>-any.json``
    is a copy of ``seeds/<arch>-any-seed0.json``). Empty when there are none.
    """
    root = Path(root)
    found: dict[tuple[str, int, str], pd.DataFrame] = {}
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
        if key in found:  # curve.json and curve.csv of one run
            continue
        df = pd.DataFrame(rows)
        df = df.reindex(columns=["step", *CURVE_COLUMNS])
        df["scheduler"], df["seed"], df["source"] = sched, seed, str(path.relative_to(root))
        found[key] = df
    in_seeds = {(s, n) for (s, n, _), df in found.items() if _under_seeds(df["source"].iloc[0])}
    frames = [df for (s, n, _), df in found.items() if (s, n) not in in_seeds or _under_seeds(df["source"].iloc[0])]
    if not frames:
        return pd.DataFrame(columns=["scheduler", "seed", "step", *CURVE_COLUMNS, "source"])
    return pd.concat(frames, ignore_index=True)


def _under_seeds(source: str) -> bool:
    return Path(source).parts[0] == SEEDS_SUBDIR


def _name_and_seed(name: str) -> tuple[str, int]:
    """``eat-paper8-paper-tuned-seed3`` -> (``eat``, 3); no seed part -> 0."""
    head, _, tail = name.rpartition("-seed")
    seed = int(tail) if head and tail.isdigit() else 0
    return name.split("-", 1)[0], seed
