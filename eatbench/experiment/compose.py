"""Compose Hydra configs outside of ``@hydra.main`` (tests, the pytest plugin, notebooks),
with Hydra's global state cleared before and after.

The built-in configs are package data, ``eatbench/conf/``, found through Hydra's search path
as ``pkg://eatbench.conf`` (so a wheel or ``pip install .`` runs from any directory);
``$EATBENCH_CONF`` names another config folder instead, and ``hydra.searchpath=[file://DIR]``
adds a folder of one's own (a ``scheduler/mine.yaml`` there is ``scheduler=mine``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from eatbench.core.config import ConfigError, ExperimentConfig, register_configs, to_experiment_config

#: the installed package's folder (``.../site-packages/eatbench`` or ``<checkout>/eatbench``)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: a checkout's root (the folder above the package); nothing the package runs depends on it
REPO_ROOT = PACKAGE_DIR.parent
#: the module holding the built-in configs (``eatbench/conf/``, shipped in the wheel)
CONF_MODULE = "eatbench.conf"


def conf_dir() -> Path:
    """The built-in config folder: ``$EATBENCH_CONF`` if set, else the package's ``eatbench/conf``."""
    env = os.environ.get("EATBENCH_CONF")
    path = Path(env).resolve() if env else PACKAGE_DIR / "conf"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"EATBENCH_CONF={str(path)!r} is invalid (no config.yaml); allowed: a config folder")
    return path


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``experiment``, ``scheduler``, ...): the YAML
    file stems in ``conf/<group>/``, sorted. The one place that lists them."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def config_path() -> str:
    """Hydra's primary config path: ``file://$EATBENCH_CONF`` if set, else ``pkg://eatbench.conf``."""
    return str(conf_dir()) if os.environ.get("EATBENCH_CONF") else f"pkg://{CONF_MODULE}"


def searchpath_overrides(overrides: Sequence[str]) -> list[str]:
    """The ``hydra.searchpath=[...]`` overrides among ``overrides`` (they add config folders;
    every other ``hydra.*`` key leaves the experiment as it is)."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == "hydra.searchpath"]


def compose_raw(overrides: Sequence[str] = (), experiment: str | None = None) -> DictConfig:
    """The composed config (with its ``hydra`` node) for ``overrides``."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    overrides = list(overrides)
    if experiment:
        available = group_options("experiment")
        if experiment not in available:
            raise ConfigError(f"unknown experiment {experiment!r}; allowed: {', '.join(available)}")
        overrides = [f"+experiment={experiment}", *overrides]
    GlobalHydra.instance().clear()
    try:
        init = (
            initialize_config_dir(version_base="1.3", config_dir=str(conf_dir()))
            if os.environ.get("EATBENCH_CONF")
            else initialize_config_module(version_base="1.3", config_module=CONF_MODULE)
        )
        with init:
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"bad config or override ({' '.join(overrides)}): {err}") from err
    finally:
        GlobalHydra.instance().clear()


def compose_experiment(overrides: Sequence[str] = (), experiment: str | None = None) -> ExperimentConfig:
    """A validated ``ExperimentConfig`` from ``conf/`` plus Hydra ``overrides``, its
    registry names (scheduler, backend, profile, quality curve) and backend parameters
    checked too (``eatbench.experiment.runner.check_registered``)."""
    from eatbench.experiment.runner import check_registered  # the registries import torch: only when composing

    raw = compose_raw(overrides, experiment)
    data = OmegaConf.to_container(raw, resolve=False)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return check_registered(to_experiment_config(OmegaConf.create(data)))


def sweep_params(raw: DictConfig) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of a composed config as ``key -> list of values``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(raw, "hydra.sweeper.params") or {}
    parser = OverridesParser.create()
    out: dict[str, list[str]] = {}
    for key, spec in params.items():
        override = parser.parse_override(f"{key}={spec}")
        out[key] = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [str(spec)]
    return out


def split_sweep_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split Hydra ``overrides`` into fixed ones and sweeps (``scheduler=mine,eat``,
    ``seed=range(3)``): ``(fixed overrides, key as written (``+a/b``) -> list of values)``. A config cannot be
    composed with a sweep ("Ambiguous value"); a grid replaces the experiment's values of
    that key with the sweep's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    fixed: list[str] = []
    sweeps: dict[str, list[str]] = {}
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException as err:
            raise ConfigError(f"bad config or override ({text}): {err}") from err
        if override.is_sweep_override():
            sweeps[text.split("=", 1)[0]] = [str(v) for v in override.sweep_string_iterator()]
        else:
            fixed.append(text)
    return fixed, sweeps
