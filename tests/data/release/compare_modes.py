"""How far ``engine.decision_mode=release`` is from ``event`` on the paper sweep.

    PYTHONPATH=. python tests/data/release/compare_modes.py [--seeds 5]

Runs every heuristic scheduler on the paper sweep (paper4, paper workload, rates
0.01-0.11 tasks/s, seeds 0..N-1) in both modes, on the same task streams, and prints the
mean response time (s) of each mode, averaged over seeds, and the relative difference.
"""

from __future__ import annotations

import argparse
import copy
import statistics

from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import run_experiment

RATES = (0.01, 0.03, 0.05, 0.07, 0.09, 0.11)
SCHEDULERS = ("greedy", "earliest_finish", "fifo", "round_robin", "least_loaded", "random")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    print("scheduler        rate   event_resp  release_resp  diff%   event_reward  release_reward")
    for name in SCHEDULERS:
        base = compose_experiment([f"scheduler={name}", "output.write=false"])
        for rate in RATES:
            out: dict[str, list[tuple[float, float]]] = {"event": [], "release": []}
            for seed in range(args.seeds):
                for mode in out:
                    cfg = copy.deepcopy(base)
                    cfg.workload.rate, cfg.seed, cfg.engine.decision_mode = rate, seed, mode
                    s = run_experiment(cfg, write=False).summary
                    out[mode].append((s["response_mean"], s["reward_total"]))
            ev = statistics.fmean(r for r, _ in out["event"])
            re = statistics.fmean(r for r, _ in out["release"])
            evr = statistics.fmean(w for _, w in out["event"])
            rer = statistics.fmean(w for _, w in out["release"])
            print(f"{name:16s} {rate:5.2f} {ev:11.2f} {re:13.2f} {100 * (re - ev) / ev:6.1f} {evr:13.1f} {rer:15.1f}")


if __name__ == "__main__":
    main()
