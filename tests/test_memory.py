"""GPU memory in the simulation: ``cluster.gpu_kinds.<kind>.memory_gib`` against the
profile's optional ``memory_gib`` column (peak GiB per server of a launch).

The cluster below has two 24 GiB ``big`` servers (1 and 3) among four 8 GiB ``small`` ones;
the profile says a 1024 px launch needs 16 GiB per server at k=1, 10 at k=2 and 7 at k=4,
so 1024 px tasks at k=1 or 2 fit only the big servers, at k=4 any four."""

from __future__ import annotations

import dataclasses

import pytest

from eatbench.core.config import ConfigError
from eatbench.engine.loop import Decision, InvalidDecision
from eatbench.engine.placement import candidate_gangs, earliest_finish_gang
from eatbench.engine.profiles import PROFILE_COLUMNS, LatencyProfile, ProfileRow, paper_profile
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import build_engine, run_experiment

HEURISTICS = ["random", "fifo", "round_robin", "least_loaded", "greedy", "earliest_finish"]
SERVERS = ["small", "big", "small", "big", "small", "small"]
BIG = {1, 3}
#: (resolution, k) -> (step_s, fixed_s, cold_start_s, memory_gib) of the big kind
ROWS = {
    (512, 1): (0.05, 1.0, 5.0, 6.0),
    (512, 2): (0.03, 1.0, 5.0, 4.0),
    (512, 4): (0.02, 1.0, 6.0, 3.0),
    (1024, 1): (0.2, 2.0, 5.0, 16.0),
    (1024, 2): (0.12, 2.0, 5.0, 10.0),
    (1024, 4): (0.08, 2.0, 6.0, 7.0),
}


def _write_profile(path, memory: bool = True, blank: tuple[int, int] | None = None) -> str:
    cols = ",".join(PROFILE_COLUMNS) + (",memory_gib" if memory else "")
    lines = [cols]
    for (res, k), (step, fixed, cold, mem) in ROWS.items():
        cell = "" if (res, k) == blank else f"{mem}"
        lines.append(f"big,m,{res},{k},{step},{fixed},{cold}" + (f",{cell}" if memory else ""))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _overrides(profile_path: str, *extra: str) -> list[str]:
    return [
        "cluster.name=memtest",
        "++cluster.gpu_kinds={big:{speed:1.0,memory_gib:24},small:{speed:0.5,relative_to:big,memory_gib:8}}",
        f"cluster.servers=[{','.join(SERVERS)}]",
        "profile=csv",
        f"profile.path={profile_path}",
        "workload.model=m",
        "workload.resolutions=[512,1024]",
        "workload.rate=0.3",
        "output.write=false",
        *extra,
    ]


@pytest.fixture
def profile_csv(tmp_path) -> str:
    return _write_profile(tmp_path / "mem.csv")


def _violations(records, profile: LatencyProfile) -> list[str]:
    out = []
    for r in records:
        if not r.servers:
            continue
        servers = [int(s) for s in r.servers.split("-")]
        if profile.misfit([SERVERS[s] for s in servers], r.model, r.resolution) is not None:
            out.append(f"task {r.task_id} ({r.resolution} px) on {servers}")
    return out


def test_profile_memory_column_is_read_interpolated_borrowed_and_written(tmp_path, profile_csv):
    p = LatencyProfile.from_csv(profile_csv)
    assert p.has_memory and p.memory("big", "m", 1024, 2) == 10.0
    t = (768**2 - 512**2) / (1024**2 - 512**2)  # linear in pixels, like the times
    assert p.memory("big", "m", 768, 1) == pytest.approx(6.0 + 10.0 * t)
    kinds = compose_experiment(_overrides(profile_csv)).cluster.gpu_kinds
    p = p.with_gpu_kinds(kinds)
    assert p.memory("small", "m", 1024, 1) == 16.0  # a relative kind borrows the figure unscaled
    assert p.fits("big", "m", 1024, 1) and not p.fits("small", "m", 1024, 1) and p.fits("small", "m", 1024, 4)
    assert p.misfit(["big", "small"], "m", 1024) == (1, 10.0, 8.0)
    with pytest.raises(ConfigError, match="has no k=3"):  # the same errors as the time lookup
        p.memory("big", "m", 512, 3)
    # written back with the column, read back the same
    p.to_csv(tmp_path / "again.csv")
    assert LatencyProfile.from_csv(tmp_path / "again.csv").rows == p.rows
    # an empty cell is unknown: no constraint there, nor between it and its neighbour
    q = LatencyProfile.from_csv(_write_profile(tmp_path / "blank.csv", blank=(1024, 1)))
    assert q.memory("big", "m", 1024, 1) is None and q.memory("big", "m", 768, 1) is None
    assert q.with_gpu_kinds(kinds).fits("small", "m", 1024, 1)


