"""The pytest plugin: options, help text, fixtures, markers, errors (driven through pytester)."""

from __future__ import annotations

import shutil

import pytest

import eatbench.experiment.sweep  # noqa: F401  (its process pool classes must be imported once, outside the in-process runs)
import eatbench.report.markdown  # noqa: F401  (pandas/matplotlib imported once, outside the in-process runs)
import eatbench.report.plots  # noqa: F401
from eatbench.experiment.compose import conf_dir

pytest_plugins = ("pytester",)

HELP_SNIPPET = """\
eatbench benchmark suite (EAT reproduction):
  --backend=NAME, --eat-backend=NAME
                        execution backend for every benchmark: sim (virtual
                        clock) or gpu (real diffusers pipelines; fails if
                        unavailable, never falls back). Default: 'sim'
  --eat-experiment=NAME
                        conf/experiment file of the main job and of eat_*
                        fixtures. Default: 'paper_rates'
  --eat-override=KEY=VALUE
                        Hydra override applied to every config (repeatable),
                        e.g. workload.n_tasks=64. Default: none
  --eat-scheduler=NAME  add scheduler NAME (conf/scheduler/NAME.yaml, a
                        registered class) to every sweep, next to its own
                        schedulers in the same results, figures and T1 table;
                        finished runs are reused (repeatable). Default: none
  --eat-seeds=N         paired evaluation seeds 0..N-1 per point (--eat-quick
                        keeps the first 5). Default: 30
  --eat-report=DIR      report directory: result files in DIR/results,
                        DIR/REPORT.md, DIR/figures. Default: 'reports' (the
                        committed report; written only from a clean tree),
                        'results/quick' with --eat-quick
  --eat-wandb=MODE      W&B logging of the sweeps: offline, online or disabled.
                        Default: 'offline'
  --eat-allow-dirty     write the committed report (reports/) from a tree with
                        uncommitted changes; the report's first line then says
                        so. Default: False
  --eat-quick           reduced grid (5 seeds, at most 3 values per swept key)
                        for a run of a minute, written to 'results/quick' (never
                        over the committed report). Default: False
""".splitlines()


def test_help_lists_the_eatbench_options_with_defaults(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(HELP_SNIPPET)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend=cpu"], "*unknown backend 'cpu'; allowed: sim, gpu*"),
        (["--eat-experiment=nope"], "*unknown experiment 'nope'; allowed: *paper_rates*"),
        (["--eat-override=workload.rate"], "*malformed override 'workload.rate': expected KEY=VALUE*"),
        (["--eat-override=workload.rate=[0.1"], "*malformed override 'workload.rate=[0.1'*"),
        (["--eat-seeds=0"], "*seeds must be an integer >= 1, got 0*"),
        (["--eat-wandb=cloud"], "*unknown W&B mode 'cloud'*"),
        (["--eat-backend=cpu"], "*unknown backend 'cpu'; allowed: sim, gpu*"),
        (["--eat-scheduler=nope"], "*--eat-scheduler=nope is invalid: no conf/scheduler/nope.yaml; allowed: *fifo*"),
    ],
)
def test_bad_option_values_fail_at_parse_time(pytester, args, message):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret != 0
    result.stderr.fnmatch_lines([message])


def test_gpu_backend_unavailable_is_a_clear_error_not_a_fallback(pytester, tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    (conf / "backend" / "gpu.yaml").unlink(missing_ok=True)
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setenv("EATBENCH_CONF", str(conf))
    result = pytester.runpytest_subprocess("--backend=gpu")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--backend=gpu: the real-GPU backend is not available*gpu.yaml*no silent fallback*"])


def test_fixtures_compose_marker_and_session_overrides(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.eatbench(seed=3, workload={"rate": 0.05}, overrides=["scheduler=earliest_finish"])
        def test_cfg(eat_config, eat_cluster, eat_workload, eat_backend, eat_scheduler):
            assert eat_config.seed == 3 and eat_config.workload.rate == 0.05
            assert eat_config.workload.n_tasks == 64  # from --eat-override
            assert eat_config.scheduler.name == "earliest_finish"
            assert len(eat_cluster) == 4 and 32 < len(eat_workload) <= 64
            assert type(eat_scheduler).__name__ == "EarliestFinishScheduler"
            assert eat_backend.describe()["backend"] == "sim"

        @pytest.mark.eatbench(bogus=1)
        def test_bad_marker(eat_config):
            pass
        """
    )
    result = pytester.runpytest("--eat-override=workload.n_tasks=64", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unknown argument(s) bogus; allowed: overrides, experiment, seed*"])


def test_run_experiment_fixture_returns_records_and_summary_and_reports_them(pytester):
    pytester.makepyfile(
        """
        def test_run(run_experiment):
            result = run_experiment()
            assert len(result.records) == 32 and result.summary["tasks_done"] == 32
            other = run_experiment("scheduler=fifo", "workload.rate=0.01")
            assert other.config.scheduler.name == "fifo" and other.summary["tasks"] == len(other.records) < 32
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--eat-wandb=disabled")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*eatbench results*", "*single runs (run_experiment fixture):*", "*test_run*fifo*"])


