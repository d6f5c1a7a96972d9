"""W&B: one offline run per (experiment, scheduler, point, seed), read back and compared to our
JSONL; deterministic ids (a rerun updates its runs); the W&B Report definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eatbench.experiment.sweep import run_sweep
from eatbench.report.wandb_log import HISTORY_METRICS, log_experiments, read_jsonl, run_id
from eatbench.report.wandb_read import find_runs, read_run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wb") / "results"
    run_sweep("paper_rates", ["scheduler=greedy"], root=root, quick=True, seeds=2, progress=False)  # 3 rates x 2 seeds
    return root


def _same(a, b):
    return (a is None and (b is None or math.isnan(b))) or a == pytest.approx(b)


def test_offline_runs_read_back_match_the_jsonl(root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = log_experiments(root, mode="offline", wandb_dir=tmp_path)
    assert out.errors == [] and out.runs == 6 and len(find_runs(tmp_path / "wandb")) == 6
    rates = []
    for jsonl in out.jsonl:
        config, history, summary, wandb_file = read_jsonl(jsonl)
        run_folder = next(root.glob(f"*/greedy/{config['point']}-*/seed={config['seed']}"))
        summary_json = json.loads((run_folder / "summary.json").read_text())
        run = read_run(wandb_file)
        assert run.run_id == config["id"] and run.group == "paper_rates" and run.job_type == "greedy"
        assert run.config["scheduler"] == "greedy" and run.config["seed"] == config["seed"]
        assert run.config["rate"] == config["rate"] and run.config["config"]["workload"]["n_tasks"] == 32
        rates.append(config["rate"])
        # the arrival rate is the x-axis of every metric
        assert run.metrics["response_mean"] == "rate" and run.metrics["slo_attainment"] == "rate"
        metric_rows = [h for h in run.history if "response_mean" in h]
        assert len(metric_rows) == 1 and len(history) == 1
        assert all(_same(history[0][k], metric_rows[0][k]) for k in ("rate", *HISTORY_METRICS) if k in history[0])
        # every summary metric of the result files, with the settings
        for key, value in summary_json["summary"].items():
            assert _same(run.summary[key], value), key
        assert _same(run.summary["rate"], config["rate"]) and run.summary["n_servers"] == 4
        # the per-task records as a table
        n_records = len((run_folder / "records.csv").read_text().splitlines()) - 1
        assert run.summary["task_records/_type"] == "table-file"
        assert run.summary["task_records/nrows"] == n_records
    assert sorted(rates) == [0.01, 0.01, 0.07, 0.07, 0.11, 0.11]


def test_logging_twice_updates_the_same_runs(root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = log_experiments(root, mode="offline", wandb_dir=tmp_path)
    second = log_experiments(root, mode="offline", wandb_dir=tmp_path)
    assert first.errors == second.errors == []
    ids_first = {read_jsonl(p)[0]["id"] for p in first.jsonl}
    files = find_runs(tmp_path / "wandb")
    ids = [read_run(p).run_id for p in files]
    assert len(ids_first) == 6 and sorted(ids) == sorted(ids_first)  # 6 runs, not 12
    assert len(list((tmp_path / "eatbench-wandb").glob("*.jsonl"))) == 6


def test_run_id_is_deterministic_and_distinguishes_runs():
    a = run_id("paper_rates", "greedy", "paper4-x-rate0.01-1-2", 0)
    assert a == run_id("paper_rates", "greedy", "paper4-x-rate0.01-1-2", 0)
    others = {run_id("paper_rates", "greedy", "paper4-x-rate0.01-1-2", 1), run_id("paper_rates", "fifo", "p", 0)}
    assert a not in others and len(others) == 2


def test_wandb_failure_keeps_local_results(root, tmp_path, monkeypatch):
    import wandb

    def boom(*a, **k):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", boom)
    before = {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
    out = log_experiments(root, mode="offline", wandb_dir=tmp_path)
    assert out.runs == 6 and len(out.errors) == 6 and "no W&B today" in out.errors[0]
    assert all(p.is_file() for p in out.jsonl) and read_jsonl(out.jsonl[0])[1]
    after = {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
    assert before and after == before  # result files untouched


def test_disabled_mode_writes_jsonl_only(root, tmp_path):
    out = log_experiments(root, mode="disabled", wandb_dir=tmp_path)
    assert out.runs == 6 and out.wandb_files == [] and not (tmp_path / "wandb").exists()


def test_bad_mode_is_a_clear_error(root, tmp_path):
    with pytest.raises(ValueError, match="output.wandb=cloud is invalid; allowed: offline, online, disabled"):
        log_experiments(root, mode="cloud", wandb_dir=tmp_path)


def _blocks(definition: dict, kind: str) -> list[dict]:
    return [b for b in definition["spec"]["blocks"] if b["type"] == kind]


def test_wandb_report_definition_mirrors_the_markdown_report(root, tmp_path):
    from eatbench.cli import main

    path = tmp_path / "wandb_report.json"
    main(
        [
            "report",
            f"output.root={root}",
            "output.wandb=disabled",
            "--wandb-report-json",
            str(path),
            f"hydra.run.dir={tmp_path}/h",
        ]
    )
    definition = json.loads(path.read_text())
    headings = [b["children"][0]["text"] for b in _blocks(definition, "heading")]
    assert headings == [
        "The paper's arrival-rate sweep (paper4) — paper_rates",
        "T1: response-time reduction of EAT vs each baseline",
    ]
    (grid,) = _blocks(definition, "panel-grid")
    (runset,) = grid["metadata"]["runSets"]
    assert runset["filters"]["filters"][0]["key"]["name"] == "experiment"
    assert runset["filters"]["filters"][0]["value"] == "paper_rates"
    panels = grid["metadata"]["panelBankSectionConfig"]["panels"]
    lines = {p["config"]["chartTitle"]: p["config"] for p in panels if p["viewType"] == "Run History Line Plot"}
    # F1 (mean and p90 response), F2 (quality), F3 (reward): each metric against the rate, one line per scheduler
    assert {c["metrics"][0] for c in lines.values()} == {
        "response_mean",
        "response_p90",
        "quality_mean",
        "reward_total",
    }
    assert all(
        c["xAxis"] == "rate" and c["groupBy"] == "scheduler.value" and c["groupAgg"] == "mean" for c in lines.values()
    )
    assert sorted(t.split(":")[0] for t in lines) == ["F1", "F1", "F2", "F3"]
    assert [p["config"]["chartTitle"].split(":")[0] for p in panels if p["viewType"] == "Scatter Plot"] == ["F7"]
    (t1,) = _blocks(definition, "markdown-block")
    assert "Reduction of mean response time" in t1["content"] or "EAT results are not available" in t1["content"]
    assert (root.parent / "REPORT.md").is_file()  # the markdown report next to the results, as always


def test_wandb_report_needs_online_mode(root, tmp_path, capsys):
    from eatbench.cli import main

    with pytest.raises(SystemExit):
        main(
            ["report", f"output.root={root}", "output.wandb=disabled", "--wandb-report", f"hydra.run.dir={tmp_path}/h"]
        )
    assert "output.wandb=disabled is invalid with --wandb-report; allowed: online" in capsys.readouterr().err


def test_wandb_report_flag_logs_online_and_saves_the_report(root, tmp_path, monkeypatch, capsys):
    """``--wandb-report`` without ``output.wandb``: the runs go online, then the report is saved
    (W&B's network calls replaced: ``log_experiments`` and ``Report.save``)."""
    import wandb_workspaces.reports.v2 as wr

    import eatbench.report.wandb_log as wandb_log
    from eatbench.cli import main

    modes, saved = [], []
    monkeypatch.setattr(
        wandb_log, "log_experiments", lambda r, **kw: modes.append(kw["mode"]) or wandb_log.LogResult(tmp_path)
    )
    monkeypatch.setattr(wr.Report, "save", lambda self, **kw: saved.append(self))
    monkeypatch.setattr(wr.Report, "url", property(lambda self: f"report-of-{self.entity}"))
    monkeypatch.setenv("WANDB_ENTITY", "me")
    main(["report", f"output.root={root}", "--wandb-report", f"hydra.run.dir={tmp_path}/h"])
    assert modes == ["online"] and len(saved) == 1 and saved[0].entity == "me" and saved[0].project == "eatbench"
    assert [b.text for b in saved[0].blocks if isinstance(b, wr.H2)][0].endswith("— paper_rates")
    assert "W&B report -> report-of-me" in capsys.readouterr().out
