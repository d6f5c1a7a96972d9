"""Arrival processes and task attributes."""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pytest

from eatbench.core.config import ConfigError, WorkloadConfig
from eatbench.engine.workload import generate_tasks, load_prompts


def _tasks(seed=0, **kw):
    cfg = dataclasses.replace(WorkloadConfig(), **kw)
    return generate_tasks(cfg, seed, lambda k, res: 10.0 * k)


def _gaps(tasks):
    times = [t.arrival for t in tasks]
    return np.diff(times)


@pytest.mark.parametrize("arrival", ["bernoulli", "poisson", "gamma"])
def test_long_run_arrival_rate_matches_the_configured_rate(arrival):
    tasks = _tasks(arrival=arrival, rate=0.5, cv=2.0, n_tasks=20000, horizon=None, initial_queue=0)
    rate = len(tasks) / tasks[-1].arrival
    assert rate == pytest.approx(0.5, rel=0.05)


def test_bernoulli_arrivals_fall_on_slots_and_start_with_the_initial_queue():
    tasks = _tasks(rate=0.07, n_tasks=32, initial_queue=10)
    assert [t.arrival for t in tasks[:10]] == [0.0] * 10
    assert all(abs(t.arrival / 0.1 - round(t.arrival / 0.1)) < 1e-9 for t in tasks)
    assert len(tasks) == 32


def test_gamma_burstiness_sets_the_coefficient_of_variation():
    for cv in (0.5, 3.0):
        gaps = _gaps(_tasks(arrival="gamma", rate=1.0, cv=cv, n_tasks=20000, horizon=None, initial_queue=0))
        assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(cv, rel=0.1)


def test_cosine_rate_is_high_at_the_start_of_a_period_and_low_in_the_middle():
    tasks = _tasks(
        arrival="cosine",
        rate_low=0.1,
        rate_high=2.0,
        periods=1,
        period_length=2000.0,
        n_tasks=None,
        horizon=2000.0,
        initial_queue=0,
    )
    times = np.array([t.arrival for t in tasks])
    early = ((times < 200) | (times > 1800)).sum() / 400
    middle = ((times > 800) & (times < 1200)).sum() / 400
    assert early == pytest.approx(1.9, rel=0.15) and middle == pytest.approx(0.12, abs=0.1)


def test_horizon_and_count_both_end_the_episode():
    assert len(_tasks(arrival="poisson", rate=1.0, n_tasks=None, horizon=100.0, initial_queue=0)) == pytest.approx(
        100, abs=35
    )
    assert all(t.arrival < 100.0 for t in _tasks(arrival="poisson", rate=1.0, n_tasks=None, horizon=100.0))
    assert len(_tasks(arrival="poisson", rate=1.0, n_tasks=7, horizon=None)) == 7


def test_task_attributes_are_drawn_from_the_config_and_seeded():
    cfg = dict(arrival="poisson", rate=1.0, n_tasks=300, horizon=None, resolutions=[512, 1024], k_choices=[1, 2, 4])
    a, b, c = _tasks(0, **cfg), _tasks(0, **cfg), _tasks(1, **cfg)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    assert [t.arrival for t in a] != [t.arrival for t in c]
    assert {t.resolution for t in a} == {512, 1024} and {t.k for t in a} == {1, 2, 4}
    assert len({t.prompt for t in a}) > 100
    assert all(t.slo == pytest.approx(5.0 * 10.0 * t.k) for t in a)
    free = _tasks(0, **{**cfg, "k_choices": None})
    assert {t.k for t in free} == {None}


def test_changing_the_arrival_process_keeps_the_other_draws():
    a = _tasks(0, arrival="poisson", n_tasks=50, horizon=None)
    b = _tasks(0, arrival="gamma", cv=2.0, n_tasks=50, horizon=None)
    assert [t.prompt for t in a] == [t.prompt for t in b]


def test_trace_replay(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival,prompt,resolution,k\n0.5,a cat,512,2\n1.5,,1024,\n3.0,a dog,,1\n")
    tasks = _tasks(arrival="trace", trace_path=str(path), n_tasks=None, horizon=None, resolutions=[768], k_choices=[4])
    assert [(t.arrival, t.resolution, t.k) for t in tasks] == [(0.5, 512, 2), (1.5, 1024, 4), (3.0, 768, 1)]
    assert tasks[0].prompt == "a cat" and tasks[1].prompt
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival\n2.0\n1.0\n")
    with pytest.raises(ConfigError, match="sorted"):
        _tasks(arrival="trace", trace_path=str(bad), n_tasks=None, horizon=None)


def test_builtin_prompts_are_a_few_hundred_distinct_lines():
    prompts = load_prompts()
    assert len(prompts) >= 200 and len(set(prompts)) == len(prompts)
    with pytest.raises(ConfigError, match="workload.prompts"):
        load_prompts("/nonexistent/prompts.txt")
