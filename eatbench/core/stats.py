"""Confidence intervals over seeds: bootstrap (scipy.stats), paired where the task stream is shared.

The unit of replication is a seed (one episode, one task stream). Intervals are 95%
bias-corrected and accelerated (BCa) bootstrap intervals of the mean over seeds, with a
fixed resampling seed so that a report is reproducible. Rules:

* fewer than :data:`MIN_SEEDS` seeds give no interval (``nan`` bounds), never a t-interval;
* identical values give a zero-width interval;
* an interval never leaves the metric's physical range (:func:`metric_bounds`).

Across *training* seeds of a learned scheduler, :func:`iqm_interval` gives rliable's
interquartile mean with a stratified bootstrap interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, trim_mean

#: the fewest seeds an interval is computed from.
MIN_SEEDS = 3
#: bootstrap resamples (fixed, with a fixed generator seed: reports are reproducible).
N_RESAMPLES = 2000
CONFIDENCE = 0.95
_RNG_SEED = 20250714


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with its 95% interval ``[low, high]`` over ``n`` values."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes zero (for differences)."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


def metric_bounds(metric: str) -> tuple[float, float]:
    """The physical range of a summary metric: rates and shares in [0, 1], times,
    counts, rewards and quality >= 0."""
    if metric.startswith(("slo_attainment", "steady_slo", "completion_rate", "cold_start_rate", "utilisation")):
        return 0.0, 1.0
    if metric.endswith("_pct") or metric.startswith("reduction"):
        return -math.inf, 100.0
    if metric.startswith("diff_"):
        return -math.inf, math.inf
    return 0.0, math.inf


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _bootstrap(data: tuple[np.ndarray, ...], statistic, paired: bool) -> tuple[float, float]:
    """BCa bootstrap bounds; the percentile method where BCa degenerates (near-constant data)."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa warns on near-degenerate samples
            res = bootstrap(
                data,
                statistic,
                paired=paired,
                vectorized=True,
                confidence_level=CONFIDENCE,
                n_resamples=N_RESAMPLES,
                method=method,
                rng=np.random.default_rng(_RNG_SEED),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            break
    return low, high


def _clip(est: float, low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, float]:
    lo_b, hi_b = bounds
    return est, min(max(low, lo_b), hi_b), max(min(high, hi_b), lo_b)


def mean_interval(values: Sequence[float], metric: str = "") -> Interval:
    """Mean over seeds with its 95% BCa bootstrap interval (``nan`` values dropped), clipped
    to the physical range of ``metric``."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return NAN_INTERVAL
    est = float(x.mean())
    if n < MIN_SEEDS:
        return Interval(est, math.nan, math.nan, n)
    if np.ptp(x) == 0:
        return Interval(est, est, est, n)
    low, high = _bootstrap((x,), lambda a, axis: a.mean(axis=axis), paired=False)
    return Interval(*_clip(est, low, high, metric_bounds(metric)), n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Mean of ``a - b`` over paired seeds (same task stream), with its 95% interval.
    Pairs where either value is not finite are dropped."""
    return mean_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), "diff_")


def paired_reduction(target: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Reduction (%) of the mean of ``target`` against the mean of ``baseline``,
    ``100 * (1 - mean(target) / mean(baseline))``, with a paired bootstrap interval
    (seeds resampled jointly). Positive means ``target`` is lower (better for times)."""
    xt, xb = np.asarray(target, dtype=float), np.asarray(baseline, dtype=float)
    keep = np.isfinite(xt) & np.isfinite(xb)
    xt, xb = xt[keep], xb[keep]
    n = len(xt)
    if n == 0 or xb.mean() <= 0:
        return Interval(math.nan, math.nan, math.nan, n)

    def stat(t, b, axis):
        return 100.0 * (1.0 - t.mean(axis=axis) / b.mean(axis=axis))

    est = float(stat(xt, xb, 0))
    if n < MIN_SEEDS:
        return Interval(est, math.nan, math.nan, n)
    if np.ptp(xt - xb) == 0 and np.ptp(xb) == 0:
        return Interval(est, est, est, n)
    low, high = _bootstrap((xt, xb), stat, paired=True)
    return Interval(est, min(low, 100.0), min(high, 100.0), n)


def iqm_interval(scores: Sequence[float]) -> Interval:
    """rliable's interquartile mean over training seeds with a 95% bootstrap interval over
    those seeds (one task, so rliable's stratified bootstrap is a plain one; computed with
    scipy because rliable's bootstrap module needs ``arch``, which fails under pandas 3)."""
    from rliable import metrics as rmetrics

    x = _finite(scores)
    n = len(x)
    if n == 0:
        return NAN_INTERVAL
    est = float(rmetrics.aggregate_iqm(x.reshape(-1, 1)))
    if n < MIN_SEEDS:
        return Interval(est, math.nan, math.nan, n)
    if np.ptp(x) == 0:
        return Interval(est, est, est, n)
    low, high = _bootstrap((x,), lambda a, axis: trim_mean(a, 0.25, axis=axis), paired=False)
    return Interval(est, low, high, n)


def probability_of_improvement(x: Sequence[float], y: Sequence[float], lower_is_better: bool = True) -> float:
    """rliable's probability of improvement P(X better than Y) over training seeds."""
    from rliable import metrics as rmetrics

    a, b = _finite(x), _finite(y)
    if not len(a) or not len(b):
        return math.nan
    if lower_is_better:
        a, b = -a, -b
    return float(rmetrics.probability_of_improvement(a.reshape(-1, 1), b.reshape(-1, 1)))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval
    (``1.96 * sd / sqrt(n)``; nan for fewer than two values). For per-image scores (many
    values, e.g. CLIP scores of a quality curve); seeds use :func:`mean_interval`."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)
