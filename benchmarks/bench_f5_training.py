"""F5: training curves (evaluation return vs env steps, several seeds, CI band), read from
the curve files the trainer writes next to checkpoints (eatbench/data/checkpoints/**)."""

import pytest

pytestmark = pytest.mark.eat_figure("F5")


def test_f5_training_curves(benchmark, eat_session):
    from eatbench.report.aggregate import CHECKPOINT_DIR, load_training_curves
    from eatbench.report.plots import plot_training_curves

    curves = load_training_curves(CHECKPOINT_DIR)
    if curves.empty:
        pytest.skip(f"F5: no training curves under {CHECKPOINT_DIR} (train with `nox -s reproduce`)")
    png = eat_session.options.report_dir / "figures" / "f5_training.png"
    path = benchmark.pedantic(plot_training_curves, args=(curves, png, "F5: evaluation return vs env steps"), rounds=1)
    assert path.is_file()
    last = curves.sort_values("step").groupby(["scheduler", "seed"]).tail(1)
    benchmark.extra_info.update(
        {f"{r.scheduler}/seed{r.seed}/final_return": float(r.eval_return) for r in last.itertuples()}
    )
