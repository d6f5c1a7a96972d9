"""Decision latency of the learned schedulers' actors at batch 1 on one CPU thread.

    pytest benchmarks/bench_decision_latency.py --benchmark-only     # pytest-benchmark table
    python benchmarks/bench_decision_latency.py                      # p50 / p99 in microseconds

Measured: the EAT actor (attention + 10-step diffusion chain + head) as trained
(``PolicyNet``, eager), as used for decisions (``FusedPolicy``, TorchScript-traced and frozen), and a whole ``decide``
(encode the engine state + forward + decode). p50 and p99 come from per-call timings;
each test also stores them in the benchmark's ``extra_info``. Target: p99 <= 1 ms.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from eatbench.experiment.compose import compose_experiment  # noqa: E402
from eatbench.schedulers.rl.encoding import FEATURES  # noqa: E402
from eatbench.schedulers.rl.networks import FusedPolicy, PolicyNet, compile_for_cpu  # noqa: E402
from eatbench.training.env import EdgeAIGCEnv  # noqa: E402
from eatbench.training.presets import ARCHS  # noqa: E402

torch.set_num_threads(1)


def _nets(arch: str = "eat", cluster: str = "paper4"):
    cfg = compose_experiment(
        [f"cluster={cluster}", f"workload.k_choices={'[1,2,4,8]' if cluster == 'paper8' else '[1,2,4]'}"]
    )
    env = EdgeAIGCEnv(cfg)
    obs, _ = env.reset(seed=0)
    torch.manual_seed(0)
    net = PolicyNet(obs.size, env.action_space.shape[0], FEATURES, ARCHS[arch])
    return env, net, compile_for_cpu(FusedPolicy(net), obs.size), torch.from_numpy(obs).unsqueeze(0)


def percentiles(fn, n: int = 3000, warmup: int = 200) -> dict[str, float]:
    """p50 / p99 / mean of ``fn()`` in microseconds over ``n`` calls."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    ts = []
    for _ in range(n):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    ts.sort()
    return {"p50_us": ts[n // 2] / 1e3, "p99_us": ts[int(n * 0.99)] / 1e3, "mean_us": statistics.fmean(ts) / 1e3}


def _forward(module, x):
    def call():
        with torch.inference_mode():
            return module(x)

    return call


@pytest.mark.parametrize("variant", ["eager", "fused"])
@pytest.mark.parametrize("arch", ["eat", "dsac", "sac"])
def test_actor_latency(benchmark, arch, variant):
    _, net, fused, x = _nets(arch)
    fn = _forward(fused if variant == "fused" else net, x)
    benchmark.extra_info.update(percentiles(fn, n=1000), threads=torch.get_num_threads())
    benchmark(fn)


def test_eat_decide_latency(benchmark):
    from eatbench.schedulers import SCHEDULERS

    env, net, _, _ = _nets("eat")
    sched = SCHEDULERS.create("eat")
    import dataclasses

    from eatbench.training.train import _policy_meta

    cfg = dataclasses.replace(env.config, scheduler=dataclasses.replace(env.config.scheduler, name="eat"))
    meta = _policy_meta(cfg, env)
    sched.load_state(meta, net.state_dict(), cfg)
    sched.reset(0, env.decoder.k_options)
    engine = env.engine
    fn = lambda: sched.decide(engine.view)  # noqa: E731
    benchmark.extra_info.update(percentiles(fn, n=1000), threads=torch.get_num_threads())
    benchmark(fn)


@pytest.mark.parametrize("n_servers", [4, 16, 64])
def test_eat_set_decide_latency(benchmark, n_servers):
    """The shipped size-agnostic EAT (traced for the cluster's token count) deciding one
    epoch of a busy episode on ``n_servers`` identical servers."""
    from eatbench.experiment.compose import compose_experiment
    from eatbench.experiment.runner import build_engine, make_scheduler
    from eatbench.schedulers.heuristics import FifoScheduler

    cfg = compose_experiment(["scheduler=eat_set", "cluster=uniform", f"cluster.size={n_servers}", "workload=poisson"])
    sched = make_scheduler(cfg)
    sched.reset(0, [1, 2, 4])
    engine, fifo = build_engine(cfg), FifoScheduler()
    fifo.reset(0, [1, 2, 4])
    for _ in range(n_servers // 2):  # some servers busy and warm
        engine.next_decision()
        engine.apply(fifo.decide(engine.view))
    engine.next_decision()
    fn = lambda: sched.decide(engine.view)  # noqa: E731
    benchmark.extra_info.update(percentiles(fn, n=1000), threads=torch.get_num_threads(), n_servers=n_servers)
    benchmark(fn)


def main() -> None:
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    print("| actor | variant | p50 (us) | p99 (us) | mean (us) |\n|---|---|---|---|---|")
    for arch in ("eat", "dsac", "sac", "eat_wide"):
        _, net, fused, x = _nets(arch)
        for variant, mod in (("eager PolicyNet", net), ("FusedPolicy (traced)", fused)):
            p = percentiles(_forward(mod, x))
            print(f"| {arch} | {variant} | {p['p50_us']:.0f} | {p['p99_us']:.0f} | {p['mean_us']:.0f} |")


if __name__ == "__main__":
    main()
