"""nox sessions of eatbench. All run in the current environment (``venv_backend="none"``)
with ``sys.executable``, so ``nox`` uses the interpreter that has eatbench installed.

    nox -s tests                 unit and integration tests
    nox -s benchmarks            pytest benchmarks (sim backend; args after -- go to pytest)
    nox -s reproduce             train what has no checkpoint (fixed-layout agents on paper4; the
                                 size-agnostic *_set agents: 5 seeds each, resumable), sweep every
                                 figure, write the report
    nox -s reproduce -- --quick  reduced grid (5 seeds, 3 values per key), no training, about a minute;
                                 written to results/quick (never over the committed report)
    nox -s reproduce -- --retrain   retrain the learned schedulers even if checkpoints exist
    nox -s report                rebuild reports/REPORT.md from reports/results
    nox -s lint                  ruff check + ruff format --check + lint-imports (the layers in pyproject.toml)
"""

from __future__ import annotations

import os
import sys

import nox

nox.options.sessions = ["lint", "tests"]
PY = sys.executable
LEARNED = ("eat", "dsac", "sac")
REPORT_DIR = os.environ.get("EATBENCH_REPORT_DIR", "reports")
QUICK_REPORT_DIR = os.environ.get("EATBENCH_QUICK_REPORT_DIR", "results/quick")
# `python -m eatbench.cli` would run cli.py as __main__, apart from the commands registered
# on `eatbench.cli`; call its main() instead.
EATBENCH = (PY, "-c", "import sys; from eatbench.cli import main; sys.exit(main())")
#: ``lint-imports`` run by this interpreter (its console script may not be on PATH)
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
ENV = {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true", "PYTHONHASHSEED": "0"}


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    session.run(PY, "-m", "pytest", "-q", "tests", *session.posargs, env=ENV)


@nox.session(venv_backend="none")
def benchmarks(session: nox.Session) -> None:
    session.run(PY, "-m", "pytest", "benchmarks", f"--eat-report={REPORT_DIR}", *session.posargs, env=ENV)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    files = session.posargs or ["."]
    session.run(PY, "-m", "ruff", "check", *files)
    session.run(PY, "-m", "ruff", "format", "--check", *files)
    # the layer contract in pyproject.toml [tool.importlinter] (`lint-imports`, run by this interpreter)
    session.run(PY, "-c", LINT_IMPORTS)


def _missing_checkpoint(name: str) -> bool:
    """True if the learned scheduler ``name`` has no usable checkpoint for the paper cluster."""
    from eatbench.core.config import ConfigError
    from eatbench.experiment.compose import compose_experiment
    from eatbench.experiment.runner import make_scheduler

    try:
        make_scheduler(compose_experiment([f"scheduler={name}"]))
    except ConfigError:
        return True
    return False


@nox.session(venv_backend="none")
def reproduce(session: nox.Session) -> None:
    """Train (missing or ``--retrain``), sweep all figure experiments, write the report + W&B."""
    quick = "--quick" in session.posargs
    retrain = "--retrain" in session.posargs
    from eatbench.experiment.compose import conf_dir
    from eatbench.schedulers.rl.checkpoint import shipped_path

    for name in LEARNED:
        if not (conf_dir() / "scheduler" / f"{name}.yaml").is_file():
            session.log(f"{name}: no conf/scheduler/{name}.yaml; skipped")
            continue
        if not (retrain or _missing_checkpoint(name)):
            continue
        if quick:  # a quick run never writes a half-trained checkpoint into the package
            session.log(f"{name}: no checkpoint; --quick does not train (the sweep skips {name})")
            continue
        session.run(
            *EATBENCH, "train", f"scheduler={name}", "cluster=paper4",
            f"train.export={shipped_path(name, 'paper4')}", env=ENV,
        )  # fmt: skip
    from eatbench.training.campaign import seed_path
    from eatbench.training.presets import SET_ARCHS

    missing = [a for a in SET_ARCHS if retrain or not all(seed_path(a, s).is_file() for s in range(5))]
    if missing and quick:
        session.log(f"{', '.join(missing)}: no checkpoints; --quick does not train (the sweep skips them)")
    elif missing:  # resumable: a rerun continues every unfinished run and skips finished ones
        if retrain:
            for a in missing:
                for s in range(5):
                    seed_path(a, s).unlink(missing_ok=True)
        session.run(PY, "-m", "eatbench.training.campaign", "--seeds", "5", "--archs", ",".join(missing), env=ENV)
    out = QUICK_REPORT_DIR if quick else REPORT_DIR
    extra = [a for a in session.posargs if a not in ("--quick", "--retrain")]  # e.g. +allow_dirty=true
    sweep = [PY, "-m", "eatbench.experiment.sweep", "--all", "--root", f"{out}/results"]
    session.run(*sweep, *(["--quick"] if quick else ["--seeds", "30"]), env=ENV)
    # T2: every training seed's checkpoint of the size-agnostic agents on the held-out points (resumes)
    session.run(
        PY, "-m", "eatbench.report.seeds", "--root", f"{out}/results", *(["--seeds", "2"] if quick else []), env=ENV
    )
    session.run(*EATBENCH, "report", f"output.root={out}/results", "output.wandb=offline", *extra, env=ENV)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    session.run(*EATBENCH, "report", f"output.root={REPORT_DIR}/results", *session.posargs, env=ENV)