def test_gpu_marker_is_skipped_on_sim_and_markers_are_registered(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gpu
        @pytest.mark.slow
        def test_on_gpu():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs --backend=gpu (running on 'sim')*"])
    assert "eatbench: backend=sim experiment=paper_rates seeds=0..29 quick=False" in result.stdout.str()
    quick = pytester.runpytest("--eat-quick", "--eat-backend=sim")
    assert "eatbench: backend=sim experiment=paper_rates seeds=0..4 quick=True" in quick.stdout.str()


def test_sweep_fixture_writes_results_report_and_summary_tables(pytester, tmp_path):
    report = tmp_path / "rep"
    # a sweep override fixes the key; "scheduler=a,b" is a Hydra sweep, so pass one value per key
    pytester.makepyfile(
        test_sweep="""
        def test_sweep(eat_sweep):
            res = eat_sweep("paper_rates", "workload.rate=0.05", "scheduler=greedy")
            assert [r.config.seed for r in res.results] == [0, 1]
            assert eat_sweep("paper_rates", "workload.rate=0.05", "scheduler=greedy") is res  # once per session
        """
    )
    result = pytester.runpytest("--eat-seeds=2", f"--eat-report={report}", "--eat-wandb=disabled", "test_sweep.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*eatbench results*",
            "*paper_rates (paper_rates): 2 runs (0 reused)*",
            "*mean response time (s)*",
            "*Greedy*",
            "*SLO attainment*",
            f"report: {report}/REPORT.md",
        ]
    )
    assert (report / "REPORT.md").is_file() and list(
        (report / "results").glob("paper_rates/greedy/*/seed=1/summary.json")
    )


def test_eat_scheduler_joins_the_existing_sweep_results_and_report(pytester, tmp_path, monkeypatch):
    """A user's scheduler (class registered, conf/scheduler/mine.yaml) is added to the
    experiment's sweep: the finished runs are reused and it appears in the same report."""
    from eatbench.schedulers import SCHEDULERS
    from eatbench.schedulers.heuristics import FifoScheduler

    class MineScheduler(FifoScheduler):
        """FIFO under another name: the user's scheduler."""

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    (conf / "scheduler" / "mine.yaml").write_text("name: mine\nparams: {steps: 15}\n")
    monkeypatch.setenv("EATBENCH_CONF", str(conf))
    monkeypatch.setitem(SCHEDULERS._classes, "mine", MineScheduler)
    report = tmp_path / "rep"
    pytester.makepyfile(test_sweep="def test_sweep(eat_sweep):\n    eat_sweep()\n")
    common = [
        "--eat-quick", "--eat-seeds=1", f"--eat-report={report}", "--eat-wandb=disabled", "-p", "no:cacheprovider",
        "--eat-override=scheduler=fifo,greedy", "--eat-override=workload.n_tasks=8",
        "--eat-override=workload.rate=0.05",
    ]  # fmt: skip
    first = pytester.runpytest(*common)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["eatbench paper_rates@*: 2 runs (0 reused) in *s"])
    second = pytester.runpytest(*common, "--eat-scheduler=mine")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*schedulers=+mine*", "eatbench paper_rates@*: 3 runs (2 reused) in *s"])
    (name,) = {p.name for p in (report / "results").iterdir()}
    assert sorted(p.name for p in (report / "results" / name).iterdir()) == ["fifo", "greedy", "mine"]
    text = (report / "REPORT.md").read_text()
    section = text[text.index(f"`{name}`") :]
    assert all(f"| {s}" in section or f"{s}," in section or f"{s}." in section for s in ("mine", "FIFO", "Greedy"))


def test_sweep_progress_goes_through_the_terminal_reporter_and_is_quiet_under_q(pytester, tmp_path):
    pytester.makepyfile(test_sweep="def test_sweep(eat_sweep):\n    eat_sweep()\n")
    args = [
        "--eat-quick", "--eat-seeds=1", f"--eat-report={tmp_path}/rep", "--eat-wandb=disabled",
        "-p", "no:cacheprovider", "--eat-override=scheduler=fifo", "--eat-override=workload.n_tasks=8",
    ]  # fmt: skip
    loud = pytester.runpytest(*args)
    loud.assert_outcomes(passed=1)
    # not a terminal: one line per 10 s and one at the end, through pytest's reporter despite capture
    loud.stdout.fnmatch_lines(
        [
            "eatbench paper_rates@* 3/3 runs [[]fifo 0.11/s seed=0[]] * runs/s elapsed 0:0* remaining 0:00",
            "eatbench paper_rates@*: 3 runs (0 reused) in *s",
        ]
    )
    quiet = pytester.runpytest(*args, "-q")
    quiet.assert_outcomes(passed=1)
    assert "3/3 runs" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(["eatbench paper_rates@*: 3 runs (3 reused) in *s"])


def test_sweeps_of_one_experiment_with_other_schedulers_share_its_results(pytester, tmp_path):
    pytester.makepyfile(
        test_sweep="""
        def test_sweep(eat_sweep):
            fifo = eat_sweep("paper_rates", "scheduler=fifo")
            greedy = eat_sweep("paper_rates", "scheduler=greedy")
            assert {r.config.scheduler.name for r in fifo.results} == {"fifo"}
            assert {r.config.scheduler.name for r in greedy.results} == {"greedy"}
            assert fifo.experiment == greedy.experiment and eat_sweep("paper_rates", "scheduler=fifo") is fifo
        """
    )
    args = ["--eat-quick", "--eat-seeds=1", f"--eat-report={tmp_path}/rep", "--eat-wandb=disabled"]
    result = pytester.runpytest(*args, "--eat-override=workload.n_tasks=8", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*paper_rates@*: 6 runs (0 reused) in * s; seeds 0..0 (1)*"])
