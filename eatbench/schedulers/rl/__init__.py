"""Learned schedulers (EAT, DSAC, SAC and ablations). Importing registers them; torch and
stable-baselines3 are imported only when a policy is loaded or trained."""

from eatbench.schedulers.rl.scheduler import LearnedScheduler

__all__ = ["LearnedScheduler"]
