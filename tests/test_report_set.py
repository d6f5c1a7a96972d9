"""Report sections of the size-agnostic agents (ours): F9 (held-out points and the issue's
target), F5 curves over training seeds, T2 (rliable over training seeds); synthetic files."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from eatbench.core.stats import iqm_interval
from eatbench.report.aggregate import load_runs, load_training_curves
from eatbench.report.heldout import point_labels, target_rows, with_point_labels
from eatbench.report.markdown import write_report
from eatbench.report.seeds import SEED_EXPERIMENT, load_seed_runs, robustness_lines, seed_scores, seeds_section

#: heldout24 points of conf/experiment/heldout/ (c24_u50, c24_u80).
RATES = {"c24_u50": 2.577, "c24_u80": 4.123}


def fake_run(root: Path, exp: str, sched: str, point: str, seed: int, resp: float, checkpoint: str = "auto") -> None:
    """A finished run's ``summary.json`` with the fields the report reads."""
    rate = RATES[point]
    folder = (
        root
        / exp
        / sched
        / f"heldout24-bursty-gamma-rate{rate:g}-abc-{zlib.crc32(checkpoint.encode()) % 999}"
        / f"seed={seed}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "experiment": exp,
        "scheduler": sched,
        "point": f"heldout24-bursty-gamma-rate{rate:g}-abc",
        "seed": seed,
        "git_revision": "0" * 40,
        "config": {
            "cluster": {"name": "heldout24"},
            "workload": {"name": "bursty", "arrival": "gamma", "rate": rate, "cv": 4.0},
            "scheduler": {"name": sched, "checkpoint": checkpoint},
        },
        "summary": {
            "n_servers": 24,
            "tasks": 500,
            "tasks_done": 500,
            "completion_rate": 1.0,
            "response_mean": resp,
            "response_p90": 2 * resp,
            "slo_attainment": 0.9,
        },
    }
    (folder / "summary.json").write_text(json.dumps(payload))


@pytest.fixture
def heldout_root(tmp_path):
    """EF ~100 s; Random 3x; eat_set 1.05x at c24_u50 but 1.5x at c24_u80; dsac_set 0.95x."""
    root = tmp_path / "results"
    for point in RATES:
        for seed in range(5):
            ef = 100.0 + 7 * seed + (30 if point == "c24_u80" else 0)
            eat = 1.05 if point == "c24_u50" else 1.5
            for sched, resp in (
                ("earliest_finish", ef),
                ("random", 3 * ef + seed),
                ("eat_set", eat * ef + 0.3 * seed),
                ("dsac_set", 0.95 * ef - 0.2 * seed),
            ):
                fake_run(root, "heldout", sched, point, seed, resp)
    return root


def test_heldout_point_labels_come_from_the_variant_files():
    labels = point_labels()
    assert {labels[round(r, 6)] for r in RATES.values()} == set(RATES)
    assert len(labels) == 4 and "c48_u80" in labels.values()


def test_f9_target_met_and_not_met_per_point(heldout_root, tmp_path):
    runs = with_point_labels(load_runs(heldout_root))
    eat = target_rows(runs, "eat_set").set_index("point_label")
    assert bool(eat.loc["c24_u50", "met"]) and not bool(eat.loc["c24_u80", "met"])
    assert not bool(eat.loc["c24_u80", "within"]) and bool(eat.loc["c24_u80", "not_worse"])
    assert eat.loc["c24_u80", "ef_ratio"] == pytest.approx((1.5 * 720 + 3) / 720)  # sum over 5 seeds of EF = 720
    assert eat.loc["c24_u50", "ef_ratio_lo"] <= eat.loc["c24_u50", "ef_ratio"] <= eat.loc["c24_u50", "ef_ratio_hi"]
    text = write_report(tmp_path / "r", heldout_root, curves_dir=tmp_path / "none").read_text()
    assert "## Held-out clusters and loads (F9, ours) — `heldout`" in text
    assert (tmp_path / "r" / "figures" / "f9_heldout.png").read_bytes()[:4] == b"\x89PNG"
    assert "| c24_u50 | EAT (size-agnostic, ours) |" in text and "| c24_u80 | Random |" in text
    eat_line = next(line for line in text.splitlines() if line.startswith("- EAT (size-agnostic, ours): target"))
    assert "**not met** on the held-out points, met at 1 of 2" in eat_line
    assert (
        "c24_u50: **met**" in eat_line and "c24_u80: **not met**" in eat_line and "1.50x EarliestFinish's" in eat_line
    )
    dsac_line = next(line for line in text.splitlines() if line.startswith("- DSAC (size-agnostic, ours): target"))
    assert "**met** on the held-out points, met at 2 of 2" in dsac_line and "settled at 95%" in dsac_line
    assert "| EAT (size-agnostic, ours) vs Random |" in text and "never worse than Random at any load" in text


