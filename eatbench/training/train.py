"""Training of the learned schedulers with SB3 SAC on ``EdgeAIGCEnv``.

``train(cfg)`` trains ``cfg.scheduler.name``'s architecture on ``cfg.cluster`` and
writes into ``<train.out_dir>/<run name>/``:

- ``checkpoint/step-<N>/``: the resumable training state (``model.zip``: SB3 model with
  its optimisers and last observation; ``replay.pkl``: replay buffer; ``env.pkl``: the
  training env mid-episode with its random stream; ``rng.pkl``: Python, NumPy, torch and
  action-space random states; ``manifest.json``: step, wall time, curve, episode count
  and the checksum of every file), written atomically (see
  ``checkpoint.write_step_checkpoint``) after every evaluation, at a time limit and on
  Ctrl-C. ``train.resume`` continues from it, and the continued run is the same run: an
  interrupted-and-resumed training ends with the same policy and curve as an
  uninterrupted one with the same seed. Checkpoints are taken between SB3 rollouts (after
  the gradient steps of the last one), the only points where the state is consistent;
  Ctrl-C asks for one there (a second Ctrl-C aborts without saving);
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
import io
import json
import pickle
import random
import shlex
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eatbench.core.config import ConfigError, ExperimentConfig, config_to_dict
from eatbench.schedulers.rl.checkpoint import (
    PolicyMeta,
    fault_point,
    find_step_checkpoint,
    save_policy,
    write_step_checkpoint,
)
from eatbench.training.presets import arch_for, sac_kwargs

EVAL_SEED_BASE = 1_000_000  # evaluation workload seeds: EVAL_SEED_BASE + i (training draws its own)
CURVE_FIELDS = ("step", "wall_s", "eval_return", "eval_response_mean", "episodes")
CHECKPOINT_DIR = "checkpoint"


class _Stop(Exception):
    """Raised at a rollout boundary to end ``learn`` there (Ctrl-C or the time limit)."""


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
    """The training env (rate range or scenario distribution if configured) or the
    evaluation env (the configured rate; for ``scenarios: mixed``, fixed scenario draws)."""
    from eatbench.training.env import EdgeAIGCEnv

    t = cfg.train
    if t.layout == "set":
        from eatbench.training.scenarios import ScenarioSampler

        return EdgeAIGCEnv(
            cfg,
            layout="set",
            time_scale=t.time_scale,
            scenarios=ScenarioSampler(cfg) if t.scenarios == "mixed" else None,
            unfinished_penalty=t.unfinished_penalty if train else 0.0,
        )
    rng = (t.rate_low, t.rate_high) if train and t.rate_low is not None and t.rate_high is not None else None
    return EdgeAIGCEnv(cfg, layout=t.layout, time_scale=t.time_scale, rate_range=rng)


def make_vec_env(cfg: ExperimentConfig):
    """``train.n_envs`` training envs side by side (SB3 ``DummyVecEnv``, one process)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: make_env(cfg, train=True) for _ in range(cfg.train.n_envs)])


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


def build_model(cfg: ExperimentConfig) -> Any:
    """A new SB3 SAC model for ``cfg.scheduler.name``'s architecture on ``train.n_envs``
    training envs (the paper's fixed layout or the size-agnostic token networks)."""
    from stable_baselines3 import SAC

    from eatbench.training.policies import (
        ActorOnlyExtractorPolicy,
        SetSACPolicy,
        policy_kwargs,
        set_policy_kwargs,
    )

    spec = arch_for(cfg.scheduler.name)
    kw = sac_kwargs(cfg.train.preset, dict(cfg.train.params))
    wd = kw.pop("weight_decay")
    if spec.tokens:
        policy_cls, pkw = SetSACPolicy, set_policy_kwargs(spec, cfg.engine.window, wd)
    else:
        policy_cls, pkw = ActorOnlyExtractorPolicy, policy_kwargs(spec, wd)
    return SAC(policy_cls, make_vec_env(cfg), policy_kwargs=pkw, seed=cfg.seed, device=train_device(), verbose=0, **kw)


def train_device() -> str:
    """``cuda`` when a GPU is present, else ``cpu`` (exported policies are always CPU tensors)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _policy_meta(cfg: ExperimentConfig, env: Any) -> PolicyMeta:
    if cfg.train.layout == "set":  # size-agnostic: no server count, sizes per token
        from eatbench.schedulers.rl.tokens import TOKEN

        return PolicyMeta(
            arch=cfg.scheduler.name,
            spec=arch_for(cfg.scheduler.name).to_dict(),
            layout="set",
            cluster="any",
            n_servers=0,
            window=env.encoder.window,
            time_scale=env.encoder.time_scale,
            k_options=list(env.decoder.k_options),
            obs_size=TOKEN,
            action_size=int(env.action_space.shape[0]),
        )
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
    from eatbench.core.metrics import aggregate_seeds
    from eatbench.experiment.runner import run_experiment
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
        self.write_files()

    def write_files(self) -> None:
        """``curve.csv`` and ``curve.json``, each written atomically."""
        from eatbench.experiment.runner import atomic_write_text

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(self.curve)
        atomic_write_text(self.run_dir / "curve.csv", buf.getvalue())
        atomic_write_text(self.run_dir / "curve.json", json.dumps(self.curve, indent=1))
        row = self.curve[-1] if self.curve else None
        if self.wandb is not None and row is not None:
            self.wandb.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _rng_state(model: Any) -> dict[str, Any]:
    """Every random stream training draws from, besides the env's (pickled with it)."""
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def _set_rng_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    model.action_space.np_random.bit_generator.state = state["action_space"]


