"""F5: training curves (evaluation return vs env steps, a band over training seeds), read from
the curve files the trainer writes next to checkpoints (eatbench/data/checkpoints/**)."""

import math

import pytest


def test_f5_training_curves(eat_session):
    from eatbench.report.aggregate import CHECKPOINT_DIR, load_training_curves
    from eatbench.report.plots import plot_training_curves

    curves = load_training_curves(CHECKPOINT_DIR)
    if curves.empty:
        pytest.skip(f"F5: no training curves under {CHECKPOINT_DIR} (train with `nox -s reproduce`)")
    assert curves["eval_return"].map(math.isfinite).all()
    for (sched, seed), grp in curves.groupby(["scheduler", "seed"]):
        assert grp["step"].is_monotonic_increasing and grp["step"].iloc[0] >= 0, f"{sched} seed {seed}: steps"
    png = eat_session.options.report_dir / "figures" / "f5_training.png"
    path = plot_training_curves(curves, png, "F5: evaluation return vs env steps")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