def test_profiles_without_memory_figures_constrain_nothing_and_write_no_column(tmp_path):
    p = LatencyProfile.from_csv(_write_profile(tmp_path / "plain.csv", memory=False))
    assert not p.has_memory and p.memory("big", "m", 1024, 1) is None and p.fits("big", "m", 1024, 1)
    paper_profile().to_csv(tmp_path / "paper.csv")
    header = next(line for line in (tmp_path / "paper.csv").read_text().splitlines() if not line.startswith("#"))
    assert header == ",".join(PROFILE_COLUMNS)


@pytest.mark.parametrize("cell", ["0", "-1", "x", "nan"])
def test_bad_memory_cells_are_refused_naming_the_line(tmp_path, cell):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(PROFILE_COLUMNS) + ",memory_gib\nbig,m,512,1,0.1,1,5," + cell + "\n")
    with pytest.raises(ConfigError, match=r"line 2: column memory_gib=.* is invalid; allowed: GiB per server > 0"):
        LatencyProfile.from_csv(path)


@pytest.mark.parametrize("name", HEURISTICS)
def test_no_heuristic_places_a_task_on_a_server_without_the_memory(profile_csv, name):
    constrained = LatencyProfile.from_csv(profile_csv)
    ran_big_only = 0
    for k_choices in ("[1,2,4]", "null"):
        for seed in (0, 1):
            over = (f"scheduler={name}", f"seed={seed}", f"workload.k_choices={k_choices}")
            cfg = compose_experiment(_overrides(profile_csv, *over))
            result = run_experiment(cfg, write=False)
            profile = constrained.with_gpu_kinds(cfg.cluster.gpu_kinds)
            assert _violations(result.records, profile) == [], (k_choices, seed)
            assert sum(r.status == "done" for r in result.records) > 0
            ran_big_only += sum(r.resolution == 1024 and r.k in (1, 2) and r.status == "done" for r in result.records)
    assert ran_big_only > 0  # tasks only the big servers hold did run (on them)


@pytest.mark.parametrize("name", ["random", "fifo", "round_robin", "least_loaded"])
def test_without_the_memory_column_the_same_runs_use_small_servers(tmp_path, profile_csv, name):
    """The check above can fail: without memory figures, these schedulers put such tasks on small servers."""
    plain = _write_profile(tmp_path / "plain.csv", memory=False)
    cfg = compose_experiment(_overrides(plain, f"scheduler={name}"))
    profile = LatencyProfile.from_csv(profile_csv).with_gpu_kinds(cfg.cluster.gpu_kinds)
    assert _violations(run_experiment(cfg, write=False).records, profile) != []


def test_a_decision_on_a_server_without_the_memory_is_invalid(profile_csv):
    cfg = compose_experiment(_overrides(profile_csv, "workload.resolutions=[1024]", "workload.k_choices=[2]"))
    engine = build_engine(cfg)
    engine.next_decision()
    view = engine.view
    task = view.visible()[0]
    assert task.resolution == 1024 and task.k == 2
    with pytest.raises(InvalidDecision, match=r"needs 10 GiB per server .* server 0 \(small\) has 8 GiB"):
        engine.apply(Decision(task.id, 20, (0, 1)))
    assert task.id in view.queued_ids()  # refused: nothing changed
    engine.apply(Decision(task.id, 20, (1, 3)))
    assert engine.records[task.id].servers == "1-3"


