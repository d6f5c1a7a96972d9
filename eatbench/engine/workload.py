"""Workloads: arrival processes and the attributes of each task.

Arrival times come from one of the processes named in ``WorkloadConfig.arrival``; each
task then draws a prompt, a resolution (pixels), a patch count k and a seed from its own
random stream, so changing the arrival process leaves the other draws unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from eatbench.core.config import ConfigError, ExperimentConfig, WorkloadConfig, csv_number, read_csv_rows, resolve_path
from eatbench.core.tasks import Task

PROMPTS_FILE = Path(__file__).resolve().parents[1] / "data" / "prompts.txt"


def load_prompts(source: str = "builtin") -> list[str]:
    """The built-in prompt list (300 varied prompts), or one prompt per line of a file."""
    path = PROMPTS_FILE if source == "builtin" else Path(resolve_path(source))
    if not path.is_file():
        raise ConfigError(
            f"workload.prompts={source!r} is invalid; allowed: builtin, or a text file (one prompt a line)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"workload.prompts={source!r} is invalid (unreadable: {type(err).__name__}); allowed: builtin, or a "
            "UTF-8 text file (one prompt a line)"
        ) from err
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"workload.prompts={source!r} is invalid (it holds no prompts); allowed: one prompt a line")
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


TRACE_COLUMNS = ("arrival", "prompt", "resolution", "k", "slo", "model")


def read_trace(path: str, max_k: int | None = None) -> list[dict]:
    """The rows of a trace CSV, parsed and checked: ``arrival`` (s, finite, >= 0, sorted),
    optional ``prompt``, ``resolution`` (px, > 0, divisible by 8), ``k`` (a power of two,
    at most ``max_k`` servers), ``slo`` (s, > 0) and ``model``; an empty cell takes the
    workload's draw. Raises ``ConfigError`` naming the file, line and column."""
    p = Path(resolve_path(path))
    if not p.is_file():
        raise ConfigError(
            f"workload.trace_path={path!r} is invalid; allowed: an existing CSV file with an 'arrival' column"
        )
    what = f"trace CSV {path}"
    header, table = read_csv_rows(p, "trace CSV")
    if "arrival" not in header:
        raise ConfigError(f"{what} has columns {', '.join(header)}; needs an 'arrival' column")
    unknown = [h for h in header if h not in TRACE_COLUMNS]
    if unknown:
        raise ConfigError(f"{what}: columns {unknown} are invalid; allowed: {', '.join(TRACE_COLUMNS)}")
    if not table:
        raise ConfigError(f"{what} has no rows; needs one row per task")
    rows: list[dict] = []
    last = 0.0
    for line, r in table:
        row: dict = {
            "arrival": csv_number(
                r["arrival"], file=what, line=line, column="arrival", low=0, allowed="seconds, finite, >= 0, sorted"
            )
        }
        if row["arrival"] < last:
            raise ConfigError(
                f"{what} line {line}: column arrival={r['arrival']!r} is invalid; allowed: arrivals sorted in "
                f"non-decreasing order (the previous row arrives at {last:g} s)"
            )
        last = row["arrival"]
        if r.get("prompt"):
            row["prompt"] = r["prompt"]
        if r.get("model"):
            row["model"] = r["model"]
        if r.get("resolution"):
            res = csv_number(
                r["resolution"],
                file=what,
                line=line,
                column="resolution",
                integer=True,
                low=8,
                allowed="pixels, an integer > 0 divisible by 8 (empty: the workload's draw)",
            )
            if res % 8:
                raise ConfigError(
                    f"{what} line {line}: column resolution={r['resolution']!r} is invalid; allowed: pixels, "
                    "an integer > 0 divisible by 8 (empty: the workload's draw)"
                )
            row["resolution"] = int(res)
        if r.get("k"):
            k_allowed = "a power of two (1, 2, 4, ...)" + (f" <= the cluster's {max_k} servers" if max_k else "")
            k = int(csv_number(r["k"], file=what, line=line, column="k", integer=True, low=1, allowed=k_allowed))
            if k & (k - 1) or (max_k is not None and k > max_k):
                raise ConfigError(f"{what} line {line}: column k={r['k']!r} is invalid; allowed: {k_allowed}")
            row["k"] = k
        if r.get("slo"):
            row["slo"] = csv_number(
                r["slo"],
                file=what,
                line=line,
                column="slo",
                low=0,
                low_open=True,
                allowed="seconds > 0 (empty: workload.slo_factor x the isolated latency)",
            )
        rows.append(row)
    return rows


def generate_tasks(
    cfg: WorkloadConfig,
    seed: int,
    slo_of: Callable[[int, int], float],
    max_k: int | None = None,
) -> list[Task]:
    """All tasks of one episode, in arrival order.

    :param cfg: the workload config.
    :param seed: the experiment seed; different seeds give different workloads.
    :param slo_of: ``(k, resolution) -> isolated latency`` in seconds; a task's SLO is
        ``cfg.slo_factor`` times it.
    :param max_k: the cluster's server count: a trace row asking for more is refused.
    """
    arrivals_ss, attrs_ss = np.random.SeedSequence([seed, 0xEA7]).spawn(2)
    arrival_rng, attr_rng = np.random.default_rng(arrivals_ss), np.random.default_rng(attrs_ss)
    prompts = load_prompts(cfg.prompts)
    limit_n = cfg.n_tasks if cfg.n_tasks is not None else math.inf
    limit_t = cfg.horizon if cfg.horizon is not None else math.inf

    rows: list[dict]
    if cfg.arrival == "trace":
        rows = [r for r in read_trace(cfg.trace_path or "", max_k) if r["arrival"] < limit_t]
        rows = rows[: cfg.n_tasks]  # n_tasks=None keeps every row
        if not rows:
            raise ConfigError(
                f"workload.horizon={cfg.horizon!r} is invalid; allowed: a horizon after the first arrival of "
                f"{cfg.trace_path} (no task of the trace arrives before it), or null"
            )
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
        res = row["resolution"] if row.get("resolution") else int(res_draw[i])
        k = row["k"] if row.get("k") else (int(k_draw[i]) if cfg.k_choices is not None else None)
        if row.get("slo"):
            slo = row["slo"]
        else:
            key = (k or 1, res)
            if key not in slo_cache:
                slo_cache[key] = cfg.slo_factor * slo_of(*key)
            slo = slo_cache[key]
        tasks.append(Task(i, float(row["arrival"]), prompt, res, k, slo, int(seeds[i]), row.get("model") or cfg.model))
    return tasks


def k_options(cfg: ExperimentConfig, n_servers: int) -> list[int]:
    """The k values tasks may use: the workload's, or every power of two up to min(8, N)."""
    if cfg.workload.k_choices is not None:
        return list(cfg.workload.k_choices)
    return [k for k in (1, 2, 4, 8) if k <= n_servers]
