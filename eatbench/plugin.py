"""The eatbench pytest plugin (entry point ``pytest11``): options, markers, fixtures, hooks.

Only hooks and fixtures live here; the session logic is in :mod:`eatbench.report.session`,
sweeps in :mod:`eatbench.experiment.sweep`, reports in :mod:`eatbench.report`. Nothing heavy (torch,
pandas, matplotlib, wandb) is imported when pytest loads this module.

Options (one ``eatbench`` group): ``--backend`` (alias ``--eat-backend``), ``--eat-experiment``,
``--eat-override``, ``--eat-scheduler``, ``--eat-seeds``, ``--eat-report``, ``--eat-wandb``,
``--eat-quick``. Sweeps show their progress through pytest's terminal reporter.
Markers: ``eatbench(experiment=..., overrides=[...], <config field>=...)``, ``gpu``, ``slow``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ("sim", "gpu")
DEFAULT_EXPERIMENT = "paper_rates"
DEFAULT_SEEDS = 30
DEFAULT_REPORT_DIR = "reports"
QUICK_REPORT_DIR = "results/quick"
MARKERS = (
    "eatbench(experiment=None, overrides=(), **fields): config for the eat_* fixtures; fields are "
    "ExperimentConfig fields (seed=3, workload={'rate': 0.05})",
    "gpu: needs the real-GPU backend (--backend=gpu) and a CUDA device",
    "slow: long-running (deselect with -m 'not slow')",
)
SESSION_KEY = pytest.StashKey["EatbenchSession"]()  # type: ignore[name-defined]  # noqa: F821


# -- option parsers (argparse ``type`` functions: bad values fail at parse time) ------------
def parse_backend(value: str) -> str:
    if value not in BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown backend {value!r}; allowed: {', '.join(BACKENDS)}")
    return value


def parse_wandb(value: str) -> str:
    from eatbench.core.config import WANDB_MODES

    if value not in WANDB_MODES:
        raise argparse.ArgumentTypeError(f"unknown W&B mode {value!r}; allowed: {', '.join(WANDB_MODES)}")
    return value


def parse_seeds(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be an integer >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"seeds must be an integer >= 1, got {n}")
    return n


def parse_experiment(value: str) -> str:
    """A ``conf/experiment/<value>.yaml`` name."""
    from eatbench.core.config import ConfigError
    from eatbench.experiment.compose import group_options

    try:
        names = group_options("experiment")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value not in names:
        raise argparse.ArgumentTypeError(f"unknown experiment {value!r}; allowed: {', '.join(names)}")
    return value


def parse_scheduler(value: str) -> str:
    """A scheduler with a ``conf/scheduler/<value>.yaml`` (its class must be registered by the
    time the sweep runs, e.g. imported from a ``conftest.py``)."""
    from eatbench.core.config import ConfigError
    from eatbench.experiment.compose import group_options

    try:
        names = group_options("scheduler")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value not in names:
        raise argparse.ArgumentTypeError(
            f"--eat-scheduler={value} is invalid: no conf/scheduler/{value}.yaml; allowed: {', '.join(names)}"
        )
    return value


def parse_override(value: str) -> str:
    """One Hydra override (``KEY=VALUE``, ``+KEY=VALUE``, ``group=option``), syntax-checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if "=" not in value:
        raise argparse.ArgumentTypeError(f"malformed override {value!r}: expected KEY=VALUE (Hydra syntax)")
    try:
        OverridesParser.create().parse_override(value)
    except HydraException as err:
        first = str(err).strip().splitlines()[0]
        raise argparse.ArgumentTypeError(f"malformed override {value!r}: {first}") from None
    return value


