"""The command-line loop of a user: add a scheduler to an experiment's results with
``eatbench run -m``, rebuild the report where the results are, tab completion, help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eatbench.cli import main
from eatbench.experiment.compose import REPO_ROOT

TINY = ["workload.rate=0.05", "seed=0", "workload.n_tasks=8", "hydra/launcher=basic"]


def _schedulers(root) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in root.glob("*/*/*/seed=*/summary.json"):
        payload = json.loads(path.read_text())
        out.setdefault(payload["experiment"], set()).add(payload["scheduler"])
    return out


def test_run_m_with_a_scheduler_list_joins_the_experiments_results_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "out" / "results"
    main(["run", "-m", "+experiment=paper_rates", "scheduler=fifo", *TINY, f"output.root={root}"])
    # a list mixing a new scheduler with one that already ran: one result set, the finished run reused
    main(["run", "-m", "+experiment=paper_rates", "scheduler=eat_nodiff,fifo", *TINY, f"output.root={root}"])
    assert _schedulers(root) == {"paper_rates": {"fifo", "eat_nodiff"}}
    main(["report", f"output.root={root}"])
    runs = (tmp_path / "out" / "data" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and {r.split(",")[1] for r in runs[1:]} == {"fifo", "eat_nodiff"}
    assert "eat_nodiff" in (tmp_path / "out" / "REPORT.md").read_text()


def test_report_never_writes_into_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["run", "scheduler=fifo", "workload.n_tasks=8", "output.root=results"])
    main(["report", "output.root=results"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert (tmp_path / "results" / "report" / "REPORT.md").is_file()
    assert (tmp_path / "results" / "report" / "data" / "runs.csv").is_file()


def test_default_output_location_is_the_same_for_run_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["run", "scheduler=fifo", "workload.n_tasks=8"])
    main(["report"])
    assert _schedulers(tmp_path / "reports" / "results") == {"default": {"fifo"}}
    assert (tmp_path / "reports" / "REPORT.md").is_file() and not (tmp_path / "results").exists()


def test_bash_completion_registers_eatbench_and_completes_overrides(capsys, monkeypatch):
    assert main(["run", "-sc", "install=bash"]) == 0
    script = capsys.readouterr().out
    assert script.rstrip().endswith("complete -o nospace -o default -F _eatbench_completion eatbench")
    assert "eatbench-run" not in script and {"run", "report", "train"} <= set(
        script.split('compgen -W "')[1].split('"')[0].split()
    )
    monkeypatch.setenv("COMP_LINE", "eatbench run cluster=")
    main(["run", "-sc", "query=bash"])
    assert set(capsys.readouterr().out.split()) >= {"cluster=paper4", "cluster=hetero8"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_script_completes_in_bash(capsys, tmp_path):
    main(["run", "-sc", "install=bash"])
    script = capsys.readouterr().out
    eatbench = Path(sys.executable).parent / "eatbench"
    if not eatbench.is_file():
        pytest.skip("the eatbench console script is not installed next to this Python")
    call = 'COMP_LINE="eatbench run cluster=pap"; COMP_WORDS=(eatbench run cluster=pap); COMP_CWORD=2'
    env = {**os.environ, "PATH": f"{eatbench.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        ["bash", "-c", f'{script}\n{call}; _eatbench_completion; echo "${{COMPREPLY[@]}}"'],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.stdout.split() == ["cluster=paper4", "cluster=paper8"], out.stderr


def test_help_describes_eatbench_not_hydra(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("eatbench: benchmark schedulers") and "powered by Hydra" not in out


def test_report_flag_without_its_value_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--wandb-report-json"])
    assert "--wandb-report-json needs a value" in capsys.readouterr().err


def test_in_process_sweeps_take_a_scheduler_list(tmp_path, capsys):
    from eatbench.experiment.sweep import main as sweep_main

    root = tmp_path / "results"
    common = ["workload.rate=0.05", "workload.n_tasks=8", "seed=0"]
    main(["sweep", "+experiment=paper_rates", "scheduler=fifo,greedy", *common, f"output.root={root}"])
    assert "2 runs (0 reused)" in capsys.readouterr().out
    args = [
        "paper_rates",
        "--root",
        str(root),
        *[x for o in ["scheduler=greedy,round_robin", *common] for x in ("-o", o)],
    ]
    assert sweep_main(args) == 0
    assert "2 runs (1 reused)" in capsys.readouterr().out
    (name,) = _schedulers(root)  # one result set, whatever schedulers or seeds were chosen
    assert name.startswith("paper_rates@") and _schedulers(root)[name] == {"fifo", "greedy", "round_robin"}


def test_run_command_writes_each_jobs_block_at_once(tmp_path, monkeypatch):
    """Parallel launcher workers share the terminal: one write per job keeps blocks whole."""
    writes: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", Out())
    main(["run", "scheduler=fifo", "workload.n_tasks=8"])
    (block,) = [w for w in writes if "[eatbench]" in w]
    assert "scheduler=fifo" in block and "response_mean" in block and block.endswith("\n")


def test_sweep_overrides_replace_the_experiments_values_in_process():
    from eatbench.experiment.sweep import plan

    groups, seeds, _ = plan("scalability", ["+experiment/scale=n4,n8", "scheduler=fifo", "seed=range(2)"])
    assert groups == [["+experiment/scale=n4"], ["+experiment/scale=n8"]] and seeds == [0, 1]
    groups, _, _ = plan("paper_rates", ["scheduler=fifo,greedy", "workload.rate=0.05"], schedulers=["round_robin"])
    assert groups == [["scheduler=fifo"], ["scheduler=greedy"], ["scheduler=round_robin"]]
