"""Latency profiles (how long a task takes) and quality curves (how good its image is).

A profile is a table of rows ``(gpu_kind, model, resolution, k, step_s, fixed_s,
cold_start_s)``; the execution time of a task with ``steps`` denoising steps on a gang of
``k`` servers of one GPU kind is::

    fixed_s + step_s * steps + cold_start_s * [cold]

A gang of mixed GPU kinds runs at the pace of its slowest member. A GPU kind without rows
borrows the rows of the kind it is declared ``relative_to``, with ``step_s`` and
``fixed_s`` divided by its ``speed`` (the cold start, mostly set-up and weight transfer,
is kept). Resolutions between two profiled ones are interpolated linearly in pixel count;
a table with a single resolution for a (kind, model, k) applies to every resolution.

Memory: a row may also carry ``memory_gib``, the peak GPU memory (GiB) each server of
such a launch needs (the optional ``memory_gib`` CSV column; empty or absent: unknown).
Where it is known, a server fits a launch only if its GPU kind's ``memory_gib`` (the
cluster config's ``cluster.gpu_kinds.<kind>.memory_gib``) is at least that much
(:meth:`LatencyProfile.fits`); a kind without rows borrows its ``relative_to`` kind's
figure unchanged, and resolutions in between are interpolated like the times. A profile
without memory figures (the built-in ones) constrains nothing.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eatbench.core.config import ConfigError, csv_number, read_csv_rows
from eatbench.core.registry import Registry

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
PROFILE_COLUMNS = ("gpu_kind", "model", "resolution", "k", "step_s", "fixed_s", "cold_start_s")
#: optional column: peak GPU memory per server of the launch (GiB); empty: unknown
MEMORY_COLUMN = "memory_gib"


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One measured or published point: seconds per step, per task and per cold start, and
    optionally the peak GPU memory per server in GiB (``None``: unknown)."""

    gpu_kind: str
    model: str
    resolution: int
    k: int
    step_s: float
    fixed_s: float
    cold_start_s: float
    memory_gib: float | None = None


