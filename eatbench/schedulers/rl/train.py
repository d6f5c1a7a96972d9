"""Training of the learned schedulers with SB3 SAC on ``EdgeAIGCEnv``.

``train(cfg)`` trains ``cfg.scheduler.name``'s architecture on ``cfg.cluster`` and
writes into ``<train.out_dir>/<run name>/``:

- ``model.zip``, ``replay.pkl``, ``state.json``: the resumable training state, saved at
  every evaluation and on interrupt (``train.resume`` continues from it);
- ``curve.csv`` and ``curve.json``: the training curve (env steps, wall time, mean
  deterministic eval return and response time on fixed evaluation workloads);
- ``policy.pt`` and ``policy.json``: the exported policy for ``eatbench run`` and its
  provenance (command, config, seed, git revision, wall time, final evaluation).

Workloads: every training episode draws a new workload seed (the env's reset) and, when
``train.rate_low``/``rate_high`` are set, an arrival rate uniformly from that range, so
one policy serves a whole sweep. Evaluation uses the configured ``workload.rate``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eatbench.config import ConfigError, ExperimentConfig, config_to_dict
from eatbench.schedulers.rl.checkpoint import PolicyMeta, save_policy
from eatbench.schedulers.rl.presets import arch_for, sac_kwargs

EVAL_SEED_BASE = 1_000_000  # evaluation workload seeds: EVAL_SEED_BASE + i (training draws its own)
CURVE_FIELDS = ("step", "wall_s", "eval_return", "eval_response_mean", "episodes")


@dataclass
class TrainResult:
    """Where a training run wrote its files, and its curve."""

    run_dir: Path
    policy_path: Path
    curve: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    steps: int = 0


def run_name(cfg: ExperimentConfig) -> str:
    t = cfg.train
    return f"{cfg.scheduler.name}-{cfg.cluster.name}-{t.layout}-{t.preset}-seed{cfg.seed}"


def make_env(cfg: ExperimentConfig, train: bool = True):
    """The training env (rate range if configured) or the evaluation env (configured rate)."""
    from eatbench.env import EdgeAIGCEnv

    t = cfg.train
    rng = (t.rate_low, t.rate_high) if train and t.rate_low is not None and t.rate_high is not None else None
    return EdgeAIGCEnv(cfg, layout=t.layout, time_scale=t.time_scale, rate_range=rng)


def evaluate(model: Any, env: Any, episodes: int) -> dict[str, float]:
    """Mean deterministic return (paper reward, summed) and mean response time (s) over
    ``episodes`` fixed workloads."""
    returns, responses = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            total += r
            done = term or trunc
        returns.append(total)
        responses.append(env.engine.summary().get("response_mean", float("nan")))
    finite = [r for r in responses if r == r]  # an episode without launches has no response time
    return {
        "eval_return": float(np.mean(returns)),
        "eval_response_mean": float(np.mean(finite)) if finite else float("nan"),
    }


def _policy_meta(cfg: ExperimentConfig, env: Any) -> PolicyMeta:
    return PolicyMeta(
        arch=cfg.scheduler.name,
        spec=arch_for(cfg.scheduler.name).to_dict(),
        layout=cfg.train.layout,
        cluster=cfg.cluster.name,
        n_servers=env.encoder.n_servers,
        window=env.encoder.window,
        time_scale=env.encoder.time_scale,
        k_options=list(env.decoder.k_options),
        obs_size=int(env.observation_space.shape[0]),
        action_size=int(env.action_space.shape[0]),
    )


def final_eval(cfg: ExperimentConfig, meta: PolicyMeta, state: dict, seeds: int = 5) -> dict[str, Any]:
    """Evaluate the exported policy through the runner (as ``eatbench run`` does)."""
    from eatbench.metrics import aggregate_seeds
    from eatbench.runner import run_experiment
    from eatbench.schedulers import SCHEDULERS

    summaries = []
    for s in range(seeds):
        c = replace(cfg, seed=s)
        sched = SCHEDULERS.create(cfg.scheduler.name)
        sched.load_state(meta, state, c)
        summaries.append(run_experiment(c, scheduler=sched, write=False).summary)
    agg = aggregate_seeds(summaries)
    keys = ("response_mean", "response_p90", "quality_mean", "reward_total")
    return {"rate": cfg.workload.rate, "seeds": seeds, **{k: agg[k] for k in keys if k in agg}}


class _Logger:
    """Local CSV/JSON curve plus optional W&B (imported only when enabled)."""

    def __init__(self, run_dir: Path, cfg: ExperimentConfig, curve: list[dict]) -> None:
        self.run_dir, self.curve = run_dir, curve
        self.wandb = None
        mode = cfg.train.wandb
        if mode != "disabled":
            import wandb

            self.wandb = wandb.init(
                project="eatbench",
                name=run_name(cfg),
                mode=mode,
                dir=str(run_dir),
                config=config_to_dict(cfg),
                reinit="finish_previous",
            )

    def log(self, row: dict[str, float]) -> None:
        self.curve.append(row)
        with (self.run_dir / "curve.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            w.writerows(self.curve)
        (self.run_dir / "curve.json").write_text(json.dumps(self.curve, indent=1))
        if self.wandb is not None:
            self.wandb.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def train(cfg: ExperimentConfig, argv: list[str] | None = None) -> TrainResult:
    """Train (or resume) one learned scheduler; see the module docstring."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from eatbench.provenance import provenance
    from eatbench.schedulers.rl.policies import ActorOnlyExtractorPolicy, policy_kwargs

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    try:
        spec = arch_for(cfg.scheduler.name)
        kw = sac_kwargs(t.preset, dict(t.params))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    run_dir = Path(t.out_dir) / run_name(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    env, eval_env = make_env(cfg, train=True), make_env(cfg, train=False)
    state_file = run_dir / "state.json"
    resumed = t.resume and state_file.is_file() and (run_dir / "model.zip").is_file()
    if resumed:
        state = json.loads(state_file.read_text())
        with warnings.catch_warnings():  # SB3 warns that the saved NStepReplayBuffer class overrides n_steps
            warnings.simplefilter("ignore", UserWarning)
            model = SAC.load(run_dir / "model.zip", env=env, device="cpu")
        if (run_dir / "replay.pkl").is_file():
            model.load_replay_buffer(run_dir / "replay.pkl")
        curve, wall0 = state["curve"], state["wall_s"]
    else:
        wd = kw.pop("weight_decay")
        model = SAC(
            ActorOnlyExtractorPolicy,
            env,
            policy_kwargs=policy_kwargs(spec, wd),
            seed=cfg.seed,
            device="cpu",
            verbose=0,
            **kw,
        )
        curve, wall0 = [], 0.0
    done_steps = int(model.num_timesteps)
    logger = _Logger(run_dir, cfg, curve)
    t_start = time.perf_counter()

    def wall() -> float:
        return wall0 + time.perf_counter() - t_start

    def checkpoint() -> None:
        model.save(run_dir / "model.zip")
        model.save_replay_buffer(run_dir / "replay.pkl")
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"steps": int(model.num_timesteps), "wall_s": wall(), "curve": curve}))
        os.replace(tmp, state_file)

    def eval_and_log(episodes_seen: int) -> None:
        row = {"step": int(model.num_timesteps), "wall_s": round(wall(), 2), "episodes": episodes_seen}
        row.update(evaluate(model, eval_env, t.eval_episodes))
        logger.log(row)

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=t.total_steps, initial=done_steps, disable=not t.progress, desc=run_name(cfg))
            self.episodes = 0
            if not curve:
                eval_and_log(0)

        def _on_step(self) -> bool:
            self.bar.update(1)
            self.episodes += int(np.sum(self.locals.get("dones", 0)))
            n = self.num_timesteps
            if n % t.eval_every == 0:
                eval_and_log(self.episodes)
                checkpoint()
                self.bar.set_postfix(ret=f"{curve[-1]['eval_return']:.1f}")
            return not (t.max_minutes and wall() > 60 * t.max_minutes)

        def _on_training_end(self) -> None:
            self.bar.close()

    remaining = t.total_steps - done_steps
    try:
        if remaining > 0:
            model.learn(remaining, callback=Progress(), reset_num_timesteps=not resumed, progress_bar=False)
    except KeyboardInterrupt:
        checkpoint()
        logger.close()
        print(
            f"[eatbench train] interrupted at step {model.num_timesteps}; resume with the same command", file=sys.stderr
        )
        raise
    if not curve or curve[-1]["step"] != model.num_timesteps:
        eval_and_log(-1)
    checkpoint()
    logger.close()
    meta = _policy_meta(cfg, env)
    actor_state = model.policy.actor.state_dict()
    result_eval = final_eval(cfg, meta, actor_state)
    sidecar = {
        "command": " ".join(argv or sys.argv),
        "scheduler": cfg.scheduler.name,
        "cluster": cfg.cluster.name,
        "seed": cfg.seed,
        "preset": t.preset,
        "sac_kwargs": sac_kwargs(t.preset, dict(t.params)),
        "arch": spec.to_dict(),
        "train_rate_range": [t.rate_low, t.rate_high],
        "env_steps": int(model.num_timesteps),
        "train_wall_s": round(wall(), 1),
        "torch_threads": torch.get_num_threads(),
        "final_eval": result_eval,
        "curve": curve,
        "config": config_to_dict(cfg),
        **provenance(),
    }
    policy = save_policy(run_dir / "policy.pt", meta, actor_state, sidecar)
    if t.export:
        Path(t.export).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(policy, t.export)
        shutil.copyfile(policy.with_suffix(".json"), Path(t.export).with_suffix(".json"))
    return TrainResult(run_dir, policy, curve, wall(), int(model.num_timesteps))
