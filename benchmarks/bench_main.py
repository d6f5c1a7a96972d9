"""The main job: the paper's arrival-rate sweep (``--eat-experiment``, default
``paper_rates``): 4 servers, rates 0.01..0.11 tasks/s, every heuristic scheduler plus the
learned ones with a checkpoint, 5 seeds, sim backend. Times the sweep; the session writes
result files, ``REPORT.md`` and W&B runs and prints the metric tables at the end."""

from __future__ import annotations

from _figures import check_grid

from eatbench.report.session import flat_metrics


def test_main_job(benchmark, eat_session):
    result = benchmark.pedantic(eat_session.sweep, rounds=1, iterations=1)
    runs = eat_session.table(result.experiment)
    x = "n_servers" if runs["n_servers"].nunique() > 1 and runs["rate"].nunique() <= 1 else "rate"
    check_grid(runs, x)
    assert runs["seed"].nunique() == (
        min(eat_session.options.seeds, 2) if eat_session.options.quick else eat_session.options.seeds
    )
    benchmark.extra_info.update({"experiment": result.experiment, "runs": len(result.results), "reused": result.reused})
    benchmark.extra_info.update({f"skipped/{k}": v for k, v in result.skipped.items()})
    benchmark.extra_info.update(
        flat_metrics(runs, x, ("response_mean", "response_p90", "quality_mean", "slo_attainment"))
    )
