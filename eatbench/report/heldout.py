"""F9: the held-out clusters and loads (``eatbench/conf/experiment/heldout.yaml``), and the issue's target.

Each point is one ``+experiment/heldout=<name>`` variant (``c24_u50``: 24 servers at 50%
utilisation, ...), like ``+experiment/scale=n8`` for F4; the result files name a point by its
settings, so :func:`point_labels` maps a point's arrival rate back to the variant's name (the
four rates are distinct). Tables: every scheduler's mean response, p90, SLO attainment and
completion with 95% intervals per point; each size-agnostic agent (ours, ``*_set``) paired by
workload seed against EarliestFinish and Random; and per agent one sentence on the target
"never worse than Random at any load, and mean response within 10% of EarliestFinish or better".

The target is judged on point estimates over the paired seeds (the agent's mean response minus
Random's <= 0; the agent's mean / EarliestFinish's <= 1.10), and every number is shown with its
paired 95% bootstrap interval and whether that interval settles the question.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from eatbench.core.stats import paired_difference, paired_reduction
from eatbench.report import aggregate as agg_mod
from eatbench.report.aggregate import fmt_ci

HELDOUT = "heldout"
#: the target's reference schedulers and threshold (mean response within 10% of EarliestFinish).
REFERENCE, FLOOR, WITHIN = "earliest_finish", "random", 1.10
TARGET_TEXT = "never worse than Random at any load, and mean response within 10% of EarliestFinish or better"
#: metrics of the per-point table, with their display format.
POINT_METRICS = {"response_mean": "{:.1f}", "response_p90": "{:.1f}", "slo_attainment": "{:.1%}"}


def is_ours(scheduler: str) -> bool:
    """A size-agnostic learned scheduler (ours): ``eat_set``, ``dsac_set``, ..."""
    return str(scheduler).endswith("_set")


def point_labels(folder: Path | None = None) -> dict[float, str]:
    """Arrival rate (tasks/s) -> the held-out variant's name, from ``eatbench/conf/experiment/heldout/*.yaml``."""
    from omegaconf import OmegaConf

    if folder is None:
        from eatbench.experiment.compose import conf_dir

        folder = conf_dir() / "experiment" / HELDOUT
    out: dict[float, str] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        rate = OmegaConf.select(OmegaConf.load(path), "workload.rate")
        if rate is not None:
            out[round(float(rate), 6)] = path.stem
    return out


def describe(stem: str) -> str:
    """``c24_u80`` -> ``24 servers, 80% utilisation`` (the variant naming of heldout.yaml)."""
    m = re.fullmatch(r"c(\d+)_u(\d+)", stem)
    return f"{m.group(1)} servers, {m.group(2)}% utilisation" if m else stem


def with_point_labels(runs: pd.DataFrame, labels: dict[float, str] | None = None) -> pd.DataFrame:
    """``runs`` with a ``point_label`` column (the variant's name, else cluster, N and rate)."""
    labels = point_labels() if labels is None else labels
    names = [
        labels.get(round(float(r["rate"]), 6), f"{r['cluster']}-N{int(r['n_servers'])}-{r['rate']:g}/s")
        for _, r in runs.iterrows()
    ]
    return runs.assign(point_label=names)


def target_rows(runs: pd.DataFrame, agent: str) -> pd.DataFrame:
    """Per point: ``agent`` against Random (paired difference of mean response, s) and against
    EarliestFinish (paired ratio of mean responses and the difference, s), and the verdicts.

    :param runs: one experiment's runs with ``point_label``.
    """
    rows = []
    for (point, lab), _grp in runs[runs["scheduler"] == agent].groupby(["point", "point_label"], sort=True):
        row: dict = {"point": point, "point_label": lab}
        a, r = agg_mod._paired(runs, agent, FLOOR, point, "response_mean")
        d_rand = paired_difference(a, r)
        a, e = agg_mod._paired(runs, agent, REFERENCE, point, "response_mean")
        d_ef, red_ef = paired_difference(a, e), paired_reduction(a, e)
        row.update(
            rand_diff=d_rand.estimate,
            rand_lo=d_rand.low,
            rand_hi=d_rand.high,
            rand_n=d_rand.n,
            ef_diff=d_ef.estimate,
            ef_diff_lo=d_ef.low,
            ef_diff_hi=d_ef.high,
            ef_ratio=1 - red_ef.estimate / 100,
            ef_ratio_lo=1 - red_ef.high / 100,
            ef_ratio_hi=1 - red_ef.low / 100,
            ef_n=red_ef.n,
        )
        judged = d_rand.n > 0 and red_ef.n > 0
        row["not_worse"] = judged and d_rand.estimate <= 0
        row["within"] = judged and row["ef_ratio"] <= WITHIN
        row["judged"] = judged
        row["met"] = row["not_worse"] and row["within"]
        # settled: the 95% interval agrees with the verdict
        rand_settled = (d_rand.high <= 0) if row["not_worse"] else (d_rand.low > 0)
        ef_settled = (row["ef_ratio_hi"] <= WITHIN) if row["within"] else (row["ef_ratio_lo"] > WITHIN)
        row["settled"] = judged and bool(rand_settled) and bool(ef_settled)
        rows.append(row)
    return pd.DataFrame(rows)


