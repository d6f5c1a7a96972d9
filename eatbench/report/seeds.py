"""T2: robustness over training seeds of the size-agnostic agents (ours), with rliable.

Evaluation stage: every training seed's checkpoint of each size-agnostic agent
(``eatbench/data/checkpoints/seeds/<arch>-any-seed<s>.pt``) runs on every held-out point of
``eatbench/conf/experiment/heldout.yaml`` (``+experiment/heldout=c24_u50`` ...) for 10 workload seeds,
beside EarliestFinish on the same workload seeds. The result files go under the results root
in ``<root>/heldout_seeds/<scheduler>/<point>-<checkpoint digest>/seed=<s>/`` (the checkpoint
is part of the folder name, so the training seeds never mix), and a rerun skips finished runs.
It runs with::

    python -m eatbench.report.seeds --root reports/results [--seeds 10] [--jobs N]

which ``nox -s reproduce`` calls after the sweep and before ``eatbench report``. The report
(``eatbench report``) only reads these files; its T2 section says when they are missing.

Score of one training seed = the mean over held-out points and workload seeds of
EarliestFinish's mean response / the agent's (1 = EarliestFinish's level, higher is better).
T2 reports rliable's interquartile mean of the scores over training seeds with its 95%
bootstrap interval (:func:`eatbench.core.stats.iqm_interval`), and the probability of improvement
of ``eat_set`` over each other size-agnostic agent (:func:`eatbench.core.stats.probability_of_improvement`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from eatbench.report import aggregate as agg_mod

#: the result folder of the training-seed evaluation (not a figure experiment of its own).
SEED_EXPERIMENT = "heldout_seeds"
#: the experiment whose points are evaluated.
HELDOUT = "heldout"
#: the size-agnostic agents (ours), in report order; the first is compared with the others.
SET_AGENTS = ("eat_set", "dsac_set", "sac_set", "eat_nodiff_set")
REFERENCE = "earliest_finish"
WORKLOAD_SEEDS = 10
_SEED_RE = re.compile(r"-seed(\d+)\.pt$")


def seed_checkpoints(checkpoint_dir: str | Path = agg_mod.CHECKPOINT_DIR) -> dict[str, dict[int, Path]]:
    """``arch -> {training seed: checkpoint}`` from ``<checkpoint_dir>/seeds/<arch>-any-seed<s>.pt``."""
    folder = Path(checkpoint_dir) / agg_mod.SEEDS_SUBDIR
    out: dict[str, dict[int, Path]] = {}
    for arch in SET_AGENTS:
        for path in sorted(folder.glob(f"{arch}-any-seed*.pt")):
            m = _SEED_RE.search(path.name)
            if m:
                out.setdefault(arch, {})[int(m.group(1))] = path.resolve()
    return out


def heldout_points() -> list[str]:
    """The held-out variants the ``heldout`` experiment sweeps (``c24_u50``, ...)."""
    from eatbench.experiment.compose import compose_raw, sweep_params

    params = sweep_params(compose_raw((), HELDOUT))
    key = next(k for k in params if k.lstrip("+~") == f"experiment/{HELDOUT}")
    return [str(v) for v in params[key]]


def evaluate_training_seeds(
    root: str | Path,
    *,
    checkpoint_dir: str | Path = agg_mod.CHECKPOINT_DIR,
    seeds: int = WORKLOAD_SEEDS,
    jobs: int = 1,
    progress: bool = False,
    points: Sequence[str] | None = None,
) -> dict[str, int]:
    """Run every training seed's checkpoint (and EarliestFinish) on every held-out point for
    workload seeds ``0..seeds-1`` (``points``: a subset of the held-out variants; default all);
    finished runs are skipped. Returns counts: ``run``,
    ``reused``, ``checkpoints``, ``skipped`` (checkpoints that failed to load)."""
    from eatbench.experiment import sweep

    ckpts = seed_checkpoints(checkpoint_dir)
    allowed = heldout_points()
    bad = [p for p in points or () if p not in allowed]
    if bad:
        raise ValueError(f"points={bad} is invalid; allowed: {', '.join(allowed)}")
    points = list(points) if points else allowed
    seed_values = tuple(range(seeds))
    units: list[tuple[list[str], tuple[str, ...]]] = [
        ([f"+experiment/{HELDOUT}={p}", f"scheduler={REFERENCE}"], ()) for p in points
    ]
    for arch, by_seed in ckpts.items():
        for path in by_seed.values():
            units += [
                ([f"+experiment/{HELDOUT}={p}", f"scheduler={arch}"], (f"scheduler.checkpoint={path}",)) for p in points
            ]
    counts = {"run": 0, "reused": 0, "checkpoints": sum(len(v) for v in ckpts.values()), "skipped": 0}

    def spec(extra: tuple[str, ...]):
        return sweep._SweepSpec(HELDOUT, SEED_EXPERIMENT, extra, seed_values, str(root))

    def merge(outcome) -> None:
        counts["reused"] += outcome.reused
        counts["run"] += len(outcome.results) - outcome.reused
        counts["skipped"] += len(outcome.skipped)
        for name, why in outcome.skipped.items():
            print(f"[eatbench] {SEED_EXPERIMENT}: skipped {name}: {why}", file=sys.stderr)

    if jobs <= 1:
        for i, (group, extra) in enumerate(units):
            merge(sweep._run_point(spec(extra), group, None))
            if progress:
                print(f"[eatbench] {SEED_EXPERIMENT}: {i + 1}/{len(units)} points", file=sys.stderr)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=sweep._worker_init) as pool:
            for fut in [pool.submit(sweep._run_point, spec(extra), group, None) for group, extra in units]:
                merge(fut.result())
    return counts


def load_seed_runs(root: str | Path) -> pd.DataFrame:
    """The evaluation's runs (rows of :func:`~eatbench.report.aggregate.load_runs`) with
    ``train_seed`` (from the checkpoint's file name; -1 for EarliestFinish)."""
    runs = agg_mod.load_runs(root, [SEED_EXPERIMENT])
    if runs.empty:
        return runs.assign(train_seed=pd.Series(dtype=int))
    train = []
    for path in runs["path"]:
        ckpt = str(agg_mod.load_meta(path).get("config", {}).get("scheduler", {}).get("checkpoint") or "")
        m = _SEED_RE.search(ckpt)
        train.append(int(m.group(1)) if m else -1)
    return runs.assign(train_seed=train)


def seed_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (agent, training seed): ``score`` = mean over (point, workload seed) of
    EarliestFinish's mean response / the agent's, over the pairs both ran (``pairs``)."""
    rows: list[dict] = []
    if runs.empty:
        return pd.DataFrame(rows, columns=["scheduler", "train_seed", "score", "pairs", "points"])
    ref = runs[runs["scheduler"] == REFERENCE].set_index(["point", "seed"])["response_mean"]
    agents = runs[(runs["scheduler"] != REFERENCE) & (runs["train_seed"] >= 0)]
    for (sched, ts), grp in agents.groupby(["scheduler", "train_seed"], sort=True):
        ratios = [
            float(ref[(r["point"], r["seed"])]) / float(r["response_mean"])
            for _, r in grp.iterrows()
            if (r["point"], r["seed"]) in ref.index and float(r["response_mean"]) > 0
        ]
        if ratios:
            rows.append(
                {
                    "scheduler": sched,
                    "train_seed": int(ts),
                    "score": sum(ratios) / len(ratios),
                    "pairs": len(ratios),
                    "points": grp["point"].nunique(),
                }
            )
    return pd.DataFrame(rows, columns=["scheduler", "train_seed", "score", "pairs", "points"])


def robustness_lines(scores: pd.DataFrame) -> list[str]:
    """The T2 table (IQM [95% interval] per agent, each seed's score) and the probability of
    improvement of ``eat_set`` over each other agent."""
    from eatbench.core.stats import iqm_interval
    from eatbench.report.markdown import markdown_table
    from eatbench.report.plots import label

    rows, per = [], {}
    for sched in [a for a in SET_AGENTS if a in set(scores["scheduler"])]:
        grp = scores[scores["scheduler"] == sched].sort_values("train_seed")
        per[sched] = grp["score"].tolist()
        iv = iqm_interval(per[sched])
        rows.append(
            [
                label(sched),
                str(len(grp)),
                agg_mod.fmt_ci(iv.estimate, iv.low, iv.high, "{:.3f}"),
                ", ".join(f"{int(r['train_seed'])}: {r['score']:.3f}" for _, r in grp.iterrows()),
                str(int(grp["pairs"].min())),
            ]
        )
    lines = [
        *markdown_table(
            ["agent", "training seeds", "IQM [95% CI]", "score per training seed", "pairs per seed (min)"], rows
        ),
        "",
    ]
    lead = SET_AGENTS[0]
    if lead in per:
        pois = [f"P({label(lead)} > {label(o)}) = {_poi(per[lead], per[o]):.2f}" for o in SET_AGENTS[1:] if o in per]
        if pois:
            lines += [
                "Probability of improvement (rliable; the chance that a random training seed of the first scores "
                "higher than one of the second, ties counting half): " + "; ".join(pois) + ".",
                "",
            ]
    return lines


def _poi(x: Sequence[float], y: Sequence[float]) -> float:
    from eatbench.core.stats import probability_of_improvement

    return probability_of_improvement(x, y, lower_is_better=False)


def seeds_section(root: str | Path, checkpoint_dir: str | Path | None = None) -> list[str]:
    """T2 of the report, from the evaluation's result files under ``root`` (a message when absent)."""
    lines = ["## T2: robustness over training seeds (size-agnostic agents, ours; held-out points)", ""]
    runs = load_seed_runs(root)
    scores = seed_scores(runs) if "response_mean" in runs else seed_scores(pd.DataFrame())
    if scores.empty:
        have = seed_checkpoints(checkpoint_dir or agg_mod.CHECKPOINT_DIR)
        why = (
            "no per-seed checkpoints exist (`eatbench/data/checkpoints/seeds/<arch>-any-seed<s>.pt`)"
            if not have
            else "checkpoints exist ("
            + ", ".join(f"{a}: {len(s)} seeds" for a, s in have.items())
            + ") but were not evaluated"
        )
        return [
            *lines,
            f"No training-seed evaluation results under `{root}/{SEED_EXPERIMENT}`: {why}. Run "
            f"`python -m eatbench.report.seeds --root {root}` (or `nox -s reproduce`) and regenerate.",
            "",
        ]
    n_points = int(scores["points"].max())
    n_seeds = int(runs["seed"].nunique())
    lines += [
        f"Each training seed's checkpoint on the {n_points} held-out point(s), {n_seeds} workload seeds each, "
        "beside EarliestFinish on the same workload seeds. Score of a training seed = mean over points and workload "
        "seeds of EarliestFinish's mean response / the agent's (1 = EarliestFinish's level, higher = better). IQM = "
        "rliable's interquartile mean over training seeds, with a 95% bootstrap interval over training seeds (none "
        "under 3 seeds).",
        "",
        *robustness_lines(scores),
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eatbench.report.seeds [--root DIR] [--seeds N] [--jobs N] [--checkpoints DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m eatbench.report.seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="reports/results", help="results root (default: %(default)s)")
    parser.add_argument(
        "--seeds", type=int, default=WORKLOAD_SEEDS, help="workload seeds 0..N-1 (default: %(default)s)"
    )
    parser.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--checkpoints", default=str(agg_mod.CHECKPOINT_DIR), help="folder holding seeds/")
    parser.add_argument("--points", nargs="*", default=None, help="held-out variants (default: all)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds} is invalid; allowed: an integer >= 1")
    counts = evaluate_training_seeds(
        args.root, checkpoint_dir=args.checkpoints, seeds=args.seeds, jobs=args.jobs, progress=True, points=args.points
    )
    if counts["checkpoints"] == 0:
        print(f"[eatbench] {SEED_EXPERIMENT}: no checkpoints under {args.checkpoints}/seeds (only EarliestFinish ran)")
    print(f"[eatbench] {SEED_EXPERIMENT}: {json.dumps(counts)} -> {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
