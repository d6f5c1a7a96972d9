"""A W&B Report that mirrors ``REPORT.md``, built with the ``wandb-workspaces`` library.

One section per experiment found in the results (the same titles and descriptions as
``REPORT.md``): each of its F-figures becomes line plots of each metric against the swept
setting (arrival rate in tasks/s, or cluster size), one line per scheduler (runs grouped by
``config.scheduler``, mean over seeds with a standard-error band); the T1 table of
response-time reductions is a markdown block. The plots read the W&B runs written by
:mod:`eatbench.report.wandb_log` (run group = experiment, ``define_metric`` x-axis).

``eatbench report --wandb-report`` publishes it (needs ``output.wandb=online`` and a W&B
login); ``eatbench report --wandb-report-json PATH`` writes its definition as JSON, offline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eatbench.report.wandb_log import PROJECT

TITLE = "eatbench: reproduction of EAT (arXiv 2507.10026)"


@dataclass(frozen=True)
class PlotSpec:
    """One line plot of the report: ``metric`` against ``x``, one line per scheduler."""

    figure: str  # F1..F8
    title: str
    x: str
    metric: str
    log_x: bool = False


@dataclass(frozen=True)
class SectionSpec:
    """One experiment's section: heading, description, plots."""

    experiment: str
    title: str
    description: str
    plots: tuple[PlotSpec, ...]


def report_sections(runs: pd.DataFrame) -> list[SectionSpec]:
    """The sections of the report for the experiments in ``runs`` (rows of ``load_runs``),
    in ``REPORT.md``'s order, with its figures as :class:`PlotSpec` (a trade-off figure such
    as F7 becomes response time against quality)."""
    from eatbench.report.aggregate import base_experiment
    from eatbench.report.markdown import EXPERIMENTS, ORDER, FigureSpec, x_column

    names = sorted(runs["experiment"].unique(), key=lambda n: (_order(base_experiment(n), ORDER), n))
    sections = []
    for name in names:
        title, desc, figures = EXPERIMENTS.get(
            base_experiment(name), (name, "", (FigureSpec("F", "Response time vs the swept setting"),))
        )
        x = x_column(name, runs[runs["experiment"] == name])
        plots = []
        for spec in figures:
            if spec.kind == "tradeoff":
                plots.append(PlotSpec(spec.fid, f"{spec.fid}: {spec.caption}", "quality_mean", "response_mean"))
                continue
            for metric in spec.metrics:
                plots.append(PlotSpec(spec.fid, f"{spec.fid}: {metric} vs {spec.x}", spec.x or x, metric, spec.logx))
        sections.append(SectionSpec(name, f"{title} — {name}", desc, tuple(plots)))
    return sections


def _order(base: str, order: list[str]) -> int:
    return order.index(base) if base in order else len(order)


def t1_markdown(runs: pd.DataFrame) -> str:
    """The T1 section of ``REPORT.md`` (heading excluded) as markdown."""
    from eatbench.report.markdown import _headline_section

    return "\n".join(_headline_section(runs)[2:]).strip()


def build_report(runs: pd.DataFrame, *, project: str = PROJECT, entity: str | None = None, title: str = TITLE):
    """The ``wandb_workspaces`` Report object for ``runs`` (nothing is sent)."""
    import wandb_workspaces.reports.v2 as wr

    blocks: list = [
        wr.P(
            "Mirror of REPORT.md: one section per experiment, each figure's metrics against the swept "
            "setting, one line per scheduler (mean over seeds, standard-error band)."
        ),
        wr.TableOfContents(),
    ]
    for section in report_sections(runs):
        runset = wr.Runset(
            entity=entity or "",
            project=project,
            name=section.experiment,
            filters=f"Config('experiment') = '{section.experiment}'",
            groupby=["config.scheduler"],
        )
        panels = []
        for i, plot in enumerate(section.plots):
            layout = wr.Layout(x=(i % 3) * 8, y=(i // 3) * 6, w=8, h=6)
            if plot.x == "quality_mean":
                panels.append(wr.ScatterPlot(title=plot.title, x=plot.x, y=plot.metric, layout=layout))
            else:
                panels.append(
                    wr.LinePlot(
                        title=plot.title,
                        x=plot.x,
                        y=[plot.metric],
                        log_x=plot.log_x or None,
                        groupby=wr.Config("scheduler"),
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stderr",
                        layout=layout,
                    )
                )
        blocks += [wr.H2(section.title), wr.P(section.description), wr.PanelGrid(runsets=[runset], panels=panels)]
    blocks += [wr.H2("T1: response-time reduction of EAT vs each baseline"), wr.MarkdownBlock(t1_markdown(runs))]
    return wr.Report(project=project, entity=entity or "", title=title, blocks=blocks, width="fluid")


def report_definition(report) -> dict:
    """The JSON-able definition (W&B's report view spec) of a ``wandb_workspaces`` Report."""
    return json.loads(report._to_model().model_dump_json(by_alias=True, exclude_none=True))


def write_report_json(results_root: str | Path, path: str | Path, *, project: str = PROJECT) -> Path:
    """Write the report's definition for the results under ``results_root`` to ``path`` (offline)."""
    from eatbench.report.aggregate import load_runs

    runs = load_runs(results_root)
    if runs.empty:
        raise ValueError(f"output.root={results_root} is invalid; allowed: a folder with finished result files")
    # no entity: with one, wandb-workspaces looks the project up online
    report = build_report(runs, project=project, entity=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_definition(report), indent=1))
    return path


def publish_report(results_root: str | Path, *, project: str = PROJECT, entity: str | None = None) -> str:
    """Save the report to W&B (online, logged in) and return its URL."""
    from eatbench.report.aggregate import load_runs

    runs = load_runs(results_root)
    if runs.empty:
        raise ValueError(f"output.root={results_root} is invalid; allowed: a folder with finished result files")
    if entity is None:
        import wandb

        entity = os.environ.get("WANDB_ENTITY") or wandb.Api().default_entity
    report = build_report(runs, project=project, entity=entity)
    report.save()
    return report.url