class LatencyProfile:
    """Execution-time model built from ``ProfileRow``s (see the module docstring).

    :param rows: the table.
    :param name: profile name written into results.
    :param gpu_kinds: ``name -> GpuKind``-like objects (``speed``, ``relative_to``) used
        to scale kinds that have no rows of their own.
    """

    def __init__(self, rows: Iterable[ProfileRow], name: str = "profile", gpu_kinds: dict | None = None):
        self.name = name
        self.rows = list(rows)
        if not self.rows:
            raise ConfigError(f"profile {name!r} has no rows")
        self.gpu_kinds = dict(gpu_kinds or {})
        self._table: dict[tuple[str, str, int], list[ProfileRow]] = {}
        for r in sorted(self.rows, key=lambda r: r.resolution):
            self._table.setdefault((r.gpu_kind, r.model, r.k), []).append(r)
        self._coef_cache: dict[tuple[str, str, int, int], tuple[float, float, float]] = {}
        #: whether any row has a memory figure (if not, :meth:`fits` is always true)
        self.has_memory = any(r.memory_gib is not None for r in self.rows)
        self._memory_cache: dict[tuple[str, str, int, int], float | None] = {}

    def with_gpu_kinds(self, gpu_kinds: dict) -> LatencyProfile:
        """A copy that knows the cluster's GPU kinds (for relative scaling)."""
        return LatencyProfile(self.rows, self.name, gpu_kinds)

    # -- lookup ---------------------------------------------------------------------
    def coefficients(self, gpu_kind: str, model: str, resolution: int, k: int) -> tuple[float, float, float]:
        """``(step_s, fixed_s, cold_start_s)`` for one GPU kind, in seconds."""
        key = (gpu_kind, model, resolution, k)
        hit = self._coef_cache.get(key)
        if hit is None:
            hit = self._coef_cache[key] = self._lookup(gpu_kind, model, resolution, k, ())
        return hit

    def _lookup(self, kind: str, model: str, res: int, k: int, chain: tuple[str, ...]) -> tuple[float, float, float]:
        rows = self._table.get((kind, model, k))
        if rows is None:
            known_kinds = sorted({r.gpu_kind for r in self.rows})
            if not any(r.gpu_kind == kind for r in self.rows):
                spec = self.gpu_kinds.get(kind)
                parent = getattr(spec, "relative_to", None)
                if parent and parent not in chain:
                    step, fixed, cold = self._lookup(parent, model, res, k, (*chain, kind))
                    return step / spec.speed, fixed / spec.speed, cold
                raise ConfigError(
                    f"profile {self.name!r} has no GPU kind {kind!r} (and it is not declared "
                    f"relative_to one that has); profiled kinds: {', '.join(known_kinds)}"
                )
            models = sorted({r.model for r in self.rows if r.gpu_kind == kind})
            if model not in models:
                raise ConfigError(
                    f"profile {self.name!r} has no model {model!r} on {kind}; allowed: {', '.join(models)}"
                )
            ks = sorted({r.k for r in self.rows if r.gpu_kind == kind and r.model == model})
            raise ConfigError(f"profile {self.name!r} has no k={k} for {model} on {kind}; allowed k: {ks}")
        if len(rows) == 1:
            r = rows[0]
            return r.step_s, r.fixed_s, r.cold_start_s
        resolutions = [r.resolution for r in rows]
        if not resolutions[0] <= res <= resolutions[-1]:
            raise ConfigError(
                f"resolution={res} is invalid for profile {self.name!r}, which covers resolutions "
                f"{resolutions[0]}..{resolutions[-1]} px for {model} k={k} on {kind}; allowed: "
                f"{resolutions[0]}..{resolutions[-1]}"
            )
        i = bisect.bisect_left(resolutions, res)
        if resolutions[i] == res:
            r = rows[i]
            return r.step_s, r.fixed_s, r.cold_start_s
        lo, hi = rows[i - 1], rows[i]
        t = (res * res - lo.resolution**2) / (hi.resolution**2 - lo.resolution**2)
        mix = lambda a, b: a + (b - a) * t  # noqa: E731
        return mix(lo.step_s, hi.step_s), mix(lo.fixed_s, hi.fixed_s), mix(lo.cold_start_s, hi.cold_start_s)

    # -- memory ---------------------------------------------------------------------
    def memory(self, gpu_kind: str, model: str, resolution: int, k: int) -> float | None:
        """Peak GPU memory (GiB) each server of kind ``gpu_kind`` needs for a launch of
        ``model`` at ``resolution`` px on a gang of ``k``; ``None`` where the profile does
        not say (no ``memory_gib`` figure, or one of the two interpolated rows lacks it).
        Raises ``ConfigError`` where :meth:`coefficients` would."""
        if not self.has_memory:
            return None
        key = (gpu_kind, model, resolution, k)
        if key in self._memory_cache:
            return self._memory_cache[key]
        self.coefficients(gpu_kind, model, resolution, k)  # the same errors for unknown kinds, models, k
        kind, chain = gpu_kind, set()
        while (kind, model, k) not in self._table and kind not in chain:  # a kind without rows borrows
            chain.add(kind)
            kind = getattr(self.gpu_kinds.get(kind), "relative_to", None) or kind
        rows = self._table[(kind, model, k)]
        resolutions = [r.resolution for r in rows]
        i = bisect.bisect_left(resolutions, resolution)
        if len(rows) == 1:
            need = rows[0].memory_gib
        elif resolutions[i] == resolution:
            need = rows[i].memory_gib
        else:
            lo, hi = rows[i - 1], rows[i]
            if lo.memory_gib is None or hi.memory_gib is None:
                need = None
            else:
                t = (resolution * resolution - lo.resolution**2) / (hi.resolution**2 - lo.resolution**2)
                need = lo.memory_gib + (hi.memory_gib - lo.memory_gib) * t
        self._memory_cache[key] = need
        return need

    def budget(self, gpu_kind: str) -> float:
        """The memory (GiB) of one GPU of ``gpu_kind`` (``inf`` for a kind the profile was
        not told about: see :meth:`with_gpu_kinds`)."""
        spec = self.gpu_kinds.get(gpu_kind)
        budget = getattr(spec, "memory_gib", None)
        return math.inf if budget is None else float(budget)

    def fits(self, gpu_kind: str, model: str, resolution: int, k: int) -> bool:
        """Whether a server of ``gpu_kind`` has the memory for its share of a launch of
        ``model`` at ``resolution`` px on ``k`` servers (true where the need is unknown)."""
        if not self.has_memory:
            return True
        need = self.memory(gpu_kind, model, resolution, k)
        return need is None or need <= self.budget(gpu_kind)

    def misfit(self, gpu_kinds: Sequence[str], model: str, resolution: int) -> tuple[int, float, float] | None:
        """The first member of a gang (its GPU kinds; k = ``len(gpu_kinds)``) that lacks
        the memory for the launch, as ``(position, need GiB, budget GiB)``; ``None`` if
        every member fits."""
        if not self.has_memory:
            return None
        k = len(gpu_kinds)
        for i, kind in enumerate(gpu_kinds):
            if not self.fits(kind, model, resolution, k):
                return i, float(self.memory(kind, model, resolution, k)), self.budget(kind)  # type: ignore[arg-type]
        return None

    def check_tasks_fit(self, kind_of: Sequence[str], tasks: Iterable) -> None:
        """Raise ``ConfigError`` if a task fits no gang of the cluster (server ``i`` has GPU
        kind ``kind_of[i]``): for a task with a fixed ``k``, fewer than ``k`` servers have
        the memory; for one without, no profiled k does. Does nothing without memory data."""
        if not self.has_memory:
            return
        n = len(kind_of)
        kinds = sorted(set(kind_of))
        seen: set[tuple[str, int, int | None]] = set()
        for task in tasks:
            key = (task.model, task.resolution, task.k)
            if key in seen:
                continue
            seen.add(key)
            if task.k is not None:
                ks = [task.k]
            else:
                ks = sorted({r.k for r in self.rows if r.model == task.model and r.k <= n}) or [1]
            if any(sum(self.fits(kind, task.model, task.resolution, k) for kind in kind_of) >= k for k in ks):
                continue
            k = ks[0]
            needs = [self.memory(kind, task.model, task.resolution, k) for kind in kinds]
            need = min(x for x in needs if x is not None)
            largest = max(self.budget(kind) for kind in kinds)
            per_k = "" if task.k is not None else f" (the smallest k the profile has; k={ks} all lack servers)"
            raise ConfigError(
                f"workload.resolutions={task.resolution} is invalid for model {task.model!r}: it needs {need:g} GiB "
                f"per server at k={k}{per_k} (profile {self.name!r}) and the cluster has fewer than {k} servers "
                f"with that much; the largest GPU has {largest:g} GiB; allowed: resolutions and k whose launches "
                "fit the memory of enough servers (cluster.gpu_kinds.<kind>.memory_gib)"
            )

    def duration(self, gpu_kinds: Sequence[str], model: str, resolution: int, steps: int, cold: bool) -> float:
        """Execution time in seconds of a task on a gang whose members have ``gpu_kinds``
        (k = ``len(gpu_kinds)``); the slowest member sets the pace."""
        k = len(gpu_kinds)
        first = gpu_kinds[0]
        best = -1.0
        for kind in gpu_kinds if any(g != first for g in gpu_kinds) else (first,):
            step, fixed, cold_s = self.coefficients(kind, model, resolution, k)
            t = fixed + step * steps + (cold_s if cold else 0.0)
            if t > best:
                best = t
        return best

    def durations(
        self, gpu_kinds: Sequence[str], model: str, resolution: int, steps: Iterable[int], cold: bool
    ) -> list[float]:
        """:meth:`duration` for several step counts (coefficients looked up once; the same
        arithmetic, so the same floats)."""
        first = gpu_kinds[0]
        kinds = gpu_kinds if any(g != first for g in gpu_kinds) else (first,)
        coeffs = [self.coefficients(kind, model, resolution, len(gpu_kinds)) for kind in kinds]
        out = []
        for n in steps:
            best = -1.0
            for step, fixed, cold_s in coeffs:
                t = fixed + step * n + (cold_s if cold else 0.0)
                if t > best:
                    best = t
            out.append(best)
        return out

    def check(self, gpu_kinds: Iterable[str], model: str, resolutions: Iterable[int], ks: Iterable[int]) -> None:
        """Raise ``ConfigError`` now if any lookup the experiment needs would fail."""
        for kind in set(gpu_kinds):
            for res in resolutions:
                for k in ks:
                    self.coefficients(kind, model, res, k)

    # -- files ----------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None) -> LatencyProfile:
        """Load a profile CSV with columns ``PROFILE_COLUMNS`` (and optionally ``memory_gib``)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"profile.path={str(path)!r} is invalid (it does not exist); allowed: a CSV file with columns "
                f"{', '.join(PROFILE_COLUMNS)}"
            )
        header, table = read_csv_rows(path, "profile CSV")
        missing = set(PROFILE_COLUMNS) - set(header)
        if missing:
            raise ConfigError(f"profile CSV {path} lacks columns {sorted(missing)}; needs {', '.join(PROFILE_COLUMNS)}")
        if not table:
            raise ConfigError(f"profile CSV {path} has no rows; needs one row per (gpu_kind, model, resolution, k)")
        rows, seen = [], {}
        for line, r in table:

            def num(col: str, line: int = line, r: dict = r, **kw) -> float:
                return csv_number(r[col], file=f"profile CSV {path}", line=line, column=col, **kw)

            for col in ("gpu_kind", "model"):
                if not r[col]:
                    raise ConfigError(f"profile CSV {path} line {line}: column {col}='' is invalid; allowed: a name")
            row = ProfileRow(
                r["gpu_kind"],
                r["model"],
                int(num("resolution", integer=True, low=0, low_open=True, allowed="pixels, an integer > 0")),
                int(num("k", integer=True, low=1, allowed="servers per task, an integer >= 1")),
                num("step_s", low=0, low_open=True, allowed="seconds per denoising step > 0"),
                num("fixed_s", low=0, allowed="seconds >= 0"),
                num("cold_start_s", low=0, allowed="seconds >= 0"),
                (
                    num(MEMORY_COLUMN, low=0, low_open=True, allowed="GiB per server > 0, or empty (unknown)")
                    if r.get(MEMORY_COLUMN)
                    else None
                ),
            )
            key = (row.gpu_kind, row.model, row.resolution, row.k)
            if key in seen:
                raise ConfigError(
                    f"profile CSV {path} line {line}: row {key} is invalid; allowed: one row per "
                    f"(gpu_kind, model, resolution, k) (it repeats line {seen[key]})"
                )
            seen[key] = line
            rows.append(row)
        return cls(rows, name or path.stem)

    def to_csv(self, path: str | Path, comment: str = "") -> None:
        """Write the table (``comment`` lines first, as ``# ...``), atomically."""
        rows = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(r).items()} for r in self.rows]
        columns = PROFILE_COLUMNS + ((MEMORY_COLUMN,) if self.has_memory else ())
        write_profile_csv(path, rows, columns, notes=comment.splitlines())


