"""EAT vs heuristics vs DSAC and SAC over the paper's sweep, mean and 95% CI over seeds.

    python benchmarks/compare_learned.py                       # paper4, 0.01..0.11, 5 seeds
    python benchmarks/compare_learned.py --cluster paper8 --rates 0.07

Every run goes through ``eatbench.experiment.runner.run_experiment`` (no files written); learned
schedulers load the shipped checkpoint for the cluster (``checkpoint: auto``). Prints a
markdown table per metric: mean [95% bootstrap interval over seeds].
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

HEURISTICS = ["greedy", "earliest_finish", "fifo", "round_robin", "least_loaded", "random"]
LEARNED = ["eat", "dsac", "sac"]
METRICS = [
    ("response_mean", "mean response (s)"),
    ("response_p90", "p90 response (s)"),
    ("quality_mean", "mean quality"),
    ("reward_total", "paper reward"),
]


def sweep(cluster: str, rates: list[float], schedulers: list[str], seeds: int) -> dict:
    """``(scheduler, rate) -> aggregate_seeds(...)``."""
    import torch

    from eatbench.core.metrics import aggregate_seeds
    from eatbench.experiment.compose import compose_experiment
    from eatbench.experiment.runner import make_scheduler, run_experiment

    torch.set_num_threads(1)
    kc = "[1,2,4,8]" if cluster == "paper8" else "[1,2,4]"
    out = {}
    for name in schedulers:
        base = compose_experiment([f"cluster={cluster}", f"workload.k_choices={kc}", f"scheduler={name}"])
        learned = name in LEARNED
        sched = make_scheduler(base) if learned else None  # load (and trace) a checkpoint once
        for rate in rates:
            runs = []
            for seed in range(seeds):
                cfg = dataclasses.replace(base, seed=seed, workload=dataclasses.replace(base.workload, rate=rate))
                runs.append(run_experiment(cfg, scheduler=sched if learned else None, write=False).summary)
            out[name, rate] = aggregate_seeds(runs)
    return out


def table(results: dict, rates: list[float], schedulers: list[str], metric: str) -> str:
    lines = ["| scheduler | " + " | ".join(f"{r:g}/s" for r in rates) + " |", "|---" * (len(rates) + 1) + "|"]
    for name in schedulers:
        cells = []
        for r in rates:
            m = results[name, r].get(metric, {"mean": float("nan"), "low": float("nan"), "high": float("nan")})
            cells.append(f"{m['mean']:.3g} [{m['low']:.3g}, {m['high']:.3g}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cluster", default="paper4")
    ap.add_argument("--rates", default="0.01,0.03,0.05,0.07,0.09,0.11")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--schedulers", default=",".join(LEARNED + HEURISTICS))
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    names = args.schedulers.split(",")
    results = sweep(args.cluster, rates, names, args.seeds)
    for metric, title in METRICS:
        print(f"\n### {title} ({metric}), {args.cluster}, {args.seeds} seeds, mean [95% bootstrap CI]\n")
        print(table(results, rates, names, metric))


if __name__ == "__main__":
    main()
