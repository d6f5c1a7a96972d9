"""The ``eatbench`` command: ``eatbench <command> [hydra overrides...]``.

Each command is a Hydra app over ``conf/`` (so ``-m`` multiruns, ``--cfg job`` and
launcher overrides work as in any Hydra app).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from omegaconf import DictConfig

from eatbench.compose import conf_dir
from eatbench.config import ConfigError, register_configs, to_experiment_config

USAGE = """usage: eatbench <command> [key=value ...] [-m]

commands:
  run      run one experiment (or a sweep with -m) and write its result files
{extra}
examples:
  eatbench run scheduler=greedy cluster=hetero8 workload.rate=0.05 seed=3
  eatbench run -m +experiment=paper_rates hydra/launcher=joblib
"""

#: command name -> (one-line help, task function taking the composed config)
COMMANDS: dict[str, tuple[str, Callable[[DictConfig], object]]] = {}


def command(name: str, help: str) -> Callable:
    def add(fn: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
        COMMANDS[name] = (help, fn)
        return fn

    return add


def _format_summary(summary: dict) -> str:
    keys = [
        ("tasks_done", "{:.0f}"),
        ("tasks_unfinished", "{:.0f}"),
        ("completion_rate", "{:.1%}"),
        ("response_mean", "{:.2f} s"),
        ("response_p90", "{:.2f} s"),
        ("response_mean_done", "{:.2f} s"),
        ("wait_mean", "{:.2f} s"),
        ("quality_mean", "{:.3f}"),
        ("slo_attainment", "{:.1%}"),
        ("cold_start_rate", "{:.1%}"),
        ("utilisation_mean", "{:.1%}"),
        ("reward_total", "{:.1f}"),
        ("decision_time_mean_s", "{:.2e} s"),
    ]
    return "\n".join(f"  {k:22s} {fmt.format(summary[k])}" for k, fmt in keys if k in summary)


@command("run", "run one experiment (or a sweep with -m) and write its result files")
def run_command(raw: DictConfig) -> object:
    from eatbench.runner import run_dir, run_experiment

    cfg = to_experiment_config(raw)
    existed = cfg.output.write and cfg.output.resume and (run_dir(cfg) / "summary.json").is_file()
    result = run_experiment(cfg)
    where = f" -> {result.out_dir}" + (" (already done; skipped)" if existed else "") if result.out_dir else ""
    print(f"[eatbench] {cfg.experiment} scheduler={cfg.scheduler.name} seed={cfg.seed}{where}")
    print(_format_summary(result.summary))
    return result.summary


def _load_extra_commands() -> None:
    """Commands contributed by optional modules (training, profiling, reports)."""
    import importlib

    for module in ("eatbench.rl_cli", "eatbench.gpu_cli", "eatbench.report.cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if not (err.name and module.startswith(err.name)):
                raise


def main(argv: list[str] | None = None) -> int:
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    _load_extra_commands()
    if not argv or argv[0] in ("-h", "--help", "help"):
        extra = "".join(f"  {n:8s} {h}\n" for n, (h, _) in COMMANDS.items() if n != "run")
        print(USAGE.format(extra=extra))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"eatbench: unknown command {name!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _, fn = COMMANDS[name]
    register_configs()

    def task(raw: DictConfig) -> object:
        try:
            return fn(raw)
        except ConfigError as err:
            print(f"eatbench {name}: config error: {err}", file=sys.stderr)
            sys.exit(2)

    try:
        config_path = str(conf_dir())
    except ConfigError as err:
        print(f"eatbench: {err}", file=sys.stderr)
        return 2
    app = hydra.main(config_path=config_path, config_name="config", version_base="1.3")(task)
    sys.argv = [f"eatbench-{name}", *rest]
    app()
    return 0


if __name__ == "__main__":
    # run the imported module's main(): commands register on ``eatbench.cli``, not ``__main__``
    from eatbench.cli import main as _main

    sys.exit(_main())
