"""W&B: one offline run per (experiment, scheduler, seed), read back and compared to our JSONL."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eatbench.report.wandb_log import log_experiments, read_jsonl
from eatbench.report.wandb_read import find_runs, read_run
from eatbench.sweep import run_sweep


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
    assert out.errors == [] and out.runs == 2 and len(find_runs(tmp_path / "wandb")) == 2
    for jsonl in out.jsonl:
        config, history, summary, wandb_file = read_jsonl(jsonl)
        assert config["scheduler"] == "greedy" and [h["rate"] for h in history] == [0.01, 0.07, 0.11]
        run = read_run(wandb_file)
        assert run.config["scheduler"] == "greedy" and run.config["seed"] == config["seed"]
        assert run.config["config"]["workload"]["n_tasks"] == 32
        metric_rows = [h for h in run.history if "response_mean" in h]
        assert len(metric_rows) == 3
        for mine, theirs in zip(history, metric_rows, strict=True):
            assert all(_same(mine[k], theirs[k]) for k in ("rate", "response_mean", "response_p90", "slo_attainment"))
        for key in ("rate=0.01/response_mean", "rate=0.11/quality_mean", "points"):
            assert _same(summary[key], run.summary[key])
        assert any(k.startswith("tasks") for h in run.history for k in h)  # the per-task table


def test_wandb_failure_keeps_local_results(root, tmp_path, monkeypatch):
    import wandb

    def boom(*a, **k):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", boom)
    before = {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
    out = log_experiments(root, mode="offline", wandb_dir=tmp_path)
    assert out.runs == 2 and len(out.errors) == 2 and "no W&B today" in out.errors[0]
    assert all(p.is_file() for p in out.jsonl) and read_jsonl(out.jsonl[0])[1]
    after = {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
    assert before and after == before  # result files untouched


def test_disabled_mode_writes_jsonl_only(root, tmp_path):
    out = log_experiments(root, mode="disabled", wandb_dir=tmp_path)
    assert out.runs == 2 and out.wandb_files == [] and not (tmp_path / "wandb").exists()