def _curve_to_json(curve: list[dict]) -> list[dict]:
    """The curve with NaN (an evaluation without launches has no response time) as null."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in curve]


def _curve_from_json(curve: list[dict]) -> list[dict]:
    return [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in curve]


#: settings that may change between an interrupted run and its resumption (they do not
#: change what is trained); every other setting must be the same to resume
RESUMABLE_CHANGES = (
    "train.total_steps",
    "train.max_minutes",
    "train.progress",
    "train.wandb",
    "train.threads",
    "train.export",
    "train.resume",
    "train.out_dir",
    "output",
    "checkpoint",
    "scheduler.checkpoint",
)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _training_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """The flattened config without the settings a resumption may change."""
    flat = _flat(json.loads(json.dumps(config_to_dict(cfg), default=str)))
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES)}


def _pickle_to(obj: Any) -> Any:
    def write(path: Path) -> None:
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    return write


def _load_checkpoint(folder: Path) -> Any:
    """The SAC model of a verified checkpoint folder, with its env, replay buffer and
    random states restored exactly."""
    from stable_baselines3 import SAC

    with warnings.catch_warnings():  # SB3 warns that the saved NStepReplayBuffer class overrides n_steps
        warnings.simplefilter("ignore", UserWarning)
        model = SAC.load(folder / "model.zip", env=None, device=train_device())  # keeps its last observation
    with (folder / "env.pkl").open("rb") as f:
        model.set_env(pickle.load(f), force_reset=False)  # the training env mid-episode
    model.load_replay_buffer(folder / "replay.pkl")
    with (folder / "rng.pkl").open("rb") as f:
        _set_rng_state(model, pickle.load(f))  # after load, which reseeds everything
    return model


def train(cfg: ExperimentConfig, argv: list[str] | None = None) -> TrainResult:
    """Train (or resume) one learned scheduler; see the module docstring.

    Raises ``KeyboardInterrupt`` after saving a checkpoint when interrupted (Ctrl-C), and
    ``ConfigError`` for bad settings or an inconsistent checkpoint, before training starts.
    """
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from eatbench.core.provenance import provenance

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    try:
        spec = arch_for(cfg.scheduler.name)
        sac_kwargs(t.preset, dict(t.params))  # checks the preset and its overrides
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if spec.tokens != (t.layout == "set"):
        raise ConfigError(
            f"train.layout={t.layout!r} is invalid for scheduler {cfg.scheduler.name!r}; allowed: "
            + ("set (a size-agnostic token network)" if spec.tokens else "paper or extended (a fixed-size network)")
        )
    run_dir = Path(t.out_dir) / run_name(cfg)
    ckpt_root = run_dir / CHECKPOINT_DIR
    found = find_step_checkpoint(ckpt_root) if t.resume else None
    if t.resume and found is None and (run_dir / "model.zip").is_file():
        raise ConfigError(
            f"train.resume=True is invalid for {str(run_dir)!r}: it holds a checkpoint of an older eatbench "
            f"(model.zip without {CHECKPOINT_DIR}/), which cannot resume exactly; allowed: train.resume=false "
            "to start over, or another train.out_dir"
        )
    if not t.resume and ckpt_root.is_dir():  # starting over: a crash before the first new checkpoint
        print(f"[eatbench train] train.resume=false: removing the previous checkpoints in {ckpt_root}", file=sys.stderr)
        shutil.rmtree(ckpt_root)  # must not leave the old run to be resumed
    resume_cmd = shlex.join(argv or ["eatbench", "train", *sys.argv[1:]])  # quoted for a shell
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_env = make_env(cfg, train=False)
    if found is not None:
        folder, manifest = found
        now, then = _training_settings(cfg), manifest.get("settings", {})
        changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        if changed:
            shown = "; ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
            raise ConfigError(
                f"train.resume=True is invalid here: the checkpoint {str(folder)!r} was trained with other settings "
                f"({shown}{'; ...' if len(changed) > 4 else ''}); allowed: the same settings (only "
                f"{', '.join(RESUMABLE_CHANGES[:4])}, ... may change), train.resume=false to start over, or another "
                "train.out_dir"
            )
        try:
            model = _load_checkpoint(folder)
        except Exception as err:  # complete and unchanged, yet unloadable: e.g. written by other library versions
            raise ConfigError(
                f"training checkpoint {str(folder)!r} cannot be loaded ({type(err).__name__}: {err}); allowed: a "
                "checkpoint written with these versions of eatbench, SB3 and torch; train.resume=false starts over"
            ) from err
        curve, wall0 = _curve_from_json(manifest["eval_curve"]), float(manifest["wall_s"])
        # evaluations fall due every eval_every steps, whatever extra ones a time limit added
        due = {"index": int(manifest.get("eval_index", int(model.num_timesteps) // t.eval_every))}
        if int(model.num_timesteps) != manifest["step"]:
            raise ConfigError(
                f"training checkpoint {str(folder)!r} is inconsistent: model.zip is at step {model.num_timesteps}, "
                f"the manifest at {manifest['step']}; allowed: a complete checkpoint. Delete that folder to start over"
            )
    else:
        model = build_model(cfg)
        curve, wall0 = [], 0.0
        due = {"index": 0}
    resumed = found is not None
    env = model.get_env().envs[0].unwrapped
    done_steps = int(model.num_timesteps)
    logger = _Logger(run_dir, cfg, curve)
    if curve:
        logger.write_files()  # the checkpoint's curve (a later, unsaved row may have been written)
    t_start = time.perf_counter()
    saved = {"key": (done_steps, len(curve)) if resumed else None}
    interrupt = {"asked": False}

    def wall() -> float:
        return wall0 + time.perf_counter() - t_start

    def checkpoint() -> None:
        key = (int(model.num_timesteps), len(curve))
        if saved["key"] == key:
            return
        write_step_checkpoint(
            ckpt_root,
            int(model.num_timesteps),
            {
                "model.zip": lambda p: model.save(p),
                "replay.pkl": lambda p: model.save_replay_buffer(p),
                "env.pkl": _pickle_to(model.get_env()),
                "rng.pkl": _pickle_to(_rng_state(model)),
            },
            {
                "wall_s": round(wall(), 3),
                "episodes": int(model._episode_num),
                "eval_curve": _curve_to_json(curve),  # not "curve": reports collect files with a curve
                "eval_index": due["index"],
                "settings": _training_settings(cfg),
            },
        )
        saved["key"] = key

    def eval_and_log() -> None:
        row = {"step": int(model.num_timesteps), "wall_s": round(wall(), 2), "episodes": int(model._episode_num)}
        row.update(evaluate(model, eval_env, t.eval_episodes))
        logger.log(row)

    class Hooks(BaseCallback):
        """Evaluation, checkpoints and stops, all at rollout boundaries (consistent states)."""

        def _on_training_start(self) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=t.total_steps, initial=done_steps, disable=not t.progress, desc=run_name(cfg))
            if not curve:
                eval_and_log()

        def _on_rollout_start(self) -> None:
            n = self.model.num_timesteps
            if n // t.eval_every > due["index"]:
                due["index"] = n // t.eval_every
                eval_and_log()
                checkpoint()
                self.bar.set_postfix(ret=f"{curve[-1]['eval_return']:.1f}")
            fault_point("rollout", step=n)
            if interrupt["asked"]:
                raise _Stop("interrupt")
            if t.max_minutes and wall() > 60 * t.max_minutes:
                raise _Stop("time")

        def _on_step(self) -> bool:
            self.bar.update(1)
            fault_point("step", step=self.num_timesteps)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupt["asked"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts at once

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    stopped = None
    hooks = Hooks()
    try:
        if t.total_steps - done_steps > 0:
            try:
                model.learn(t.total_steps - done_steps, callback=hooks, reset_num_timesteps=not resumed)
            except _Stop as stop:
                stopped = str(stop)
                hooks.bar.close()
        if stopped == "interrupt":
            checkpoint()
            logger.close()
            print(
                f"[eatbench train] interrupted at step {model.num_timesteps}; checkpoint saved; "
                f"resume with: {resume_cmd}",
                file=sys.stderr,
            )
            stop = KeyboardInterrupt()
            stop.reported = True  # type: ignore[attr-defined]  # the CLI adds no second line
            raise stop
    except KeyboardInterrupt as err:
        if stopped != "interrupt":
            err.reported = True  # type: ignore[attr-defined]
            step = saved["key"][0] if saved["key"] else 0
            print(
                f"[eatbench train] aborted at step {model.num_timesteps}; the last complete checkpoint (step {step}) "
                f"is kept; resume with: {resume_cmd}",
                file=sys.stderr,
            )
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if not curve or curve[-1]["step"] != model.num_timesteps:
        # the budget ended here: this evaluation is the one a longer run makes at its next rollout
        # boundary, on the same state; a resumption with a larger budget must not repeat it
        due["index"] = max(due["index"], int(model.num_timesteps) // t.eval_every)
        eval_and_log()
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
        export = Path(t.export)
        export.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((policy.with_suffix(".json"), export.with_suffix(".json")), (policy, export)):
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)  # atomically
    return TrainResult(run_dir, policy, curve, wall(), int(model.num_timesteps))