def add_eatbench_options(addoption: Callable[..., Any], prefix: str = "eat-") -> None:
    """Add the eatbench options through ``addoption`` (a pytest group's or argparse's)."""
    addoption(
        "--backend",
        f"--{prefix}backend",
        dest="eat_backend",
        default="sim",
        type=parse_backend,
        metavar="NAME",
        help="execution backend for every benchmark: sim (virtual clock) or gpu (real diffusers "
        "pipelines; fails if unavailable, never falls back). Default: %(default)r",
    )
    addoption(
        f"--{prefix}experiment",
        dest="eat_experiment",
        default=None,
        type=parse_experiment,
        metavar="NAME",
        help=f"conf/experiment file of the main job and of eat_* fixtures. Default: {DEFAULT_EXPERIMENT!r}",
    )
    addoption(
        f"--{prefix}override",
        dest="eat_overrides",
        default=[],
        action="append",
        type=parse_override,
        metavar="KEY=VALUE",
        help="Hydra override applied to every config (repeatable), e.g. workload.n_tasks=64. Default: none",
    )
    addoption(
        f"--{prefix}scheduler",
        dest="eat_schedulers",
        default=[],
        action="append",
        type=parse_scheduler,
        metavar="NAME",
        help="add scheduler NAME (conf/scheduler/NAME.yaml, a registered class) to every sweep, next to "
        "its own schedulers in the same results, figures and T1 table; finished runs are reused "
        "(repeatable). Default: none",
    )
    addoption(
        f"--{prefix}seeds",
        dest="eat_seeds",
        default=DEFAULT_SEEDS,
        type=parse_seeds,
        metavar="N",
        help="paired evaluation seeds 0..N-1 per point (--eat-quick keeps the first 5). Default: %(default)r",
    )
    addoption(
        f"--{prefix}report",
        dest="eat_report",
        default=None,
        metavar="DIR",
        help="report directory: result files in DIR/results, DIR/REPORT.md, DIR/figures. Default: "
        f"{DEFAULT_REPORT_DIR!r} (the committed report; written only from a clean tree), "
        f"{QUICK_REPORT_DIR!r} with --eat-quick",
    )
    addoption(
        f"--{prefix}wandb",
        dest="eat_wandb",
        default="offline",
        type=parse_wandb,
        metavar="MODE",
        help="W&B logging of the sweeps: offline, online or disabled. Default: %(default)r",
    )
    addoption(
        f"--{prefix}allow-dirty",
        dest="eat_allow_dirty",
        action="store_true",
        default=False,
        help="write the committed report (reports/) from a tree with uncommitted changes; the report's first "
        "line then says so. Default: %(default)r",
    )
    addoption(
        f"--{prefix}quick",
        dest="eat_quick",
        action="store_true",
        default=False,
        help="reduced grid (5 seeds, at most 3 values per swept key) for a run of a minute, written to "
        f"{QUICK_REPORT_DIR!r} (never over the committed report). Default: %(default)r",
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eatbench", "eatbench benchmark suite (EAT reproduction)")
    add_eatbench_options(group.addoption)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from eatbench.report.session import EatbenchSession, SessionOptions

    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    opts = SessionOptions(
        backend=config.getoption("eat_backend"),
        experiment=config.getoption("eat_experiment") or DEFAULT_EXPERIMENT,
        overrides=tuple(config.getoption("eat_overrides") or ()),
        seeds=config.getoption("eat_seeds"),
        report_dir=Path(
            config.getoption("eat_report")
            or (QUICK_REPORT_DIR if config.getoption("eat_quick") else DEFAULT_REPORT_DIR)
        ),
        wandb=config.getoption("eat_wandb"),
        quick=config.getoption("eat_quick"),
        allow_dirty=config.getoption("eat_allow_dirty"),
        schedulers=tuple(dict.fromkeys(config.getoption("eat_schedulers") or ())),
    )
    if opts.backend == "gpu":
        _check_gpu_backend()
    if opts.wandb == "offline":
        os.environ.setdefault("WANDB_MODE", "offline")
    config.stash[SESSION_KEY] = EatbenchSession(opts)
    _install_progress(config, config.stash[SESSION_KEY])


def _check_gpu_backend() -> None:
    """Stop with a clear message when the real-GPU backend cannot be used."""
    from eatbench.experiment.compose import conf_dir

    try:
        from eatbench.backends import BACKENDS as registry
    except ImportError as err:
        raise pytest.UsageError(f"--backend=gpu: cannot import eatbench.backends ({err})") from err
    problems = []
    if "gpu" not in registry:
        problems.append(f"no backend 'gpu' is registered (registered: {', '.join(registry.names())})")
    if not (conf_dir() / "backend" / "gpu.yaml").is_file():
        problems.append(f"no {conf_dir() / 'backend' / 'gpu.yaml'}")
    if problems:
        raise pytest.UsageError(
            "--backend=gpu: the real-GPU backend is not available: " + "; ".join(problems) + ". "
            "Nothing was run (there is no silent fallback to the sim backend)."
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    o = _session(config).options
    return [
        f"eatbench: backend={o.backend} experiment={o.experiment} seeds={_seeds_text(o)} quick={o.quick} "
        f"report={o.report_dir} wandb={o.wandb}"
        + (f" overrides={list(o.overrides)}" if o.overrides else "")
        + (f" schedulers=+{','.join(o.schedulers)}" if o.schedulers else "")
    ]


def _seeds_text(options) -> str:
    """The seeds the sweeps run (quick mode keeps the first ``QUICK_SEEDS`` of ``--eat-seeds``)."""
    from eatbench.experiment.sweep import QUICK_SEEDS

    seeds = list(range(options.seeds))
    if options.quick:
        seeds = seeds[:QUICK_SEEDS]
    return ",".join(map(str, seeds)) if len(seeds) <= 3 else f"{seeds[0]}..{seeds[-1]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = _session(config).options.backend
    if backend == "gpu":
        return
    skip = pytest.mark.skip(reason=f"needs --backend=gpu (running on {backend!r})")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or not (state.sweeps or state.runs):
        return
    terminalreporter.ensure_newline()
    terminalreporter.section("eatbench results", sep="=")
    for line in state.summary_lines():
        terminalreporter.write_line(line)


def _session(config: pytest.Config):
    return config.stash[SESSION_KEY]


# -- sweep progress on pytest's terminal ----------------------------------------------------
class TerminalProgress:
    """A sweep's progress through pytest's terminal reporter (pytest captures tqdm's stderr):
    runs done / total, the experiment, the current job (scheduler, arrival rate, seed), runs
    per second, elapsed and remaining time. On a terminal the line is rewritten in place (at
    most every ``interval_tty`` seconds); otherwise (CI logs) a line every ``interval_log`` s.

    :param reporter: pytest's ``TerminalReporter``.
    :param total: jobs of the sweep.
    :param desc: ``sweep <experiment>``.
    :param uncaptured: context manager factory suspending pytest's output capture (the sweep
        runs inside a test, whose output is captured).
    """

    def __init__(
        self,
        reporter: Any,
        total: int,
        desc: str,
        uncaptured: Callable[[], Any] = contextlib.nullcontext,
        interval_tty: float = 0.2,
        interval_log: float = 10.0,
    ) -> None:
        self.reporter, self.total, self.done, self.uncaptured = reporter, total, 0, uncaptured
        self.experiment = desc.removeprefix("sweep ")
        self.current = ""
        self.t0 = self.last = time.perf_counter()
        self.tty = bool(getattr(reporter, "isatty", False))
        self.interval = interval_tty if self.tty else interval_log
        self.started = False

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.current = text

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._show(self.line(now))

    def line(self, now: float | None = None) -> str:
        """``eatbench paper_rates 12/270 runs [fifo 0.05/s seed=1] 3.1 runs/s elapsed 0:04 remaining 1:23``."""
        elapsed = (now or time.perf_counter()) - self.t0
        speed = self.done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / speed if speed > 0 else float("nan")
        current = f" [{self.current}]" if self.current else ""
        return (
            f"eatbench {self.experiment} {self.done}/{self.total} runs{current} {speed:.1f} runs/s "
            f"elapsed {_clock(elapsed)} remaining {_clock(remaining)}"
        )

    def _show(self, line: str) -> None:
        with self.uncaptured():
            if not self.started:
                self.reporter.ensure_newline()
                self.started = True
            if self.tty:
                self.reporter.rewrite(line)
            else:
                self.reporter.write_line(line)

    def close(self) -> None:
        if self.started and self.tty:
            with self.uncaptured():
                self.reporter.rewrite("")  # the per-experiment summary line replaces it
                self.reporter.write("\r")


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``?`` when unknown."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _install_progress(config: pytest.Config, session: Any) -> None:
    """Progress bars (verbosity >= 0) and a one-line summary per experiment (unless ``-qq``)
    through pytest's terminal reporter."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capman = config.pluginmanager.get_plugin("capturemanager")
    uncaptured = capman.global_and_fixture_disabled if capman is not None else contextlib.nullcontext
    verbosity = config.get_verbosity()
    # the test file whose line the sweep interrupts (pytest wrote its name before the test ran)
    interrupted: dict[str, Any] = {}

    def progress(total: int, desc: str) -> TerminalProgress:
        interrupted.setdefault("fspath", reporter.currentfspath)
        return TerminalProgress(reporter, total, desc, uncaptured)

    if verbosity >= 0:
        session.progress = progress
    if verbosity >= -1:

        def summary(name: str, record: Any) -> None:
            res = record.result
            skipped = f"; skipped {', '.join(res.skipped)}" if res.skipped else ""
            fspath = interrupted.pop("fspath", reporter.currentfspath)
            with uncaptured():
                reporter.ensure_newline()
                reporter.write_line(
                    f"eatbench {name}: {len(res.results)} runs ({res.reused} reused) in {record.wall_s:.1f} s{skipped}"
                )
                if fspath is not None and verbosity <= 0:  # its outcome letters go on a line of their own
                    reporter.write(f"{os.path.relpath(fspath, reporter.startpath)} ")
                    reporter.currentfspath = fspath

        session.on_sweep = summary


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def eat_session(request: pytest.FixtureRequest):
    """The session's :class:`~eatbench.report.session.EatbenchSession`."""
    return _session(request.config)


def _marker_overrides(request: pytest.FixtureRequest) -> tuple[str | None, list[str]]:
    """Experiment and overrides from ``@pytest.mark.eatbench(...)``; kwargs are checked
    against the ``ExperimentConfig`` fields."""
    from eatbench.core.config import ExperimentConfig

    marker = request.node.get_closest_marker("eatbench")
    if marker is None:
        return None, []
    kwargs = dict(marker.kwargs)
    experiment = kwargs.pop("experiment", None)
    overrides = list(kwargs.pop("overrides", ()))
    fields = ExperimentConfig.__dataclass_fields__
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.eatbench: unknown argument(s) {', '.join(unknown)}; allowed: overrides, " + ", ".join(fields)
        )
    overrides += [o for key, value in kwargs.items() for o in _flatten(key, value)]
    return experiment, overrides


def _flatten(key: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [o for k, v in value.items() for o in _flatten(f"{key}.{k}", v)]
    if isinstance(value, list | tuple):
        return [f"{key}=[{','.join(str(v) for v in value)}]"]
    return [f"{key}={'null' if value is None else value}"]


@pytest.fixture
def eat_config(request: pytest.FixtureRequest, eat_session):
    """The validated ``ExperimentConfig`` of this test: ``--eat-experiment`` (or the marker's
    experiment), the session overrides, then the ``eatbench`` marker's. Results are not
    written unless the test asks (``run_experiment(write=True)``)."""
    from eatbench.experiment.compose import compose_experiment

    experiment, overrides = _marker_overrides(request)
    cfg = compose_experiment(eat_session.overrides(overrides), experiment or eat_session.options.experiment)
    yield cfg


@pytest.fixture
def eat_engine(eat_config):
    """A ready engine (cluster, task stream, backend) for ``eat_config``."""
    from eatbench.experiment.runner import build_engine

    yield build_engine(eat_config)


@pytest.fixture
def eat_cluster(eat_engine):
    """The ``Cluster`` of ``eat_config``."""
    return eat_engine.cluster


@pytest.fixture
def eat_workload(eat_engine):
    """The task stream (list of tasks, arrival times in seconds) of ``eat_config``."""
    return eat_engine.tasks


@pytest.fixture
def eat_backend(eat_engine):
    """The backend of ``eat_config`` (``sim``, or ``gpu`` with ``--backend=gpu``)."""
    return eat_engine.backend


@pytest.fixture
def eat_scheduler(eat_config):
    """The scheduler of ``eat_config`` (a learned one loads its checkpoint)."""
    from eatbench.experiment.runner import make_scheduler

    return make_scheduler(eat_config)


@pytest.fixture
def run_experiment(request: pytest.FixtureRequest, eat_config, eat_session) -> Iterator[Callable[..., Any]]:
    """Run ``eat_config`` (optionally with extra overrides) and return its ``RunResult``
    (``.records``: one ``TaskRecord`` per task; ``.summary``: metrics, seconds). Each run is
    listed in the terminal summary."""
    from eatbench.experiment.compose import compose_experiment
    from eatbench.experiment.runner import run_experiment as _run

    experiment, marker_overrides = _marker_overrides(request)

    def run(*overrides: str, write: bool = False, **kwargs: Any):
        cfg = eat_config
        if overrides:
            cfg = compose_experiment(
                eat_session.overrides([*marker_overrides, *overrides]), experiment or eat_session.options.experiment
            )
        if write:
            from dataclasses import replace

            cfg = replace(cfg, output=replace(cfg.output, root=str(eat_session.results_root)))
        result = _run(cfg, write=write, **kwargs)
        eat_session.runs.append((request.node.name, result))
        return result

    yield run


@pytest.fixture
def eat_sweep(eat_session) -> Callable[..., Any]:
    """``eat_sweep(experiment=None, *overrides) -> SweepResult``: run (or reuse) an
    experiment's grid with the session's seeds, backend, overrides and ``--eat-quick``."""

    def sweep(experiment: str | None = None, *overrides: str):
        return eat_session.sweep(experiment, tuple(overrides))

    return sweep