def _num(x: float, spec: str = "{:+.1f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)


def target_sentence(agent_label: str, rows: pd.DataFrame) -> str:
    """One sentence: the target met or not for ``agent_label``, per point with the numbers."""
    if rows.empty:
        return f"- {agent_label}: no held-out results; the target cannot be judged."
    parts = []
    for _, r in rows.iterrows():
        if not r["judged"]:
            parts.append(f"{r['point_label']}: cannot be judged (no paired Random or EarliestFinish runs)")
            continue
        verdict = "met" if r["met"] else "not met"
        parts.append(
            f"{r['point_label']}: **{verdict}** (vs Random {_num(r['rand_diff'])} s "
            f"[{_num(r['rand_lo'])}, {_num(r['rand_hi'])}]; mean response {_num(r['ef_ratio'], '{:.2f}')}x "
            f"EarliestFinish's [{_num(r['ef_ratio_lo'], '{:.2f}')}, {_num(r['ef_ratio_hi'], '{:.2f}')}], "
            f"{_num(r['ef_diff'])} s; {int(r['ef_n'])} paired seeds; "
            f"{'settled' if r['settled'] else 'not settled'} at 95%)"
        )
    met = int(rows["met"].sum())
    overall = "**met**" if met == len(rows) and rows["judged"].all() else "**not met**"
    return (
        f"- {agent_label}: target ({TARGET_TEXT}) {overall} on the held-out points, met at {met} of {len(rows)}: "
        + "; ".join(parts)
        + "."
    )


def heldout_lines(runs: pd.DataFrame, fig_dir: Path, report_dir: Path) -> list[str]:
    """The F9 tables, figure and target sentences of one ``heldout`` result set."""
    from eatbench.report import plots
    from eatbench.report.markdown import _rel, markdown_table

    runs = with_point_labels(runs)
    agg = agg_mod.aggregate(runs, [*POINT_METRICS, "completion_rate"])
    agg = agg.merge(runs.groupby("point")["point_label"].first(), left_on="point", right_index=True)
    agg = agg.sort_values(["point_label", "scheduler"]).reset_index(drop=True)
    png = plots.plot_points(
        agg, list(POINT_METRICS), fig_dir / "f9_heldout.png", "F9: held-out clusters and loads (95% intervals)"
    )
    lines = [
        "### F9: every scheduler on the held-out points",
        "",
        "Points (fixed before training, not in the size-agnostic agents' training distribution): "
        + ", ".join(f"`{p}` ({describe(p)})" for p in sorted(agg["point_label"].unique()))
        + ". Mean over workload seeds with its 95% bootstrap interval; `†` = some seed left tasks unfinished.",
        "",
        f"![F9]({_rel(png, report_dir)})",
        "",
    ]
    headers = ["point", "scheduler", "mean response (s)", "p90 response (s)", "SLO attainment", "completion (min)"]
    rows = []
    for _, r in agg.iterrows():
        dagger = " †" if r["completion_min"] < 1.0 else ""
        cells = [r["point_label"], plots.label(r["scheduler"])]
        cells += [fmt_ci(r[m], r[f"{m}_lo"], r[f"{m}_hi"], spec) + dagger for m, spec in POINT_METRICS.items()]
        cells.append(f"{r['completion_min']:.0%}")
        rows.append(cells)
    lines += [*markdown_table(headers, rows), ""]
    agents = sorted(s for s in runs["scheduler"].unique() if is_ours(s))
    lines += ["### F9b: size-agnostic agents (ours) against EarliestFinish and Random, paired", ""]
    if not agents:
        return [*lines, "No size-agnostic agent (ours) has held-out results (no checkpoints when the sweep ran).", ""]
    points = sorted(runs["point_label"].unique())
    table, sentences = [], []
    for agent in agents:
        tr = target_rows(runs, agent)
        by = {r["point_label"]: r for _, r in tr.iterrows()}
        table.append(
            [f"{plots.label(agent)} vs EarliestFinish"]
            + [
                f"{_num(by[p]['ef_diff'])} [{_num(by[p]['ef_diff_lo'])}, {_num(by[p]['ef_diff_hi'])}] s, "
                f"{_num(by[p]['ef_ratio'], '{:.2f}')}x"
                if p in by
                else ""
                for p in points
            ]
        )
        table.append(
            [f"{plots.label(agent)} vs Random"]
            + [
                f"{_num(by[p]['rand_diff'])} [{_num(by[p]['rand_lo'])}, {_num(by[p]['rand_hi'])}] s" if p in by else ""
                for p in points
            ]
        )
        sentences.append(target_sentence(plots.label(agent), tr))
    lines += [
        "Cell = mean over shared workload seeds of (agent's mean response - the baseline's), seconds, with a paired "
        "95% bootstrap interval (negative = the agent is faster), and against EarliestFinish the ratio of mean "
        "responses (agent / EarliestFinish).",
        "",
        *markdown_table(["comparison \\ point", *points], table),
        "",
        f"The issue's target, per agent: {TARGET_TEXT}. Judged per point on the estimates (difference to Random "
        f"<= 0 s; ratio to EarliestFinish <= {WITHIN:.2f}); *settled* = the 95% interval agrees.",
        "",
        *sentences,
        "",
    ]
    return lines
