"""Why the size-agnostic EAT does not reach EarliestFinish: three measurements.

1. ``steps``: EarliestFinish at fixed 10, 20, 26 and 32 steps on the training
   distribution's evaluation episodes: mean paper reward (summed over the episode) and
   mean response. Shows which step count the paper reward prefers over a whole episode.
2. ``policy``: what a trained ``*_set`` checkpoint does on the same episodes: share of
   waits, the steps it launches with, its reward and response.
3. ``placement``: the oldest task at 20 steps on the paper's placement rule vs on the
   earliest-finish gang (the rule the ``*_set`` decoder uses): what the gang rule alone is
   worth, against what choosing the task is worth (EarliestFinish@20 above).
4. ``imitation``: can the ``eat_set`` network express EarliestFinish's policy at all?
   Its actor is fitted by supervised learning (no RL) to EarliestFinish's decisions at 20
   steps on scenario episodes, then run as a scheduler on the same evaluation episodes.

    python benchmarks/diagnose_set_policy.py --checkpoint eatbench/data/checkpoints/eat_set-any.pt

Prints one JSON object; one torch thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time

import numpy as np
import torch

from eatbench.experiment.compose import compose_experiment
from eatbench.experiment.runner import k_options
from eatbench.schedulers import SCHEDULERS
from eatbench.training.train import EVAL_SEED_BASE, make_env

EPISODES = 8


def _episodes(env, decide, n: int = EPISODES, seed0: int = EVAL_SEED_BASE) -> dict:
    """Run ``decide(engine)`` on ``n`` evaluation episodes; reward, response, waits, steps."""
    rewards, responses, steps, waits, decisions = [], [], collections.Counter(), 0, 0
    for i in range(n):
        env.reset(seed=seed0 + i)
        engine = env.engine
        while engine.next_decision():
            d = decide(env)
            decisions += 1
            if d is None:
                waits += 1
            else:
                steps[d.steps] += 1
            engine.apply(d)
        rewards.append(engine.reward_total)
        responses.append(engine.summary()["response_mean"])
    launches = sum(steps.values())
    return {
        "reward_mean": round(statistics.fmean(rewards), 1),
        "response_mean_s": round(statistics.fmean(responses), 1),
        "wait_share": round(waits / max(decisions, 1), 3),
        "launches_at_30_steps_or_more": round(sum(v for s, v in steps.items() if s >= 30) / max(launches, 1), 3),
        "median_steps": float(np.median([s for s, v in steps.items() for _ in range(v)])) if launches else None,
    }


def _heuristic(cfg, name: str, steps: int):
    def decide(env):
        sched = decide.sched.get(id(env.engine))
        if sched is None:
            sched = SCHEDULERS.create(name, steps=steps)
            sched.reset(0, k_options(cfg, env.engine.n_servers))
            decide.sched = {id(env.engine): sched}
        return sched.decide(env.engine.view)

    decide.sched = {}
    return decide


def _oldest_first(rule: str):
    from eatbench.engine.loop import Decision
    from eatbench.engine.placement import earliest_finish_gang

    def decide(env):
        view = env.engine.view
        task = view.visible()[0]
        k = task.k or 1
        gang = (
            earliest_finish_gang(view, task, k, 20)
            if rule == "earliest_finish"
            else view.default_servers(k, task.model)
        )
        return None if gang is None else Decision(task.id, 20, gang)

    return decide


def _learned(checkpoint: str):
    from eatbench.schedulers.rl.checkpoint import load_policy
    from eatbench.schedulers.rl.networks import ArchSpec
    from eatbench.schedulers.rl.set_networks import SetPolicyNet

    meta, state = load_policy(checkpoint)
    net = SetPolicyNet(meta.window, ArchSpec(**meta.spec))
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("log_std")})
    return net


def _policy_decider(net):
    def decide(env):
        obs = env.encoder.encode(env.engine.view)
        with torch.inference_mode():
            action = net(torch.from_numpy(obs).unsqueeze(0))[0].numpy()
        return env.decoder.decode(env.engine.view, action)

    return decide


def _imitate(cfg, env, samples: int, updates: int) -> tuple[torch.nn.Module, dict]:
    """Fit ``eat_set``'s actor to EarliestFinish (20 steps) by regression on its actions."""
    from eatbench.schedulers.rl.set_networks import SetPolicyNet
    from eatbench.training.presets import arch_for

    dec = env.decoder
    obs, targets, masks = [], [], []
    seed = 0
    while len(obs) < samples:
        env.reset(seed=seed)
        seed += 1
        engine = env.engine
        ef = SCHEDULERS.create("earliest_finish", steps=20)
        ef.reset(0, k_options(cfg, engine.n_servers))
        while engine.next_decision() and len(obs) < samples:
            d = ef.decide(engine.view)
            visible = engine.visible()
            target = np.zeros(dec.size, dtype=np.float32)
            mask = np.zeros(dec.size, dtype=np.float32)
            mask[0] = 1
            if d is None:
                target[0] = -0.95
            else:
                target[0] = 0.95
                target[1] = 2 * (d.steps - dec.min_steps) / (dec.max_steps - dec.min_steps) - 1
                mask[1] = 1
                for i, t in enumerate(visible):
                    target[3 + i] = 0.95 if t.id == d.task_id else -0.95
                    mask[3 + i] = 1
            obs.append(env.encoder.encode(engine.view))
            targets.append(target)
            masks.append(mask)
            engine.apply(d)
    x, y, m = (torch.from_numpy(np.stack(a)) for a in (obs, targets, masks))
    net = SetPolicyNet(dec.window, arch_for("eat_set"))
    actor = net.features_extractor.net
    actor.train()
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(updates):
        idx = torch.randint(len(x), (256,), generator=gen)
        pred = torch.tanh(actor(x[idx])[:, : dec.size])
        loss = (((pred - y[idx]) ** 2) * m[idx]).sum() / m[idx].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, {"samples": len(x), "updates": updates, "final_loss": round(loss.item(), 4),
                 "fit_s": round(time.perf_counter() - t0, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="a *_set policy (repeatable)")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--updates", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose_experiment(["scheduler=eat_set", "+train=set"])
    env = make_env(cfg, train=False)
    out: dict = {"threads": 1, "episodes": EPISODES, "steps": {}, "policy": {}}
    for steps in (10, 20, 26, 32):
        out["steps"][f"earliest_finish@{steps}"] = _episodes(env, _heuristic(cfg, "earliest_finish", steps))
    out["steps"]["fifo@20"] = _episodes(env, _heuristic(cfg, "fifo", 20))
    out["placement"] = {rule: _episodes(env, _oldest_first(rule)) for rule in ("paper", "earliest_finish")}
    for path in args.checkpoint:
        out["policy"][path] = _episodes(env, _policy_decider(_learned(path)))
    net, fit = _imitate(cfg, make_env(cfg, train=True), args.samples, args.updates)
    out["imitation"] = {**fit, **_episodes(env, _policy_decider(net))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
