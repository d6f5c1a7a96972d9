"""What eatbench costs, each in its own pytest-benchmark group, one torch thread:

- ``sweep``: a whole fixed sweep (paper_rates, 6 heuristics x 6 rates x 5 seeds = 180 runs)
  into a fresh folder each round, so no run is a cache hit; ``extra_info`` has runs/s.
- ``resume``: the same sweep once every result exists (what a rerun costs).
- ``report``: ``REPORT.md`` with its figures from those 180 result files.
- ``training``: environment steps per second of the training environment (random actions),
  and of EAT's SAC training loop (environment + updates) for a fixed step budget.

Simulator throughput is ``bench_simulator.py`` and decision latency
``bench_decision_latency.py``; ``python benchmarks/performance.py`` writes the figures the
README quotes to ``reports/performance.json``.
"""

from __future__ import annotations

import os
import shutil
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

HEURISTICS = "greedy,earliest_finish,round_robin,random,fifo,least_loaded"
SWEEP_OVERRIDES = [f"scheduler={HEURISTICS}"]
SWEEP_SEEDS = 5
SWEEP_RUNS = 6 * 6 * SWEEP_SEEDS


def _per_second(benchmark, count: int) -> float | None:
    """``count`` per median wall-second of the timed rounds (None with --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    return round(count / stats.stats.median, 1) if stats is not None else None


def _sweep(root):
    from eatbench.experiment.sweep import run_sweep

    return run_sweep("paper_rates", SWEEP_OVERRIDES, root=root, seeds=SWEEP_SEEDS, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.benchmark(group="sweep")
def test_sweep_wall_time(benchmark, tmp_path):
    rounds = iter(range(100))

    def setup():
        root = tmp_path / f"r{next(rounds)}"
        return (root,), {}

    result = benchmark.pedantic(_sweep, setup=setup, rounds=3, iterations=1)
    assert len(result.results) == SWEEP_RUNS and result.reused == 0, "a sweep benchmark must not hit the cache"
    benchmark.extra_info.update({"runs": SWEEP_RUNS, "threads": 1})
    benchmark.extra_info["runs_per_s"] = _per_second(benchmark, SWEEP_RUNS)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed") / "results"
    _sweep(root)
    return root


@pytest.mark.benchmark(group="resume")
def test_resume_wall_time(benchmark, finished_sweep):
    result = benchmark.pedantic(_sweep, args=(finished_sweep,), rounds=3, iterations=1)
    assert result.reused == SWEEP_RUNS
    benchmark.extra_info.update({"runs": SWEEP_RUNS, "threads": 1})


@pytest.mark.benchmark(group="report")
def test_report_generation(benchmark, finished_sweep, tmp_path):
    from eatbench.report.markdown import write_report

    path = benchmark.pedantic(
        write_report, args=(tmp_path / "report", finished_sweep), kwargs={"curves_dir": tmp_path}, rounds=2
    )
    assert path.is_file() and (tmp_path / "report" / "figures" / "f1_paper_rates.png").is_file()
    shutil.rmtree(tmp_path / "report")
    benchmark.extra_info.update({"runs": SWEEP_RUNS, "threads": 1})


@pytest.mark.benchmark(group="training")
def test_training_env_steps_per_second(benchmark):
    import numpy as np

    from eatbench.experiment.compose import compose_experiment
    from eatbench.training.env import EdgeAIGCEnv

    env = EdgeAIGCEnv(compose_experiment(["cluster=paper4", "workload.rate=0.07"]))
    rng = np.random.default_rng(0)
    steps = 2000

    def run():
        env.reset(seed=0)
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            if term or trunc:
                env.reset()

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update({"env_steps": steps, "threads": 1})
    benchmark.extra_info["env_steps_per_s"] = _per_second(benchmark, steps)


@pytest.mark.benchmark(group="training")
@pytest.mark.parametrize("scheduler", ["eat", "sac"])
def test_training_loop_steps_per_second(benchmark, tmp_path, scheduler):
    from eatbench.experiment.compose import compose_experiment
    from eatbench.training.train import train

    budget = 1500
    rounds = iter(range(100))

    def run():
        out = tmp_path / f"t{next(rounds)}"
        cfg = compose_experiment(
            [
                f"scheduler={scheduler}",
                "cluster=paper4",
                f"train.out_dir={out}",
                f"train.total_steps={budget}",
                f"train.eval_every={budget}",
                "train.eval_episodes=1",
                "train.wandb=disabled",
                "train.resume=false",
                "train.preset=tuned",
                "train.progress=false",
            ]
        )
        t0 = time.perf_counter()
        train(cfg)
        return time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"env_steps": budget, "threads": 1, "scheduler": scheduler})
    benchmark.extra_info["env_steps_per_s"] = _per_second(benchmark, budget)


#: the training settings compared side by side by ``test_training_speed_old_vs_new``:
#: (label, scheduler, extra overrides); "old" is the setting the fixed-layout checkpoints
#: were trained with (one env, preset tuned: one update per 2 env steps, batch 128)
TRAINING_SETTINGS = [
    ("eat paper-layout, 1 env, tuned (old)", "eat", ["train.preset=tuned"]),
    ("eat paper-layout, 16 envs, set preset", "eat", ["train.preset=set", "train.n_envs=16"]),
    ("eat_set tokens, 16 envs, set preset (new)", "eat_set", ["+train=set"]),
]


@pytest.mark.benchmark(group="training-speed")
@pytest.mark.parametrize("setting", range(len(TRAINING_SETTINGS)), ids=[s[0] for s in TRAINING_SETTINGS])
def test_training_speed_old_vs_new(benchmark, setting):
    """Environment steps per wall-second of SAC training in its steady state (after
    ``learning_starts``: environment steps, policy forwards and gradient updates; no
    evaluation), one torch thread, for the old and the new training settings."""
    from eatbench.experiment.compose import compose_experiment
    from eatbench.training.train import build_model

    label, scheduler, extra = TRAINING_SETTINGS[setting]
    cfg = compose_experiment([f"scheduler={scheduler}", "cluster=paper4", *extra])
    model = build_model(cfg)
    model.learn(model.learning_starts + 512, progress_bar=False)  # fill the buffer: untimed
    steps = 3072

    def run():
        model.learn(steps, reset_num_timesteps=False, progress_bar=False)

    benchmark.pedantic(run, rounds=3, iterations=1)  # consecutive stretches of the same training
    benchmark.extra_info.update(
        {"setting": label, "env_steps": steps, "threads": 1, "n_envs": cfg.train.n_envs, "preset": cfg.train.preset}
    )
    benchmark.extra_info["env_steps_per_s"] = _per_second(benchmark, steps)
