"""Reports from a small set of result files: tables, figures, T1, F5, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eatbench.experiment.sweep import run_sweep
from eatbench.report.aggregate import aggregate, fmt_ci, load_runs, load_training_curves, reduction_table
from eatbench.report.markdown import write_report


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """paper_rates at two rates for fifo and greedy, 3 seeds (12 runs)."""
    root = tmp_path_factory.mktemp("rep") / "results"
    for sched in ("fifo", "greedy"):
        for rate in ("0.03", "0.09"):
            run_sweep(
                "paper_rates", [f"scheduler={sched}", f"workload.rate={rate}"], root=root, seeds=3, progress=False
            )
    return root


def test_load_runs_and_aggregate_match_the_files(results):
    runs = load_runs(results)
    assert len(runs) == 12 and set(runs["scheduler"]) == {"fifo", "greedy"} and set(runs["seed"]) == {0, 1, 2}
    one = runs.iloc[0]
    payload = json.loads((Path(one["path"]) / "summary.json").read_text())
    assert one["response_mean"] == payload["summary"]["response_mean"]
    agg = aggregate(runs[runs["experiment"] == one["experiment"]])
    row = agg[(agg["scheduler"] == one["scheduler"]) & (agg["point"] == one["point"])].iloc[0]
    vals = runs[(runs["scheduler"] == one["scheduler"]) & (runs["point"] == one["point"])]["response_mean"]
    assert row["response_mean"] == pytest.approx(vals.mean()) and row["seeds"] == 3
    assert row["response_mean_lo"] <= row["response_mean"] <= row["response_mean_hi"]
    assert vals.min() <= row["response_mean_lo"] and row["response_mean_hi"] <= vals.max()  # a bootstrap of 3 values
    assert row["tasks_sum"] == runs.loc[vals.index, "tasks"].sum()
    assert row["completion_min"] == runs.loc[vals.index, "completion_rate"].min()


def test_reduction_table_is_paired_by_seed(results):
    runs = load_runs(results)
    runs = runs.assign(experiment="x")
    red = reduction_table(runs, "greedy")
    assert list(red["baseline"]) == ["fifo", "fifo"] and list(red["seeds"]) == [3, 3]
    g = runs[(runs.scheduler == "greedy") & (runs.rate == 0.09)].set_index("seed")["response_mean"]
    f = runs[(runs.scheduler == "fifo") & (runs.rate == 0.09)].set_index("seed")["response_mean"]
    assert red.iloc[1]["reduction_pct"] == pytest.approx(100 * (1 - g.mean() / f.mean()))
    assert red.iloc[1]["low"] <= red.iloc[1]["reduction_pct"] <= red.iloc[1]["high"]


def test_report_has_tables_figures_configs_and_differences(results, tmp_path):
    path = write_report(tmp_path, results, curves_dir=tmp_path / "no-curves")
    text = path.read_text()
    name = load_runs(results)["experiment"].iloc[0]
    assert f"## The paper's arrival-rate sweep (paper4) — `{name}`" in text
    for fig in ("f1", "f2", "f3", "f7"):
        png = tmp_path / "figures" / f"{fig}_paper_rates.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and f"(figures/{png.name})" in text
    assert "| scheduler | rate | response_mean |" in text and "| Greedy | 0.09 |" in text and "| FIFO | 0.03 |" in text
    assert "tasks/seed (min)" in text and "Resolved config of one run" in text and '"w_t": 250.0' in text
    assert "completion (min)" in text and "Every arrived task counts" in text and "| response |" in text
    assert "## What each figure reproduces" in text and "| T1 |" in text
    assert "**EAT results are not available**" in text  # T1 without EAT
    assert "### T1b: every scheduler against every other (paired)" in text and "| rate 0.09 |" in text
    assert "No training curves found" in text  # F5 skipped with a message
    assert "Where our setting differs from the paper" in text and "Greedy's action slots are swapped" in text
    assert "Package versions: python" in text and (tmp_path / "data" / "runs.csv").is_file()


def test_fmt_ci():
    assert fmt_ci(12.345, 11.0, 13.04) == "12.3 [11.0, 13.0]" and fmt_ci(0.5, math.nan, math.nan, "{:.1%}") == "50.0%"
    assert fmt_ci(0.5, 0.4, 0.6, "{:.1%}") == "50.0% [40.0%, 60.0%]" and fmt_ci(math.nan, 1.0, 2.0) == "n/a"


def test_training_curves_from_csv_and_sidecar_json(tmp_path):
    run = tmp_path / "eat-paper4-paper-tuned-seed1"
    run.mkdir()
    (run / "curve.csv").write_text("step,wall_s,eval_return,eval_response_mean,episodes\n0,0,1.5,9,0\n100,1,2.5,8,3\n")
    (tmp_path / "sac-paper4.json").write_text(
        json.dumps({"scheduler": "sac", "seed": 2, "curve": [{"step": 0, "eval_return": 0.5}]})
    )
    (tmp_path / "other.json").write_text(json.dumps({"no": "curve"}))
    curves = load_training_curves(tmp_path)
    assert sorted(set(zip(curves.scheduler, curves.seed, strict=True))) == [("eat", 1), ("sac", 2)] and len(curves) == 3
    path = write_report(tmp_path / "r", tmp_path / "none", curves_dir=tmp_path)
    assert (tmp_path / "r" / "figures" / "f5_training.png").is_file() and "EAT: 1, SAC: 1" in path.read_text()


def test_report_command_rebuilds_from_files(results, tmp_path, monkeypatch, capsys):
    from eatbench.cli import main

    monkeypatch.chdir(tmp_path)
    main(["report", f"output.root={results}", f"hydra.run.dir={tmp_path}/h"])
    assert f"report -> {results.parent}/REPORT.md" in capsys.readouterr().out
    assert (results.parent / "figures" / "f1_paper_rates.png").is_file()


def _write_summary(root, folder: str, checkpoint: str = "", response: float = 1.0, mtime: float | None = None):
    """One finished run of scheduler ``eat_set`` at point ``p``, seed 0, in ``folder``."""
    import json
    import os

    path = root / "exp" / "eat_set" / folder / "seed=0"
    path.mkdir(parents=True)
    payload = {
        "experiment": "exp",
        "scheduler": "eat_set",
        "point": "p",
        "seed": 0,
        "config": {"scheduler": {"checkpoint": checkpoint}},
        "summary": {"response_mean": response},
    }
    (path / "summary.json").write_text(json.dumps(payload))
    if mtime is not None:
        os.utime(path / "summary.json", (mtime, mtime))


def test_a_rerun_with_another_checkpoint_supersedes_the_older_folder(tmp_path):
    """Two folders of one scheduler and point (e.g. an older checkpoint's digest): the
    newest run of each seed counts, never both."""
    from eatbench.report.aggregate import load_runs

    _write_summary(tmp_path, "p-aaaa", response=10.0, mtime=1_000)
    _write_summary(tmp_path, "p-bbbb", response=20.0, mtime=2_000)
    runs = load_runs(tmp_path)
    assert len(runs) == 1 and runs.iloc[0]["response_mean"] == 20.0


def test_runs_of_different_checkpoint_files_all_count(tmp_path):
    from eatbench.report.aggregate import load_runs

    _write_summary(tmp_path, "p-aaaa", "seeds/eat_set-any-seed0.pt")
    _write_summary(tmp_path, "p-bbbb", "seeds/eat_set-any-seed1.pt")
    assert len(load_runs(tmp_path)) == 2


def test_the_oracle_table_marks_episodes_censored_at_the_end():
    """Where an oracle episode leaves a task unfinished, the censored mean response can fall
    below the oracle's (uncensored) bound: the cell and the caption say so."""
    import pandas as pd

    from eatbench.report.markdown import _censoring_note, _oracle_table, oracle_distance

    def runs(unfinished: int) -> pd.DataFrame:
        rows = []
        for rate in (0.01, 0.07):
            for seed in (0, 1):
                cut = unfinished if (rate, seed) == (0.01, 1) else 0
                rows.append(
                    dict(
                        scheduler="oracle",
                        rate=rate,
                        seed=seed,
                        response_mean=30.0 - cut,
                        oracle_bound=30.0,
                        oracle_gap=0.0,
                        tasks_unfinished=cut,
                    )
                )
                rows.append(dict(scheduler="fifo", rate=rate, seed=seed, response_mean=50.0, tasks_unfinished=0))
        return pd.DataFrame(rows)

    for unfinished, marked in ((1, True), (0, False)):
        df = runs(unfinished)
        orc = df[df["scheduler"] == "oracle"]
        first = _oracle_table(oracle_distance(df, orc), orc)[2]
        cells = first.split("|")[2:4]
        assert ("†" in cells[0]) is marked and "†" not in cells[1]
        assert ("rate 0.01" in _censoring_note(orc)) is marked
