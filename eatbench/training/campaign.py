"""Train every size-agnostic learned scheduler over several seeds at one equal budget.

``python -m eatbench.training.campaign --seeds 5 --steps 60000 --jobs 2`` runs
``eatbench train scheduler=<arch> +train=set seed=<s>`` for every arch of
``presets.SET_ARCHS`` and seed, ``--jobs`` at a time (one per core, one torch thread
each), each in its own process. Every run is resumable (``train.resume``): rerunning the
command after a crash or Ctrl-C continues where each run stopped and skips finished ones.
Each run's policy is exported to ``eatbench/data/checkpoints/seeds/<arch>-any-seed<s>.pt``
(with its JSON sidecar: command, clean git revision, wall time, budget, curve); seed 0,
fixed before training (not the best seed), is also the shipped ``<arch>-any.pt`` that
``checkpoint: auto`` loads. The report reads all seeds (training curves with a band over
seeds, rliable's IQM and probability of improvement).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eatbench.schedulers.rl.checkpoint import SHIPPED, shipped_path
from eatbench.training.presets import SET_ARCHS

SEEDS_DIR = SHIPPED / "seeds"


def seed_path(arch: str, seed: int) -> Path:
    """Where the campaign exports ``arch``'s policy of training seed ``seed``."""
    return SEEDS_DIR / f"{arch}-any-seed{seed}.pt"


def train_command(arch: str, seed: int, steps: int, out_dir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eatbench.cli",
        "train",
        f"scheduler={arch}",
        "+train=set",
        f"seed={seed}",
        f"train.total_steps={steps}",
        f"train.out_dir={out_dir}",
        f"train.export={seed_path(arch, seed)}",
        "train.progress=false",
        "train.threads=1",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per scheduler (0..N-1)")
    parser.add_argument("--steps", type=int, default=60000, help="environment steps per run (equal for all)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    parser.add_argument("--out", default="results/train-set", help="training folders (checkpoints, curves)")
    parser.add_argument("--archs", default=",".join(SET_ARCHS), help="comma-separated schedulers")
    args = parser.parse_args(argv)
    archs = [a for a in args.archs.split(",") if a]
    unknown = sorted(set(archs) - set(SET_ARCHS))
    if unknown:
        parser.error(f"--archs={','.join(unknown)} is invalid; allowed: {', '.join(SET_ARCHS)}")
    jobs = [(a, s) for s in range(args.seeds) for a in archs]  # seed-major: every arch gets seed 0 first

    def run(job: tuple[str, int]) -> tuple[str, int, int]:
        arch, seed = job
        if seed_path(arch, seed).is_file():
            return arch, seed, 0
        log = Path(args.out) / f"{arch}-seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            rc = subprocess.call(train_command(arch, seed, args.steps, args.out), stdout=f, stderr=subprocess.STDOUT)
        if rc == 0 and seed == 0:
            for src in (seed_path(arch, 0), seed_path(arch, 0).with_suffix(".json")):
                shutil.copyfile(src, shipped_path(arch, "any").with_suffix(src.suffix))
        print(f"[campaign] {arch} seed {seed}: exit {rc}", flush=True)
        return arch, seed, rc

    SEEDS_DIR.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, jobs))
    failed = [(a, s) for a, s, rc in results if rc != 0]
    if failed:
        print(f"[campaign] failed: {failed}; rerun the same command to resume them", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
