"""eatbench: benchmark and reproducibility suite for scheduling text-to-image diffusion
tasks on edge GPU clusters (a reproduction of EAT, arXiv 2507.10026, and beyond)."""

__version__ = "0.1.0"

ENV_ID = "eatbench/EdgeAIGC-v0"


def _register_env() -> None:
    try:
        import gymnasium
    except ImportError:  # pragma: no cover
        return
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="eatbench.training.env:EdgeAIGCEnv")


_register_env()
