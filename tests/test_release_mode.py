"""``engine.decision_mode=release`` reproduces the paper authors' released simulator launch
for launch. The traces under tests/data/release were exported from the release itself by
tests/data/release/make_release_traces.py (policy "head-of-queue task, S steps", S in 10,
20, 30; rates 0.01-0.11 tasks/s; seeds 0 and 1); each is replayed here as a ``trace``
workload through eatbench under the same policy."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest

from eatbench.core.config import validate
from eatbench.engine.loop import Decision, release_ticks
from eatbench.engine.view import EngineView
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import build_engine
from eatbench.schedulers.base import Scheduler

DATA = Path(__file__).parent / "data" / "release"
TRACES = sorted(DATA.glob("release_*.csv"))
TOL = 1e-9  # s; ticks are 0.1 s apart, so this is exact at the tick level


class HeadOfQueue(Scheduler):
    """The release's fixed policy: the oldest queued task with ``steps`` steps on the
    default placement (the idle warm group of size k, else the first k idle servers);
    wait one tick when fewer than k servers are idle."""

    def decide(self, view: EngineView) -> Decision | None:
        task = view.visible()[0]
        servers = view.default_servers(task.k, task.model)
        return None if servers is None else Decision(task.id, self.steps, servers)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    return tmp_path_factory.mktemp("release-streams")


@pytest.fixture(scope="module")
def base_cfg(streams):
    return compose_experiment(
        [
            "workload=trace",
            "workload.horizon=1024",
            "engine.decision_mode=release",
            f"workload.trace_path={_task_stream(TRACES[0], streams)}",
            "output.write=false",
        ]
    )


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _task_stream(path: Path, folder: Path) -> str:
    """The trace's task stream alone (arrival, k) as a workload trace: the release's launch
    columns are what the replay is checked against, not workload input."""
    out = folder / f"{path.stem}-tasks.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arrival", "k"])
        w.writerows([r["arrival"], r["k"]] for r in _rows(path))
    return str(out)


def test_the_shipped_traces_cover_rates_policies_and_seeds():
    names = {p.stem for p in TRACES}
    for rate in ("0.03", "0.07", "0.11"):
        for steps in (10, 20, 30):
            for seed in (0, 1):
                assert f"release_rate{rate}_seed{seed}_steps{steps}" in names


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_release_mode_matches_the_release_launch_for_launch(base_cfg, streams, path):
    rows = _rows(path)
    steps = int(path.stem.rsplit("steps", 1)[1])
    cfg = copy.deepcopy(base_cfg)
    cfg.workload.trace_path = _task_stream(path, streams)
    engine = build_engine(validate(cfg))
    sched = HeadOfQueue(steps)
    sched.reset(0, [1, 2, 4])
    records = engine.run(sched)
    assert len(records) == len(rows), "every task of the trace arrives"
    n_launched = 0
    for row, rec in zip(rows, records, strict=True):
        assert rec.task_id == int(row["task"]) and rec.k == int(row["k"])
        if row["start"] == "":
            assert math.isnan(rec.start), f"task {rec.task_id} was never launched by the release"
            continue
        n_launched += 1
        where = f"{path.stem} task {rec.task_id}"
        assert float(row["steps"]) == rec.steps, where
        assert abs(rec.start - float(row["start"])) < TOL, (where, rec.start, row["start"])
        assert rec.cold_start == (row["cold"] == "True"), where
        assert rec.servers == row["nodes"], where
        if rec.status == "done":
            assert abs(rec.execution - float(row["duration"])) < TOL, (where, rec.execution, row["duration"])
        else:  # still running when the release's 1024 s limit truncated the episode
            assert rec.status == "unfinished" and rec.start + float(row["duration"]) > 1024 - 1, where
    assert n_launched > 0


def test_event_mode_does_not_reproduce_the_release(base_cfg, streams):
    """The comparison has teeth: the default clock gives other start times."""
    path = DATA / "release_rate0.07_seed0_steps20.csv"
    cfg = copy.deepcopy(base_cfg)
    cfg.workload.trace_path = _task_stream(path, streams)
    cfg.engine.decision_mode = "event"
    engine = build_engine(validate(cfg))
    sched = HeadOfQueue(20)
    sched.reset(0, [1, 2, 4])
    records = engine.run(sched)
    starts = [float(r["start"]) for r in _rows(path)]
    assert sum(abs(rec.start - s) > TOL for rec, s in zip(records, starts, strict=True)) > len(starts) // 2


def test_release_ticks_count_the_releases_float_subtractions():
    assert release_ticks(27.125, 0.1) == 272  # 27.125 s -> free 27.2 s after its start
    assert release_ticks(0.0, 0.1) == 0
    assert release_ticks(0.1, 0.1) == 1
    # 6.3 s (a warm k=1 launch of 20 steps) minus 63 times 0.1 is still > 0 in floats:
    # the release holds the server a 64th tick, and so must eatbench
    assert release_ticks(0.315 * 20, 0.1) == 64
    assert release_ticks(2.3, 0.1) == 23
