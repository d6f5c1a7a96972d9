"""Training speed of a learned scheduler: env steps per second and wall time until the
deterministic eval return first reaches 95% of its final value.

    python benchmarks/train_speed.py --scheduler eat --minutes 8          # train, then measure
    python benchmarks/train_speed.py --curve results/train/<run>/curve.json  # measure a finished run

Default setting: paper4, evaluation at 0.07 tasks/s, ``tuned`` preset, one torch thread.
The numbers depend on how busy the machine is; the script prints the CPU load it saw.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def time_to_fraction(curve: list[dict], fraction: float = 0.95) -> dict[str, float]:
    """Steps/s over the run, and the first (step, wall_s) whose eval return reaches
    ``fraction`` of the final eval return."""
    last = curve[-1]
    final = last["eval_return"]
    hit = next((r for r in curve if r["eval_return"] >= fraction * final), last)
    return {
        "steps": last["step"],
        "wall_s": last["wall_s"],
        "steps_per_s": last["step"] / last["wall_s"] if last["wall_s"] else float("nan"),
        "final_eval_return": final,
        "step_at_95": hit["step"],
        "wall_s_at_95": hit["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curve", type=Path, help="curve.json of a finished run (skip training)")
    ap.add_argument("--scheduler", default="eat")
    ap.add_argument("--cluster", default="paper4")
    ap.add_argument("--rate", type=float, default=0.07, help="evaluation (and, with --fixed-rate, training) rate")
    ap.add_argument("--fixed-rate", action="store_true", help="train at --rate instead of the 0.01-0.11 range")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--preset", default="tuned")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/train_speed")
    args = ap.parse_args()
    if args.curve is None:
        import torch

        from eatbench.experiment.compose import compose_experiment
        from eatbench.training.train import train

        torch.set_num_threads(1)
        over = [
            f"scheduler={args.scheduler}",
            f"cluster={args.cluster}",
            f"workload.rate={args.rate}",
            f"seed={args.seed}",
            f"train.preset={args.preset}",
            f"train.out_dir={args.out}",
            "train.total_steps=10000000",
            f"train.max_minutes={args.minutes}",
            f"train.eval_every={args.eval_every}",
            "train.wandb=disabled",
            "train.resume=false",
        ]
        if args.fixed_rate:
            over += ["train.rate_low=null", "train.rate_high=null"]
        curve = train(compose_experiment(over)).curve
    else:
        curve = json.loads(args.curve.read_text())
        curve = curve["curve"] if isinstance(curve, dict) else curve
    stats = time_to_fraction(curve)
    stats["load_avg_1min"] = os.getloadavg()[0]
    stats["cpus"] = os.cpu_count()
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
