"""Run an experiment's grid (points x schedulers x seeds) in-process, with resume and progress.

An experiment is a ``conf/experiment/<name>.yaml`` file whose ``hydra.sweeper.params`` define
the grid (the same file drives ``eatbench run -m +experiment=<name>`` under any Hydra launcher).
Each job is one ``run_experiment`` call that writes its own result files
(``records.csv``, then ``summary.json`` atomically); a finished job is skipped on a rerun, so
an interrupted sweep resumes where it stopped without losing anything.

Learned schedulers (``eatbench.schedulers.is_learned``: ``eat``, ``dsac``, ``sac``, ablations)
listed by an experiment are included when they are registered, have a
``conf/scheduler/<name>.yaml`` and their checkpoint exists; otherwise they are skipped and
the reason is kept in :attr:`SweepResult.skipped`.

Also a command line: ``python -m eatbench.experiment.sweep paper_rates --seeds 5 --root reports/results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor  # at import: pickling needs one copy of its classes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eatbench.core.config import ConfigError, ExperimentConfig, resolve_path, server_kinds, validate
from eatbench.experiment.compose import (
    compose_experiment,
    compose_raw,
    conf_dir,
    split_sweep_overrides,
    sweep_params,
)
from eatbench.experiment.runner import RunResult, load_summary, make_scheduler, run_dir, run_experiment
from eatbench.schedulers import SCHEDULERS, is_learned
from eatbench.schedulers.base import torch_on_one_thread

#: every figure experiment, in report order (``--all`` runs these).
FIGURE_EXPERIMENTS = ("paper_rates", "scalability", "hetero_bursty", "ablations", "heldout")
#: reference experiments beside the figures: the authors' own policies (needs their files,
#: ``$EATBENCH_EAT_RELEASE``) and the clairvoyant oracle (minutes per episode).
REFERENCE_EXPERIMENTS = ("authors", "oracle_gap")
#: how many values of each swept key the quick grid keeps (seeds: the first two).
QUICK_KEEP = 3
QUICK_SEEDS = 5


@dataclass
class SweepResult:
    """The runs of one sweep and what was left out (``scheduler -> reason``)."""

    experiment: str
    results: list[RunResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # jobs whose result files already existed (resume)
    root: Path | None = None


def scheduler_available(name: str) -> str | None:
    """``None`` if scheduler ``name`` can run, else the reason it cannot."""
    if not (conf_dir() / "scheduler" / f"{name}.yaml").is_file():
        return f"no conf/scheduler/{name}.yaml"
    if name not in SCHEDULERS:
        return f"scheduler {name!r} is not registered (allowed: {', '.join(SCHEDULERS.names())})"
    return None


def check_checkpoint(cfg: ExperimentConfig) -> None:
    """Raise ``ConfigError`` when ``cfg`` names a checkpoint file that does not exist."""
    ckpt = cfg.scheduler.checkpoint
    if ckpt and ckpt != "auto" and not Path(resolve_path(ckpt)).exists():
        raise ConfigError(
            f"scheduler.checkpoint={ckpt!r}: no such file for scheduler {cfg.scheduler.name!r}; "
            f"train it with `eatbench train scheduler={cfg.scheduler.name}` (or `nox -s reproduce`), "
            "or set scheduler.checkpoint to an existing file"
        )


def quick_grid(params: dict[str, list[str]]) -> dict[str, list[str]]:
    """A reduced grid: the first ``QUICK_SEEDS`` seeds and at most ``QUICK_KEEP`` values (first, middle,
    last) of every other swept key except the scheduler."""
    out = {}
    for key, values in params.items():
        if key == "seed":
            out[key] = values[:QUICK_SEEDS]
        elif key == "scheduler" or len(values) <= QUICK_KEEP:
            out[key] = values
        else:
            out[key] = [values[0], values[len(values) // 2], values[-1]]
    return out


def variant_name(experiment: str, overrides: Sequence[str], swept: Sequence[str] = ()) -> str:
    """The result-folder name of an experiment run with extra ``overrides``
    (``paper_rates`` or ``paper_rates@1a2b3c``), so variants never mix in one report.

    Overrides of the keys the experiment sweeps (``swept``: scheduler, seed, the swept
    setting) only select part of its grid, and of ``output.*`` only say where files go:
    neither makes a variant, so such runs join the experiment's own results.
    """
    selecting = {k.lstrip("+~") for k in swept} | {"seed", "scheduler"}
    changing = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+~") not in selecting and not o.startswith(("output.", "hydra."))
    ]
    if not changing:
        return experiment
    digest = hashlib.sha1("\n".join(sorted(changing)).encode()).hexdigest()[:6]
    return f"{experiment}@{digest}"


class GridComposer:
    """Composes an experiment's configs once per distinct choice of config-group options
    (``scheduler=greedy``, ``+experiment/scale=n8``) and derives every other point by
    setting plain values (``workload.rate=0.03``) on the composed dataclass, which costs
    microseconds instead of a Hydra composition per point."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self._cache: dict[tuple[str, ...], ExperimentConfig] = {}
        self._groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}

    def _is_group(self, override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~")
        return key.split("/", 1)[0] in self._groups and "." not in key

    def config(self, overrides: Sequence[str]) -> ExperimentConfig:
        groups = tuple(o for o in overrides if self._is_group(o))
        values = [o for o in overrides if not self._is_group(o)]
        if groups not in self._cache:
            self._cache[groups] = compose_experiment(list(groups), self.experiment)
        cfg = self._cache[groups]
        if not values:
            return cfg
        try:
            return validate(set_values(cfg, values))
        except _NeedsCompose:
            return compose_experiment([*groups, *values], self.experiment)


class _NeedsCompose(Exception):
    """An override that only Hydra can apply (an interpolation, a new key, a list edit)."""


def set_values(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """``cfg`` with plain ``a.b.c=value`` overrides applied (values parsed as Hydra does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for text in overrides:
        ov = parser.parse_override(text)
        if ov.is_sweep_override() or ov.is_add() or ov.is_delete() or ov.is_force_add():
            raise _NeedsCompose(text)
        value = ov.value()
        if isinstance(value, str) and "${" in value:
            raise _NeedsCompose(text)
        cfg = _set_path(cfg, ov.key_or_group.split("."), value)
    return cfg


def _set_path(obj, path: list[str], value):
    head, rest = path[0], path[1:]
    if dataclasses.is_dataclass(obj):
        if head not in {f.name for f in dataclasses.fields(obj)}:
            raise _NeedsCompose(".".join(path))
        current = getattr(obj, head)
        new = _set_path(current, rest, value) if rest else _coerce(current, value)
        return dataclasses.replace(obj, **{head: new})
    if isinstance(obj, dict):
        new = dict(obj)
        new[head] = _set_path(obj[head], rest, value) if rest else value
        return new
    raise _NeedsCompose(".".join(path))


def _coerce(current, value):
    """Hydra parses ``1`` as int; a float field keeps a float (as OmegaConf's merge would)."""
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list | tuple) or isinstance(current, list | tuple | dict) or dataclasses.is_dataclass(current):
        raise _NeedsCompose(repr(value))
    if current is None or value is None or type(current) is not type(value):
        raise _NeedsCompose(repr(value))
    return value


def plan(
    experiment: str,
    overrides: Sequence[str] = (),
    *,
    seeds: int | None = None,
    quick: bool = False,
    schedulers: Sequence[str] = (),
) -> tuple[list[list[str]], list[int], dict[str, str]]:
    """Expand an experiment into job groups.

    :param schedulers: schedulers added to the experiment's own (each must be available).
    :returns: (override lists, one per point x scheduler; the seeds; skipped schedulers).
        A plain override fixes its key (it wins over the experiment's swept values); a sweep
        override (``scheduler=fifo,mine``) replaces the key's values in the grid.
    """
    plain, sweeps = split_sweep_overrides(overrides)
    raw = compose_raw(plain, experiment)
    params = sweep_params(raw)
    fixed_keys = {o.split("=", 1)[0].lstrip("+~") for o in plain}
    swept_keys = {k.lstrip("+~") for k in sweeps}
    params = {k: v for k, v in params.items() if k.lstrip("+~") not in fixed_keys | swept_keys}
    params.update(sweeps)
    for name in schedulers:
        reason = scheduler_available(name)
        if reason is not None:
            raise ConfigError(f"scheduler={name} is invalid: {reason}")
        if "scheduler" in params and name not in params["scheduler"]:
            params["scheduler"] = [*params["scheduler"], name]
        elif "scheduler" not in params:
            params["scheduler"] = [str(raw.scheduler.name), name]
    if quick:
        params = quick_grid(params)
    seed_values = [int(s) for s in params.pop("seed", [str(raw.seed)])]
    if seeds is not None:
        seed_values = list(range(seeds)) if seeds > 0 else seed_values
        if quick:
            seed_values = seed_values[:QUICK_SEEDS]
    skipped: dict[str, str] = {}
    if "scheduler" in params:
        keep = []
        for name in params["scheduler"]:
            reason = scheduler_available(name)
            if reason is None:
                keep.append(name)
            elif is_learned(name):
                skipped[name] = reason
            else:
                raise ConfigError(f"experiment {experiment!r} lists scheduler {name!r}: {reason}")
        params["scheduler"] = keep
    keys = list(params)
    groups = [[f"{k}={v}" for k, v in zip(keys, combo, strict=True)] for combo in itertools.product(*params.values())]
    return groups, seed_values, skipped


def run_sweep(
    experiment: str,
    overrides: Sequence[str] = (),
    *,
    root: str | Path = "reports/results",
    seeds: int | None = None,
    quick: bool = False,
    progress: bool | Callable[[int, str], Any] = True,
    on_result: Callable[[RunResult], None] | None = None,
    jobs: int = 1,
    schedulers: Sequence[str] = (),
) -> SweepResult:
    """Run every job of ``experiment`` (with ``overrides``) and write result files under ``root``.

    Configs are composed once per scheduler (and other config-group choice) and derived for
    each point; a finished job is recognised by its ``summary.json`` alone (a file check),
    and its records are not read back. Results kept in memory carry summaries, not records.

    :param experiment: a ``conf/experiment`` name.
    :param overrides: extra Hydra overrides applied to every job (``backend=gpu``, ...).
    :param root: results root; a job's files go to ``root/<experiment>/<scheduler>/<point>/seed=<s>/``.
    :param seeds: use seeds ``0..seeds-1`` instead of the experiment's.
    :param quick: the reduced grid of :func:`quick_grid`.
    :param progress: show a tqdm bar over jobs (on stderr), or ``(total, description) -> bar``
        for another display (``update``, ``set_postfix_str``, ``close``, like tqdm's).
    :param on_result: called with each finished job's result (records included for jobs run
        now; only with ``jobs=1``).
    :param jobs: worker processes; each point (all its seeds) is one unit of work. Results
        are the same files whatever the number of workers.
    :param schedulers: schedulers added to the experiment's own, in the same result set
        (``--eat-scheduler``); a learned one among them must load its checkpoint.
    """
    groups, seed_values, skipped = plan(experiment, overrides, seeds=seeds, quick=quick, schedulers=schedulers)
    name = variant_name(experiment, overrides, swept_keys(experiment))
    out = SweepResult(name, skipped=skipped, root=Path(root))
    plain, sweeps = split_sweep_overrides(overrides)  # the sweeps are in the groups
    # schedulers the user named: a learned one that cannot load its checkpoint is an error, not a skip
    explicit = set(schedulers) | set(sweeps.get("scheduler", ()))
    explicit |= {o.split("=", 1)[1] for o in plain if o.split("=", 1)[0].lstrip("+~") == "scheduler"}
    spec = _SweepSpec(experiment, name, tuple(plain), tuple(seed_values), str(root), frozenset(explicit))
    bar = _progress(len(groups) * len(seed_values), f"sweep {name}", progress)
    try:
        if jobs <= 1 or len(groups) <= 1:
            outcomes = (_run_point(spec, group, on_result) for group in groups)
            for outcome in outcomes:
                _merge(out, outcome, bar)
        else:
            # fork: workers inherit every registered scheduler, including one defined in a
            # conftest or notebook; each worker sets one torch thread before any work
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
                futures = [pool.submit(_run_point, spec, group, None) for group in groups]
                for fut in futures:  # in grid order: the same SweepResult as a serial run
                    _merge(out, fut.result(), bar)
    finally:
        bar.close()
        _write_skipped(Path(root) / name, out.skipped)
    return out


@dataclass(frozen=True)
class _SweepSpec:
    experiment: str
    name: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    root: str
    explicit: frozenset[str] = frozenset()


@dataclass
class _PointOutcome:
    results: list[RunResult] = field(default_factory=list)
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    jobs: int = 0


_COMPOSERS: dict[str, GridComposer] = {}  # per process: compose once per experiment
_LOADABLE: dict[tuple, str | None] = {}


def _worker_init() -> None:
    torch_on_one_thread()


def _run_point(spec: _SweepSpec, group: list[str], on_result: Callable[[RunResult], None] | None) -> _PointOutcome:
    """Every seed of one point (one scheduler at one setting)."""
    outcome = _PointOutcome(jobs=len(spec.seeds))
    composer = _COMPOSERS.get(spec.experiment)
    if composer is None:
        composer = _COMPOSERS[spec.experiment] = GridComposer(spec.experiment)
    cfg = composer.config([*group, *spec.overrides])
    cfg = dataclasses.replace(cfg, experiment=spec.name, output=dataclasses.replace(cfg.output, root=spec.root))
    check_checkpoint(cfg)
    scheduler = None
    if is_learned(cfg.scheduler.name):
        reason = _learned_loads(cfg, _LOADABLE)
        if reason is not None:
            if cfg.scheduler.name in spec.explicit:
                raise ConfigError(reason)
            outcome.skipped[cfg.scheduler.name] = reason
            return outcome
        scheduler = make_scheduler(cfg)  # load the checkpoint once per point, not per seed
    folder = run_dir(dataclasses.replace(cfg, seed=spec.seeds[0])).parent  # hashed once per point
    for seed in spec.seeds:
        job = dataclasses.replace(cfg, seed=seed)
        job_dir = folder / f"seed={seed}"
        if (job_dir / "summary.json").is_file():
            outcome.reused += 1
            result = RunResult(job, [], *load_summary(job_dir), job_dir)
        else:
            result = run_experiment(job, scheduler=scheduler, write=True, resume=False, out_dir=job_dir)
            if on_result is not None:
                on_result(result)
            result = dataclasses.replace(result, records=[])
        outcome.results.append(result)
    return outcome


def _merge(out: SweepResult, outcome: _PointOutcome, bar) -> None:
    out.results += outcome.results
    out.reused += outcome.reused
    for k, v in outcome.skipped.items():
        out.skipped.setdefault(k, v)
    if outcome.results:
        r = outcome.results[-1].config
        bar.set_postfix_str(f"{r.scheduler.name} {r.workload.rate:g}/s seed={r.seed}", refresh=False)
    bar.update(outcome.jobs)


def swept_keys(experiment: str) -> list[str]:
    """The keys ``experiment`` sweeps (its ``hydra.sweeper.params``)."""
    return list(sweep_params(compose_raw((), experiment)))


def _write_skipped(folder: Path, skipped: dict[str, str]) -> None:
    """Keep why schedulers were left out beside the results, for the report."""
    import json
    import os

    if not skipped and not (folder / "skipped.json").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "skipped.json.tmp"
    tmp.write_text(json.dumps(dict(sorted(skipped.items())), indent=1))
    os.replace(tmp, folder / "skipped.json")


def _learned_loads(cfg: ExperimentConfig, cache: dict[tuple, str | None]) -> str | None:
    """``None`` if the learned scheduler of ``cfg`` loads its checkpoint and fits the
    cluster, else why not (cached per scheduler, checkpoint and cluster)."""
    from eatbench.experiment.runner import make_scheduler

    key = (
        cfg.scheduler.name,
        cfg.scheduler.checkpoint,
        cfg.cluster.name,
        len(server_kinds(cfg.cluster)),
    )
    if key not in cache:
        try:
            make_scheduler(cfg)
            cache[key] = None
        except ConfigError as err:
            cache[key] = f"{cfg.cluster.name} (N={key[-1]}): {err}"
    return cache[key]


def _progress(total: int, desc: str, enabled: bool | Callable[[int, str], Any]):
    if callable(enabled):
        return enabled(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=not enabled, leave=False, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eatbench.experiment.sweep [EXPERIMENT ...|--all] [--seeds N] [--quick] [--root DIR]
    [-- overrides]``."""
    parser = argparse.ArgumentParser(prog="python -m eatbench.experiment.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="conf/experiment names")
    parser.add_argument("--all", action="store_true", help=f"run {', '.join(FIGURE_EXPERIMENTS)}")
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (default: the file's)")
    parser.add_argument("--quick", action="store_true", help="reduced grid (5 seeds, 3 values per key)")
    parser.add_argument("--root", default="reports/results", help="results root (default: %(default)s)")
    parser.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE", help="Hydra override")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    names = list(FIGURE_EXPERIMENTS) if args.all else args.experiments
    if not names:
        parser.error("name an experiment or pass --all")
    try:
        for name in names:
            res = run_sweep(
                name,
                args.override,
                root=args.root,
                seeds=args.seeds,
                quick=args.quick,
                jobs=args.jobs,
                progress=not args.no_progress,
            )
            note = "".join(f"; skipped {s}: {why}" for s, why in res.skipped.items())
            print(f"[eatbench] {res.experiment}: {len(res.results)} runs ({res.reused} reused) -> {args.root}{note}")
    except ConfigError as err:
        print(f"eatbench sweep: config error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
