"""F7: latency-quality trade-off from per-task records: steps chosen vs response and quality."""


def test_f7_steps_response_quality(eat_session):
    from eatbench.report.aggregate import load_records
    from eatbench.report.plots import plot_tradeoff

    result = eat_session.sweep("paper_rates")
    runs = eat_session.table(result.experiment)
    records = load_records(runs)
    assert len(records) == int(runs["tasks"].sum()), "every arrived task has a record"
    done = records[records["status"] == "done"]
    assert (done["steps"] >= 1).all() and (done["response"] >= done["execution"] - 1e-9).all()
    assert (done["finish"] >= done["start"]).all() and (done["start"] >= done["arrival"] - 1e-9).all()
    png = eat_session.options.report_dir / "figures" / "f7_paper_rates.png"
    path = plot_tradeoff(records, png, "F7: steps vs response time and quality")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