def write_profile_csv(
    path: str | Path,
    rows: Sequence[dict],
    columns: Sequence[str] = PROFILE_COLUMNS,
    notes: Sequence[str] = (),
) -> None:
    """Write a profile CSV atomically: ``notes`` as ``# ...`` lines, the header ``columns``
    (``PROFILE_COLUMNS`` first; extra columns such as ``batch`` after them), then ``rows``
    (keys beyond ``columns`` are left out). The one writer of the format ``from_csv`` reads
    (``LatencyProfile.to_csv`` and ``eatbench profile``). A crash leaves the old file or
    the new one, never a partial one."""
    import io
    import os

    if tuple(columns[: len(PROFILE_COLUMNS)]) != PROFILE_COLUMNS:
        raise ValueError(f"profile CSV columns={list(columns)} are invalid; allowed: {', '.join(PROFILE_COLUMNS)}, ...")
    path = Path(path)
    f = io.StringIO()
    for line in notes:
        f.write(f"# {line}\n")
    w = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(f.getvalue())
    os.replace(tmp, path)


# -- built-in profiles ------------------------------------------------------------------

#: The paper's testbed (SD v1.4, 1440x1440, DistriFusion, torchrun per group):
#: D(S, k) = c_k * S + R_k * [cold].
PAPER_STEP_S = {1: 0.315, 2: 0.15625, 4: 0.14, 8: 0.10}
PAPER_COLD_S = {1: 24.0, 2: 24.0, 4: 32.0, 8: 30.0}


