"""F7: latency-quality trade-off from per-task records: steps chosen vs response and quality."""

import pytest

pytestmark = pytest.mark.eat_figure("F7")


def test_f7_steps_response_quality(benchmark, eat_session):
    from eatbench.report.aggregate import load_records
    from eatbench.report.plots import plot_tradeoff

    result = eat_session.sweep("paper_rates")
    runs = eat_session.table(result.experiment)
    records = load_records(runs)
    done = records[records["status"] == "done"]
    assert (done["steps"] >= 1).all() and (done["response"] >= done["execution"] - 1e-9).all()
    png = eat_session.options.report_dir / "figures" / "f7_paper_rates.png"
    path = benchmark.pedantic(plot_tradeoff, args=(records, png, "F7: steps vs response time and quality"), rounds=1)
    assert path.is_file()
    by = done.groupby("scheduler")
    benchmark.extra_info.update({f"{s}/steps_mean": round(float(g["steps"].mean()), 2) for s, g in by})
    benchmark.extra_info.update({f"{s}/quality_mean": round(float(g["quality"].mean()), 4) for s, g in by})
    benchmark.extra_info["tasks"] = len(done)