def _curve(ret: float, resp: float) -> list[dict]:
    return [
        {"step": s, "wall_s": s / 100, "eval_return": ret + s / 1000, "eval_response_mean": resp} for s in (0, 1000)
    ]


def test_f5_dedupes_the_shipped_copy_of_seed0_and_plots_set_agents_apart(tmp_path):
    (tmp_path / "seeds").mkdir()
    for s in range(3):
        (tmp_path / "seeds" / f"eat_set-any-seed{s}.json").write_text(
            json.dumps({"scheduler": "eat_set", "seed": s, "curve": _curve(s, 50 + s)})
        )
    (tmp_path / "eat_set-any.json").write_text(json.dumps({"scheduler": "eat_set", "seed": 0, "curve": _curve(0, 50)}))
    (tmp_path / "eat-paper4.json").write_text(json.dumps({"scheduler": "eat", "seed": 0, "curve": _curve(9, 9)}))
    curves = load_training_curves(tmp_path)
    ours = curves[curves.scheduler == "eat_set"]
    assert len(ours) == 6 and sorted(ours.seed.unique()) == [0, 1, 2]
    assert all(src.startswith("seeds/") for src in ours.source) and ours.eval_response_mean.notna().all()
    assert len(curves[curves.scheduler == "eat"]) == 2  # the fixed layout's curve, as before
    text = write_report(tmp_path / "r", tmp_path / "none", curves_dir=tmp_path).read_text()
    assert (tmp_path / "r" / "figures" / "f5_training_set.png").is_file()
    assert (tmp_path / "r" / "figures" / "f5_training.png").is_file()
    assert "EAT (size-agnostic, ours): 3" in text and "EAT: 1" in text


def _seed_root(tmp_path: Path) -> Path:
    """heldout_seeds: EF at 2 points x 3 workload seeds; eat_set's 5 training seeds at EF/f."""
    root = tmp_path / "results"
    for point in RATES:
        for seed in range(3):
            ef = 100.0 + seed
            fake_run(root, SEED_EXPERIMENT, "earliest_finish", point, seed, ef)
            for ts, f in enumerate((0.9, 1.0, 1.1, 0.8, 1.2)):
                fake_run(root, SEED_EXPERIMENT, "eat_set", point, seed, ef / f, f"/x/seeds/eat_set-any-seed{ts}.pt")
            for ts, f in enumerate((0.5, 0.6, 0.7)):
                fake_run(root, SEED_EXPERIMENT, "dsac_set", point, seed, ef / f, f"/x/seeds/dsac_set-any-seed{ts}.pt")
    return root


def test_t2_iqm_and_probability_of_improvement_from_per_seed_scores(tmp_path):
    root = _seed_root(tmp_path)
    runs = load_seed_runs(root)
    assert set(runs[runs.scheduler == "earliest_finish"].train_seed) == {-1}
    scores = seed_scores(runs)
    eat = scores[scores.scheduler == "eat_set"].set_index("train_seed")
    assert list(eat.index) == [0, 1, 2, 3, 4] and (eat["pairs"] == 6).all()
    assert eat["score"].to_numpy() == pytest.approx([0.9, 1.0, 1.1, 0.8, 1.2])
    lines = "\n".join(robustness_lines(scores))
    iv = iqm_interval([0.9, 1.0, 1.1, 0.8, 1.2])
    assert f"| EAT (size-agnostic, ours) | 5 | {iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}] |" in lines
    assert iv.low <= 1.0 <= iv.high and np.isclose(iv.estimate, 1.0)
    # every eat_set seed (>= 0.8) beats every dsac_set seed (<= 0.7)
    assert "P(EAT (size-agnostic, ours) > DSAC (size-agnostic, ours)) = 1.00" in lines
    text = write_report(tmp_path / "r", root, curves_dir=tmp_path / "none").read_text()
    assert "## T2: robustness over training seeds" in text and f"`{SEED_EXPERIMENT}`" not in text


def test_t2_says_when_there_is_nothing_to_show(tmp_path):
    lines = "\n".join(seeds_section(tmp_path / "results", tmp_path / "ckpt"))
    assert "No training-seed evaluation results" in lines and "no per-seed checkpoints exist" in lines
    (tmp_path / "ckpt" / "seeds").mkdir(parents=True)
    (tmp_path / "ckpt" / "seeds" / "eat_set-any-seed3.pt").write_bytes(b"")
    assert "eat_set: 1 seeds" in "\n".join(seeds_section(tmp_path / "results", tmp_path / "ckpt"))


def test_evaluation_stage_refuses_unknown_points_before_running(tmp_path):
    from eatbench.report.seeds import evaluate_training_seeds, heldout_points

    assert heldout_points() == ["c24_u50", "c24_u80", "c48_u50", "c48_u80"]
    with pytest.raises(ValueError, match=r"points=\['c99_u10'\] is invalid; allowed: c24_u50"):
        evaluate_training_seeds(tmp_path / "results", checkpoint_dir=tmp_path, points=["c99_u10"])
    assert not (tmp_path / "results").exists()