def paper_profile() -> LatencyProfile:
    rows = [ProfileRow("paper_gpu", "sd14", 1440, k, PAPER_STEP_S[k], 0.0, PAPER_COLD_S[k]) for k in PAPER_STEP_S]
    return LatencyProfile(rows, "paper")


def build_h100_sd15_rows(probe_jsonl: str | Path) -> list[ProfileRow]:
    """Derive ``h100`` rows for ``sd15`` from the H100 probe (random weights, fp16, eager).

    - step_s: the UNet step with classifier-free guidance (batch 2); k=1 from the full
      latent, k>1 from one row patch of 1/k of the latent (what each gang member computes;
      inter-GPU exchange was not measured and is not included).
    - fixed_s: text encoder + VAE decode at that resolution (768 px interpolated in pixels).
    - cold_start_s: median time to load the weights from local disk to the GPU with the
      page cache dropped (process-group start-up was not measured and is not included).
    """
    recs = [json.loads(line) for line in Path(probe_jsonl).read_text().splitlines() if line.strip()]
    step = {}
    for r in recs:
        if r["what"] == "sd15_unet_step" and r["batch"] == 2:
            step[(r["res"], 1)] = r["median_ms"] / 1000
        elif r["what"] == "sd15_unet_patch_step" and r["batch"] == 2 and r["patches"] > 1:
            step[(r["res"], r["patches"])] = r["median_ms"] / 1000
    text = next(r["median_ms"] for r in recs if r["what"] == "sd15_text_encoder") / 1000
    vae = {r["res"]: r["median_ms"] / 1000 for r in recs if r["what"] == "sd15_vae_decode"}
    lo, hi = min(vae), max(vae)
    loads = sorted(r["seconds"] for r in recs if r["what"] == "cold_start_load")
    cold = loads[len(loads) // 2] if len(loads) % 2 else (loads[len(loads) // 2 - 1] + loads[len(loads) // 2]) / 2

    def vae_at(res: int) -> float:
        if res in vae:
            return vae[res]
        return vae[lo] + (vae[hi] - vae[lo]) * (res * res - lo * lo) / (hi * hi - lo * lo)

    return [
        ProfileRow("h100", "sd15", res, k, round(s, 6), round(text + vae_at(res), 6), round(cold, 6))
        for (res, k), s in sorted(step.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def h100_sd15_profile() -> LatencyProfile:
    return LatencyProfile.from_csv(DATA_DIR / "profiles" / "h100_sd15.csv", "h100_sd15")


PROFILES: Registry = Registry("profile")
PROFILES.register("paper")(lambda path=None: paper_profile())  # type: ignore[arg-type]
PROFILES.register("h100_sd15")(lambda path=None: h100_sd15_profile())  # type: ignore[arg-type]


def _csv_profile(path: str | None = None) -> LatencyProfile:
    if not path:
        raise ConfigError("profile.path is required with profile.name=csv")
    return LatencyProfile.from_csv(path)


PROFILES.register("csv")(_csv_profile)  # type: ignore[arg-type]


def load_profile(name: str, path: str | None, gpu_kinds: dict | None = None) -> LatencyProfile:
    """Build the profile named in the config, aware of the cluster's GPU kinds."""
    return PROFILES.create(name, path=path).with_gpu_kinds(gpu_kinds or {})


# -- quality ----------------------------------------------------------------------------


class QualityCurve(ABC):
    """Image quality as a function of the number of denoising steps (CLIP-score scale)."""

    name = "quality"

    @abstractmethod
    def __call__(self, steps: int) -> float:
        """Quality of an image made with ``steps`` denoising steps."""

    def table(self, max_steps: int) -> list[float]:
        """``q(0..max_steps)`` precomputed (the engine looks values up by index)."""
        return [self(s) for s in range(max_steps + 1)]


class PaperQuality(QualityCurve):
    """The paper's curve: 0 below 5 steps, 0.16*log6(S)-0.02 up to 30, 0.27 above (it
    drops past 30, as published)."""

    name = "paper"

    def __init__(self, path: str | None = None) -> None:
        pass

    def __call__(self, steps: int) -> float:
        if steps < 5:
            return 0.0
        if steps <= 30:
            return 0.16 * math.log(steps, 6) - 0.02
        return 0.27


class MonotoneQuality(PaperQuality):
    """The paper's curve without its drop: held at q(30) for more than 30 steps."""

    name = "monotone"

    def __call__(self, steps: int) -> float:
        return super().__call__(min(steps, 30))


class TableQuality(QualityCurve):
    """A measured curve from a CSV with columns ``steps, quality`` (e.g. mean CLIP score
    written by ``eatbench quality-curve``), linearly interpolated; held flat outside the
    measured range."""

    name = "table"

    def __init__(self, path: str | None = None) -> None:
        if not path or not Path(path).is_file():
            raise ConfigError(f"quality.path={path!r} is invalid; allowed: a CSV file with columns steps, quality")
        what = f"quality CSV {path}"
        header, table = read_csv_rows(path, "quality CSV")
        if not {"steps", "quality"} <= set(header):
            raise ConfigError(f"{what} has columns {', '.join(header)}; needs columns steps, quality")
        pts: list[tuple[float, float]] = []
        seen: dict[float, int] = {}
        for line, r in table:
            if r["quality"] == "":  # a step count whose quality was not measured (written empty)
                continue
            s = csv_number(
                r["steps"],
                file=what,
                line=line,
                column="steps",
                integer=True,
                low=0,
                allowed="denoising steps, an integer >= 0",
            )
            q = csv_number(
                r["quality"],
                file=what,
                line=line,
                column="quality",
                low=0,
                allowed="a finite quality >= 0 (empty: not measured)",
            )
            if s in seen:
                raise ConfigError(
                    f"{what} line {line}: column steps={r['steps']!r} is invalid; allowed: each step count once "
                    f"(it repeats line {seen[s]})"
                )
            seen[s] = line
            pts.append((float(s), q))
        pts.sort()
        if not pts:
            raise ConfigError(
                f"{what} has no measured quality values; needs rows of steps, quality (an empty quality: not measured)"
            )
        self.steps = [p[0] for p in pts]
        self.values = [p[1] for p in pts]

    def __call__(self, steps: int) -> float:
        xs, ys = self.steps, self.values
        if steps <= xs[0]:
            return ys[0]
        if steps >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_left(xs, steps)
        t = (steps - xs[i - 1]) / (xs[i] - xs[i - 1])
        return ys[i - 1] + (ys[i] - ys[i - 1]) * t


QUALITY_CURVES: Registry[QualityCurve] = Registry("quality curve")
QUALITY_CURVES.register("paper")(PaperQuality)
QUALITY_CURVES.register("monotone")(MonotoneQuality)
QUALITY_CURVES.register("table")(TableQuality)
