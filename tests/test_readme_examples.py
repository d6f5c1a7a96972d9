"""The README's example schedulers ("## Extending") run as written: on the paper's cluster and
on a cluster where GPU memory rules out some servers (the engine refuses a gang without the
memory, so an example that ignored it would fail here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eatbench.engine.profiles import LatencyProfile
from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import run_experiment
from eatbench.schedulers import SCHEDULERS, Scheduler
from tests.test_memory import SERVERS, _overrides, _violations, _write_profile

README = Path(__file__).resolve().parents[1] / "README.md"


def _example_classes() -> list[type[Scheduler]]:
    section = README.read_text().split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the README's Extending section shows two example schedulers"
    classes = []
    for i, code in enumerate(blocks):
        namespace: dict = {}
        before = set(SCHEDULERS.names())
        try:
            exec(compile(code, f"README.md (Extending, example {i + 1})", "exec"), namespace)
        finally:
            for name in set(SCHEDULERS.names()) - before:  # keep the registry as the other tests see it
                SCHEDULERS._classes.pop(name)
        found = [
            v for v in namespace.values() if isinstance(v, type) and issubclass(v, Scheduler) and v is not Scheduler
        ]
        assert len(found) == 1
        classes.extend(found)
    return classes


@pytest.mark.parametrize("index", [0, 1])
def test_readme_example_scheduler_runs_and_respects_gpu_memory(tmp_path, index):
    cls = _example_classes()[index]
    paper = run_experiment(compose_experiment(["output.write=false", "seed=0"]), scheduler=cls(steps=20))
    assert paper.summary["completion_rate"] == 1.0
    path = _write_profile(tmp_path / "mem.csv")
    cfg = compose_experiment(_overrides(path, "workload.k_choices=[1,2]", "seed=1"))
    result = run_experiment(cfg, scheduler=cls(steps=20))
    assert result.summary["completion_rate"] == 1.0
    assert _violations(result.records, LatencyProfile.from_csv(path).with_gpu_kinds(cfg.cluster.gpu_kinds)) == []
    used = {SERVERS[int(s)] for r in result.records for s in r.servers.split("-")}
    assert used == {"small", "big"}  # the small servers still run what fits them
