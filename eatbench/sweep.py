"""Run an experiment's grid (points x schedulers x seeds) in-process, with resume and progress.

An experiment is a ``conf/experiment/<name>.yaml`` file whose ``hydra.sweeper.params`` define
the grid (the same file drives ``eatbench run -m +experiment=<name>`` under any Hydra launcher).
Each job is one ``run_experiment`` call that writes its own result files
(``records.csv``, then ``summary.json`` atomically); a finished job is skipped on a rerun, so
an interrupted sweep resumes where it stopped without losing anything.

Learned schedulers (``eat``, ``dsac``, ``sac``, ablations) listed by an experiment are included
when they are registered, have a ``conf/scheduler/<name>.yaml`` and their checkpoint exists;
otherwise they are skipped and the reason is kept in :attr:`SweepResult.skipped`.

Also a command line: ``python -m eatbench.sweep paper_rates --seeds 5 --root reports/results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eatbench.compose import compose_experiment, compose_raw, conf_dir, split_sweep_overrides, sweep_params
from eatbench.config import ConfigError, ExperimentConfig, resolve_path, server_kinds
from eatbench.runner import RunResult, run_dir, run_experiment

#: schedulers that need a trained checkpoint; skipped (not failed) when absent from a grid.
LEARNED = ("eat", "dsac", "sac", "eat_nodiff", "eat_wide")
#: every figure experiment, in report order (``--all`` runs these).
FIGURE_EXPERIMENTS = ("paper_rates", "scalability", "hetero_bursty", "ablations")
#: how many values of each swept key the quick grid keeps (seeds: the first two).
QUICK_KEEP = 3
QUICK_SEEDS = 2


@dataclass
class SweepResult:
    """The runs of one sweep and what was left out (``scheduler -> reason``)."""

    experiment: str
    results: list[RunResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # jobs whose result files already existed (resume)
    root: Path | None = None


def experiment_names() -> list[str]:
    """The experiments in ``conf/experiment/``."""
    return sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def scheduler_available(name: str) -> str | None:
    """``None`` if scheduler ``name`` can run, else the reason it cannot."""
    from eatbench.schedulers import SCHEDULERS

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
    """A reduced grid: the first two seeds and at most ``QUICK_KEEP`` values (first, middle,
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


def variant_name(experiment: str, overrides: Sequence[str]) -> str:
    """The result-folder name of an experiment run with extra ``overrides``
    (``paper_rates`` or ``paper_rates@1a2b3c``), so variants never mix in one report.
    Choosing schedulers (``scheduler=mine`` or ``scheduler=mine,eat``) or seeds is not a
    variant: each has its own folder, so a user's scheduler joins the experiment's results."""
    overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("scheduler", "seed")]
    if not overrides:
        return experiment
    digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:6]
    return f"{experiment}@{digest}"


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
        ``overrides`` win over the experiment's swept values for the same key; a sweep
        override (``scheduler=mine,eat``) replaces them.
    """
    overrides, sweeps = split_sweep_overrides(overrides)
    raw = compose_raw(overrides, experiment)
    params = sweep_params(raw)
    fixed_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
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
            elif name in LEARNED:
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
    schedulers: Sequence[str] = (),
) -> SweepResult:
    """Run every job of ``experiment`` (with ``overrides``) and write result files under ``root``.

    :param experiment: a ``conf/experiment`` name.
    :param overrides: extra Hydra overrides applied to every job (``backend=gpu``, ...).
    :param root: results root; a job's files go to ``root/<experiment>/<scheduler>/<point>/seed=<s>/``.
    :param seeds: use seeds ``0..seeds-1`` instead of the experiment's.
    :param quick: the reduced grid of :func:`quick_grid`.
    :param progress: show a tqdm bar over jobs (on stderr), or ``(total, description) -> bar``
        for another display (``update``, ``set_postfix_str``, ``close``, like tqdm's).
    :param on_result: called with each finished job's result.
    :param schedulers: schedulers added to the experiment's own, in the same result set
        (``--eat-scheduler``); a learned one among them must load its checkpoint.
    """
    groups, seed_values, skipped = plan(experiment, overrides, seeds=seeds, quick=quick, schedulers=schedulers)
    name = variant_name(experiment, overrides)
    out = SweepResult(name, skipped=skipped, root=Path(root))
    overrides, sweeps = split_sweep_overrides(overrides)  # the sweeps are in the groups
    # schedulers the user named: a learned one that cannot load its checkpoint is an error, not a skip
    explicit_names = set(schedulers) | set(sweeps.get("scheduler", ()))
    explicit_names |= {o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "scheduler"}
    loadable: dict[tuple, str | None] = {}
    bar = _progress(len(groups) * len(seed_values), f"sweep {name}", progress)
    try:
        for group in groups:
            cfg = compose_experiment([*group, *overrides], experiment)
            cfg = dataclasses.replace(cfg, experiment=name, output=dataclasses.replace(cfg.output, root=str(root)))
            check_checkpoint(cfg)
            if cfg.scheduler.name in LEARNED:
                reason = _learned_loads(cfg, loadable)
                if reason is not None:
                    if cfg.scheduler.name in explicit_names:
                        raise ConfigError(reason)
                    out.skipped.setdefault(cfg.scheduler.name, reason)
                    bar.update(len(seed_values))
                    continue
            for seed in seed_values:
                job = dataclasses.replace(cfg, seed=seed)
                if (run_dir(job) / "summary.json").is_file():
                    out.reused += 1
                result = run_experiment(job, write=True, resume=True)
                out.results.append(result)
                if on_result is not None:
                    on_result(result)
                bar.set_postfix_str(f"{job.scheduler.name} {job.workload.rate:g}/s seed={seed}", refresh=False)
                bar.update(1)
    finally:
        bar.close()
    return out


def _learned_loads(cfg: ExperimentConfig, cache: dict[tuple, str | None]) -> str | None:
    """``None`` if the learned scheduler of ``cfg`` loads its checkpoint and fits the
    cluster, else why not (cached per scheduler, checkpoint and cluster)."""
    from eatbench.runner import make_scheduler

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
    """``python -m eatbench.sweep [EXPERIMENT ...|--all] [--seeds N] [--quick] [--root DIR] [-- overrides]``."""
    parser = argparse.ArgumentParser(prog="python -m eatbench.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="conf/experiment names")
    parser.add_argument("--all", action="store_true", help=f"run {', '.join(FIGURE_EXPERIMENTS)}")
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (default: the file's)")
    parser.add_argument("--quick", action="store_true", help="reduced grid (2 seeds, 3 values per key)")
    parser.add_argument("--root", default="reports/results", help="results root (default: %(default)s)")
    parser.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE", help="Hydra override")
    args = parser.parse_args(argv)
    names = list(FIGURE_EXPERIMENTS) if args.all else args.experiments
    if not names:
        parser.error("name an experiment or pass --all")
    try:
        for name in names:
            res = run_sweep(name, args.override, root=args.root, seeds=args.seeds, quick=args.quick)
            note = "".join(f"; skipped {s}: {why}" for s, why in res.skipped.items())
            print(f"[eatbench] {res.experiment}: {len(res.results)} runs ({res.reused} reused) -> {args.root}{note}")
    except ConfigError as err:
        print(f"eatbench sweep: config error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