def test_the_view_and_placement_answer_memory_questions(profile_csv):
    cfg = compose_experiment(_overrides(profile_csv, "workload.resolutions=[1024]", "workload.k_choices=[1]"))
    engine = build_engine(cfg)
    engine.next_decision()
    view = engine.view
    task = view.visible()[0]
    assert view.memory_constrained
    assert [view.memory_gib(s) for s in range(6)] == [8, 24, 8, 24, 8, 8]
    assert view.memory_need(task, 0, 1) == 16.0 and view.memory_need(task, 0, 4) == 7.0
    assert view.fits(task, (1,)) and not view.fits(task, (0,)) and view.fits(task, (0, 1, 2, 3))
    assert view.servers_that_fit(task, 1) == (1, 3)
    assert view.servers_that_fit(task, 4, (0, 3, 5)) == (0, 3, 5)
    assert view.default_servers(1, "m", task.resolution) == (1,)
    assert view.default_servers(1, "m") == (0,)  # without the resolution: memory not considered
    assert candidate_gangs(view, 1, "m", task) == [(1,)]
    assert earliest_finish_gang(view, task, 1, 20) == (1,)
    assert earliest_finish_gang(view, task, 2, 20) == (1, 3)
    big_task = dataclasses.replace(task, k=None)
    assert all(view.fits(big_task, g) for k in (1, 2, 4) for g in candidate_gangs(view, k, "m", big_task))


def test_a_workload_that_fits_no_gang_is_refused_when_the_engine_is_built(profile_csv):
    base = _overrides(profile_csv, "workload.resolutions=[1024]")
    with pytest.raises(
        ConfigError,
        match=r"workload.resolutions=1024 is invalid for model 'm': it needs 16 GiB per server at k=1 .*"
        r"the largest GPU has 12 GiB; allowed:",
    ):
        build_engine(compose_experiment([*base, "workload.k_choices=[1]", "cluster.gpu_kinds.big.memory_gib=12"]))
    # k=2 needs 10 GiB: the two 12 GiB servers hold it
    build_engine(compose_experiment([*base, "workload.k_choices=[2]", "cluster.gpu_kinds.big.memory_gib=12"]))
    # tasks without a fixed k fit if some k does ...
    build_engine(compose_experiment([*base, "workload.k_choices=null", "cluster.gpu_kinds.big.memory_gib=12"]))
    # ... and are refused when none does (k=4 needs 7 GiB: only the two 9 GiB servers have it)
    with pytest.raises(ConfigError, match=r"needs 16 GiB per server at k=1 \(the smallest k .*largest GPU has 9 GiB"):
        build_engine(
            compose_experiment(
                [
                    *base,
                    "workload.k_choices=null",
                    "cluster.gpu_kinds.big.memory_gib=9",
                    "cluster.gpu_kinds.small.memory_gib=6",
                ]
            )
        )


def test_rows_without_a_memory_field_keep_their_old_shape():
    row = ProfileRow("g", "m", 512, 1, 0.1, 1.0, 2.0)
    assert row.memory_gib is None
    assert not LatencyProfile([row]).has_memory


def test_the_learned_schedulers_action_decoders_place_only_where_the_memory_is(profile_csv):
    import numpy as np

    from eatbench.schedulers.rl.encoding import ActionDecoder
    from eatbench.schedulers.rl.tokens import TokenActionDecoder

    cfg = compose_experiment(_overrides(profile_csv, "workload.resolutions=[1024]", "workload.k_choices=[1]"))
    engine = build_engine(cfg)
    engine.next_decision()
    view = engine.view
    w = view.window
    paper = ActionDecoder(w, "paper", [1], view.min_steps, view.max_steps)
    action = np.zeros(paper.size)
    action[0] = 1.0  # launch the first visible task
    assert paper.decode(view, action).servers == (1,)  # not server 0 (small), the paper rule's first idle
    tokens = TokenActionDecoder(w, [1], view.min_steps, view.max_steps)
    action = np.zeros(tokens.size)
    action[0] = 1.0
    assert tokens.decode(view, action).servers in ((1,), (3,))
