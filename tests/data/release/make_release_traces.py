"""Export launch traces of the paper authors' released simulator (github.com/zzf1955/EAT,
folder ``EAT Simu/_SDEnv``) under a fixed policy, for ``tests/test_release_mode.py``.

The release has no licence, so none of its code lives in this repository: this script
imports it from a checkout given on the command line::

    python tests/data/release/make_release_traces.py /path/to/EAT [--out tests/data/release]

Policy: "head-of-queue task, S steps": every env step asks to launch the oldest queued
task with S steps; the release places it (the idle warm group of size k, else the first k
available nodes) or, when fewer than k nodes are available or the queue is empty, treats
the action as invalid and advances its clock by one 0.1 s slot. Environment: the release's
``make_env`` settings for the paper's evaluation (4 nodes, visible queue 10, k in {1,2,4},
w_t=250, w_q=10, w_tt=1, load_time=5, 1024 s limit, 32 tasks), ``max_draw_steps=32``.

One CSV per (rate, seed, S), a row per task in arrival order: ``task`` (0-based),
``arrival`` and ``k`` (the task stream, replayable with ``workload=trace``), then the launch
the release made: ``steps``, ``start``, ``duration`` (the task's reported execution time,
s), ``cold`` (the release's ``reload`` flag) and ``nodes`` (dash-joined node indices).
Floats are written with ``repr`` (exact round trip).
"""

from __future__ import annotations

import argparse
import csv
import sys
import types
from pathlib import Path

import numpy as np

RATES = (0.01, 0.03, 0.05, 0.07, 0.09, 0.11)
SEEDS = (0, 1)
STEPS = (10, 20, 30)
MAX_DRAW_STEPS = 32
QUEUE_LEN = 10
NODES = 4


def _stub_imports() -> None:
    """The environment imports tianshou (for its vector-env helper) and tabulate (for
    rendering); neither is used here, so small stand-ins are enough."""
    if "tianshou" not in sys.modules:
        tianshou = types.ModuleType("tianshou")
        env = types.ModuleType("tianshou.env")
        env.DummyVectorEnv = object  # type: ignore[attr-defined]
        tianshou.env = env  # type: ignore[attr-defined]
        sys.modules["tianshou"], sys.modules["tianshou.env"] = tianshou, env
    if "tabulate" not in sys.modules:
        tab = types.ModuleType("tabulate")
        tab.tabulate = lambda *a, **k: ""  # type: ignore[attr-defined]
        sys.modules["tabulate"] = tab


def load_release(checkout: Path):
    """Import the release's ``AIGCEnv`` from a checkout of the zzf1955/EAT repository."""
    simu = checkout / "EAT Simu"
    if not (simu / "_SDEnv" / "env.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of zzf1955/EAT (no 'EAT Simu/_SDEnv/env.py')")
    _stub_imports()
    sys.path.insert(0, str(simu))
    from _SDEnv.env import AIGCEnv  # noqa: PLC0415

    return AIGCEnv


def run_episode(AIGCEnv, rate: float, seed: int, steps: int) -> list[dict]:
    """One episode of the release under the fixed policy; a row per generated task."""
    env = AIGCEnv(
        queue_len=QUEUE_LEN,
        task_arrival_rate=rate,
        node_num=NODES,
        cp=[30] * NODES,
        load_time=5,
        max_draw_steps=MAX_DRAW_STEPS,
        co_num=[1, 2, 4],
        w_t=250,
        w_q=10,
        w_tt=1,
        seed=seed,
        min_task_arrival_rate=rate,
        max_task_arrival_rate=rate,
        state_dim=2,
        time_limite=1024,
        t=0.1,
    )
    env.reset(SEED=seed)
    env.statistics = []
    action = -np.ones(2 + QUEUE_LEN)
    action[0] = 1.0  # execute
    action[1] = 2.0 * steps / MAX_DRAW_STEPS - 1.0  # exact for S in 10, 20, 30 (dyadic)
    action[2] = 1.0  # the head of the queue
    done = truncated = False
    while not (done or truncated):
        _, _, done, truncated, _ = env.step(action)
    # truncated (the 1024 s limit passed) episodes are kept: what was launched by then counts
    tasks = {t.task_id: t for t in env.statistics}
    for t in env.task_queue.task_queue:
        tasks.setdefault(t.task_id, t)
    rows = []
    for i, tid in enumerate(sorted(tasks)):
        t = tasks[tid]
        launched = t.start_time >= 0
        rows.append(
            {
                "task": i,
                "arrival": repr(float(t.arrival_time)),
                "k": t.co_num,
                "steps": repr(float(t.steps)) if launched else "",
                "start": repr(float(t.start_time)) if launched else "",
                "duration": repr(float(t.duration)) if launched else "",
                "cold": bool(t.reload) if launched else "",
                "nodes": "-".join(str(int(n)) for n in t.node_ids) if launched else "",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path, help="a checkout of github.com/zzf1955/EAT")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    AIGCEnv = load_release(args.checkout)
    args.out.mkdir(parents=True, exist_ok=True)
    for rate in RATES:
        for seed in SEEDS:
            for steps in STEPS:
                rows = run_episode(AIGCEnv, rate, seed, steps)
                path = args.out / f"release_rate{rate:g}_seed{seed}_steps{steps}.csv"
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
                    w.writeheader()
                    w.writerows(rows)
                n_cold = sum(1 for r in rows if r["cold"] is True)
                n_launched = sum(1 for r in rows if r["start"] != "")
                print(f"{path.name}: {len(rows)} tasks, {n_launched} launched, {n_cold} cold")


if __name__ == "__main__":
    main()
