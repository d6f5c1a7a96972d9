"""A learned scheduler's records do not depend on torch's thread count: near-tied scores
are summed in another order on more threads, which changed decisions on a 2-core machine
(`eat_set` on hetero8 before its policy ran on one thread). Sweeps in worker processes, a
single `eatbench run` and another machine's core count must all give the same records."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.experiment.runner import run_experiment  # noqa: E402


def _records(threads: int) -> list[tuple]:
    torch.set_num_threads(threads)
    cfg = compose_experiment(
        ["scheduler=eat_set", "cluster=hetero8", "workload=bursty", "workload.rate=0.3", "seed=0", "output.write=false"]
    )
    return [(r.task_id, r.start, r.servers, r.steps) for r in run_experiment(cfg, write=False).records]


def test_learned_scheduler_records_do_not_depend_on_the_torch_thread_count():
    before = torch.get_num_threads()
    try:
        many = _records(2)
        assert torch.get_num_threads() == 1  # the scheduler runs its policy on one thread
        assert _records(1) == many
    finally:
        torch.set_num_threads(before)
