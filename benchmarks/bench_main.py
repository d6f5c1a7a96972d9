"""The main job: the paper's arrival-rate sweep (``--eat-experiment``, default
``paper_rates``): 4 servers, rates 0.01..0.11 tasks/s, every heuristic scheduler plus the
learned ones with a checkpoint, 30 seeds, sim backend. The session writes result files,
``REPORT.md`` and W&B runs and prints the metric tables at the end; its wall time is in the
terminal summary (a sweep's speed is measured, without cache hits, by ``bench_speed.py``)."""

from __future__ import annotations

from _figures import check_grid


def test_main_job(eat_session):
    result = eat_session.sweep()
    runs = eat_session.table(result.experiment)
    x = "n_servers" if runs["n_servers"].nunique() > 1 and runs["rate"].nunique() <= 1 else "rate"
    check_grid(runs, x, eat_session.seed_count())
    assert len(result.results) == len(runs), "every job of the grid has its result files"
