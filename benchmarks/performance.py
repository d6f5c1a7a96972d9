"""Write the performance figures the README quotes to ``reports/performance.json``.

    OMP_NUM_THREADS=1 python benchmarks/performance.py              # full measurement (~15 min)
    python benchmarks/performance.py --out /tmp/perf.json --quick   # smaller, for a check

Measured on this machine, one torch thread per process, nothing else should run meanwhile:

- ``reproduction``: the full simulated reproduction as ``nox -s reproduce`` runs it when every
  checkpoint exists (every figure experiment at 30 seeds in 2 processes, then the report, then
  W&B offline logging of every run), in a fresh results folder (no cache hit): wall seconds
  per stage and in total, and the peak resident memory of each stage's processes;
- ``simulator``: tasks per wall-second of the engine with EarliestFinish (N=4 and 64,
  20,000 Poisson tasks), median of 5 runs;
- ``decision``: the EAT actor's decision latency (p50, p99, microseconds);
- ``training``: environment steps per second of the training environment alone.

The file records the git revision; like every committed number it must come from a clean
tree (``--allow-dirty`` writes it anyway and marks it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("paper_rates", "scalability", "hetero_bursty", "ablations", "heldout")


def _child_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _measured(cmd: list[str], env: dict) -> dict:
    """``cmd`` under a wrapper that reports its own peak RSS."""
    wrapper = (
        "import resource, subprocess, sys, json, time;"
        "t=time.perf_counter(); r=subprocess.run(sys.argv[1:]);"
        "print(json.dumps({'rc': r.returncode, 'wall_s': time.perf_counter()-t,"
        "'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, cwd=REPO, capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    info = json.loads(last)
    if info.get("rc") != 0:
        raise SystemExit(f"stage failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return {"wall_s": round(info["wall_s"], 1), "peak_rss_mib": round(info["peak_rss_mib"], 1)}


def reproduction(seeds: int, jobs: int, root: Path | None) -> dict:
    """The stages of ``nox -s reproduce`` with every checkpoint present, each in its own
    process: the figure sweeps (no cache hit: ``root`` must not hold them yet), the report,
    and the W&B offline logging of every run."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = root or Path(tmp) / "results"
        present = [e for e in EXPERIMENTS if (root / e).exists()]
        if present:
            raise SystemExit(f"{root} already holds {', '.join(present)}: the sweep would be a cache hit")
        out: dict = {"seeds": seeds, "jobs": jobs, "stages": {}}
        sweep = [sys.executable, "-m", "eatbench.experiment.sweep", "--all", "--seeds", str(seeds), "--root", str(root)]
        out["stages"]["sweep"] = _measured([*sweep, "--jobs", str(jobs), "--no-progress"], env)
        report = [
            sys.executable,
            "-c",
            "import sys; from eatbench.cli import main; sys.exit(main())",
            "report",
            f"output.root={root}",
            "output.wandb=disabled",
            f"hydra.run.dir={tmp}/hydra",
        ]
        out["stages"]["report"] = _measured(report, env)
        wandb_log = [
            sys.executable,
            "-c",
            "import sys; from eatbench.report.wandb_log import log_experiments as f; "
            "r = f(sys.argv[1], mode='offline', wandb_dir=sys.argv[2]); sys.exit(1 if r.errors else 0)",
            str(root),
            f"{tmp}/wandb",
        ]
        out["stages"]["wandb_offline"] = _measured(wandb_log, env)
        out["runs"] = sum(1 for e in EXPERIMENTS for _ in (root / e).glob("*/*/seed=*/summary.json"))
        out["runs_in_report"] = sum(1 for _ in root.glob("*/*/*/seed=*/summary.json"))
    out["total_wall_s"] = round(sum(s["wall_s"] for s in out["stages"].values()), 1)
    out["sweep_and_report_wall_s"] = round(out["stages"]["sweep"]["wall_s"] + out["stages"]["report"]["wall_s"], 1)
    out["peak_rss_mib"] = max(s["peak_rss_mib"] for s in out["stages"].values())
    return out


def simulator() -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_simulator import N_TASKS, _config, _run, rate_for_utilisation

    out = {}
    for n in (4, 64):
        cfg = _config(n, rate_for_utilisation(n), N_TASKS)
        walls = sorted(_run(cfg)[1] for _ in range(5))
        out[f"n{n}_tasks_per_s"] = round(N_TASKS / walls[2])
    return out


def decision() -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_decision_latency import _forward, _nets, percentiles

    _, _, fused, x = _nets("eat")
    stats = percentiles(_forward(fused, x))
    return {k: round(v, 1) for k, v in stats.items()}


def training() -> dict:
    import numpy as np

    from eatbench.experiment.compose import compose_experiment
    from eatbench.training.env import EdgeAIGCEnv

    env = EdgeAIGCEnv(compose_experiment(["cluster=paper4", "workload.rate=0.07"]))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, walls = 3000, []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            if term or trunc:
                env.reset()
        walls.append(time.perf_counter() - t0)
    return {"env_steps_per_s": round(steps / sorted(walls)[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "performance.json")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2, help="sweep worker processes (the machine has 2 cores)")
    ap.add_argument("--quick", action="store_true", help="3 seeds, for checking the script")
    ap.add_argument("--allow-dirty", action="store_true")
    ap.add_argument(
        "--root", type=Path, default=None, help="keep the sweep's result files here (default: a temporary folder)"
    )
    args = ap.parse_args()
    import torch

    from eatbench.core.provenance import git_revision, package_versions

    torch.set_num_threads(1)
    rev = git_revision()
    if rev.endswith("-dirty") and not args.allow_dirty and args.out.resolve().is_relative_to(REPO / "reports"):
        raise SystemExit(f"refusing to write {args.out} from a dirty tree ({rev}); commit first or --allow-dirty")
    result = {
        "git_revision": rev,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1min": os.getloadavg()[0]},
        "threads_per_process": 1,
        "versions": package_versions(),
        # the short measurements first, in a fresh process: after the reproduction's 25 minutes
        # the EAT actor's latency read 513 us here against 336 us in a fresh process
        "simulator": simulator(),
        "decision_latency_us": decision(),
        "training": training(),
    }
    result["reproduction"] = reproduction(3 if args.quick else args.seeds, args.jobs, args.root)
    result["machine"]["load_avg_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
