"""Workloads: arrival processes and the attributes of each task.

Arrival times come from one of the processes named in ``WorkloadConfig.arrival``; each
task then draws a prompt, a resolution (pixels), a patch count k and a seed from its own
random stream, so changing the arrival process leaves the other draws unchanged.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from eatbench.config import ConfigError, WorkloadConfig, resolve_path
from eatbench.tasks import Task

PROMPTS_FILE = Path(__file__).parent / "data" / "prompts.txt"


def load_prompts(source: str = "builtin") -> list[str]:
    """The built-in prompt list (300 varied prompts), or one prompt per line of a file."""
    path = PROMPTS_FILE if source == "builtin" else Path(resolve_path(source))
    if not path.is_file():
        raise ConfigError(f"workload.prompts={source!r}: no such file; use 'builtin' or a text file path")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"workload.prompts={source!r} holds no prompts")
    return prompts


def arrival_times(cfg: WorkloadConfig, rng: np.random.Generator) -> Iterator[float]:
    """Arrival times in seconds (non-decreasing), after the ``initial_queue`` tasks at 0."""
    rate = cfg.rate
    if cfg.arrival == "bernoulli":
        # The paper's slotted process: each slot of ``slot`` s holds one arrival w.p. rate*slot.
        p = rate * cfg.slot
        if p <= 0:
            return
        slot = 0
        while True:  # draws come in chunks: one numpy call per 1024 arrivals
            for gap in rng.geometric(p, size=1024).tolist():  # slots until the next success
                slot += gap
                yield slot * cfg.slot
    elif cfg.arrival in ("poisson", "gamma"):
        if rate <= 0:
            return
        t = 0.0
        shape = 1.0 / (cfg.cv * cfg.cv) if cfg.arrival == "gamma" else 1.0
        while True:  # draws come in chunks: one numpy call per 1024 arrivals
            if cfg.arrival == "gamma":
                gaps = rng.gamma(shape, 1.0 / (rate * shape), size=1024)
            else:
                gaps = rng.exponential(1 / rate, size=1024)
            for gap in gaps.tolist():
                t += gap
                yield t
    elif cfg.arrival == "cosine":
        # Thinning (Lewis & Shedler) of a Poisson process at the peak rate.
        peak = cfg.rate_high
        if peak <= 0:
            return
        t = 0.0
        while True:
            t += float(rng.exponential(1 / peak))
            lam = (
                cfg.rate_low
                + (cfg.rate_high - cfg.rate_low) * (math.cos(2 * math.pi * cfg.periods * t / cfg.period_length) + 1) / 2
            )
            if rng.random() * peak <= lam:
                yield t
    else:  # pragma: no cover - validated in config
        raise ConfigError(f"workload.arrival={cfg.arrival!r} has no generator")


def _read_trace(path: str) -> list[dict]:
    p = Path(resolve_path(path))
    if not p.is_file():
        raise ConfigError(f"workload.trace_path={path!r} does not exist")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "arrival" not in rows[0]:
        raise ConfigError(f"workload.trace_path={path!r} needs a CSV header with an 'arrival' column")
    times = [float(r["arrival"]) for r in rows]
    if any(t < 0 for t in times) or any(b < a for a, b in zip(times, times[1:], strict=False)):
        raise ConfigError(f"workload.trace_path={path!r}: arrivals must be >= 0 and sorted")
    return rows


def generate_tasks(
    cfg: WorkloadConfig,
    seed: int,
    slo_of: Callable[[int, int], float],
) -> list[Task]:
    """All tasks of one episode, in arrival order.

    :param cfg: the workload config.
    :param seed: the experiment seed; different seeds give different workloads.
    :param slo_of: ``(k, resolution) -> isolated latency`` in seconds; a task's SLO is
        ``cfg.slo_factor`` times it.
    """
    arrivals_ss, attrs_ss = np.random.SeedSequence([seed, 0xEA7]).spawn(2)
    arrival_rng, attr_rng = np.random.default_rng(arrivals_ss), np.random.default_rng(attrs_ss)
    prompts = load_prompts(cfg.prompts)
    limit_n = cfg.n_tasks if cfg.n_tasks is not None else math.inf
    limit_t = cfg.horizon if cfg.horizon is not None else math.inf

    rows: list[dict]
    if cfg.arrival == "trace":
        rows = [r for r in _read_trace(cfg.trace_path or "") if float(r["arrival"]) < limit_t]
        rows = rows[: cfg.n_tasks]  # n_tasks=None keeps every row
    else:
        rows = [{"arrival": 0.0} for _ in range(int(min(cfg.initial_queue, limit_n)))]
        if len(rows) < limit_n:
            for t in arrival_times(cfg, arrival_rng):
                if t >= limit_t or len(rows) >= limit_n:
                    break
                rows.append({"arrival": t})

    n = len(rows)
    resolutions = np.asarray(cfg.resolutions)
    prompt_idx = attr_rng.integers(len(prompts), size=n)
    res_draw = resolutions[attr_rng.integers(len(resolutions), size=n)]
    k_opts = cfg.k_choices or [0]
    k_draw = np.asarray(k_opts)[attr_rng.integers(len(k_opts), size=n)]
    seeds = attr_rng.integers(2**31, size=n)
    slo_cache: dict[tuple[int, int], float] = {}
    tasks = []
    for i, row in enumerate(rows):
        prompt = row.get("prompt") or prompts[prompt_idx[i]]
        res = int(row["resolution"]) if row.get("resolution") else int(res_draw[i])
        k = int(row["k"]) if row.get("k") else (int(k_draw[i]) if cfg.k_choices is not None else None)
        if row.get("slo"):
            slo = float(row["slo"])
        else:
            key = (k or 1, res)
            if key not in slo_cache:
                slo_cache[key] = cfg.slo_factor * slo_of(*key)
            slo = slo_cache[key]
        tasks.append(Task(i, float(row["arrival"]), prompt, res, k, slo, int(seeds[i]), row.get("model") or cfg.model))
    return tasks
