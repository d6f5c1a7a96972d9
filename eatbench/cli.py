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
  eatbench run -m +experiment=paper_rates                    # the paper's sweep (joblib, 2 workers)
  eatbench run -m +experiment=paper_rates scheduler=mine     # add a scheduler to its results
  eatbench report                                            # reports/results -> reports/REPORT.md
  eatbench run -m +experiment=paper_rates hydra/launcher=local_ray   # Ray (pip install -e ".[ray]")

output: result files in output.root (default reports/results), the report beside them (reports/).
tab completion (bash): eval "$(eatbench run -sc install=bash)"
"""

#: command name -> (one-line help, task function taking the composed config)
COMMANDS: dict[str, tuple[str, Callable[[DictConfig], object]]] = {}
#: command name -> its own ``--flags`` (flag -> takes a value), taken out before Hydra parses the rest
FLAGS: dict[str, dict[str, bool]] = {}
#: the flags of the running command (``--wandb-report-json PATH`` -> ``{"wandb_report_json": "PATH"}``)
OPTIONS: dict[str, object] = {}


#: commands that run a grid themselves and take sweep overrides (``scheduler=a,b``) without ``-m``
TAKES_SWEEPS: set[str] = set()


def command(name: str, help: str, flags: dict[str, bool] | None = None, takes_sweeps: bool = False) -> Callable:
    """Register ``fn`` as ``eatbench <name>``; ``flags`` are its own ``--flag`` options
    (``True``: takes a value), read by the task from :data:`OPTIONS`. With ``takes_sweeps``,
    sweep overrides (``scheduler=a,b``) are kept from Hydra (which refuses them without
    ``-m``) and given to the task as ``OPTIONS["sweeps"]``."""

    def add(fn: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
        COMMANDS[name] = (help, fn)
        FLAGS[name] = dict(flags or {})
        if takes_sweeps:
            TAKES_SWEEPS.add(name)
        return fn

    return add


def _take_sweeps(args: list[str]) -> tuple[list[str], list[str]]:
    """(sweep overrides, the other arguments) of ``args``; flags and malformed ones stay."""
    from eatbench.compose import split_sweep_overrides

    sweeps: list[str] = []
    rest: list[str] = []
    for arg in args:
        try:
            is_sweep = "=" in arg and not arg.startswith("-") and bool(split_sweep_overrides([arg])[1])
        except ConfigError:
            is_sweep = False  # Hydra reports it
        (sweeps if is_sweep else rest).append(arg)
    return sweeps, rest


def split_flags(name: str, args: list[str]) -> tuple[dict[str, object], list[str]]:
    """Take command ``name``'s own flags out of ``args``: (their values, the Hydra arguments).

    :raises SystemExit: a flag that needs a value has none.
    """
    flags = FLAGS.get(name, {})
    options: dict[str, object] = {}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if flag not in flags:
            rest.append(arg)
            continue
        key = flag.lstrip("-").replace("-", "_")
        if flags[flag]:
            value = value if eq else next(it, "")
            if not value or value.startswith("-"):
                print(f"eatbench {name}: {flag} needs a value", file=sys.stderr)
                raise SystemExit(2)
            options[key] = value
        else:
            options[key] = True
    return options, rest


COMPLETION_SCRIPT = """\
# eatbench tab completion (bash): eval "$(eatbench run -sc install=bash)"
_eatbench_completion()
{
    local words=($COMP_LINE)
    local word=${COMP_WORDS[COMP_CWORD]}
    if (( COMP_CWORD <= 1 )); then
        COMPREPLY=($(compgen -W "%(commands)s" -- "$word"))
        return
    fi
    local choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE ${words[0]} ${words[1]} -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
COMP_WORDBREAKS=$COMP_WORDBREAKS complete -o nospace -o default -F _eatbench_completion eatbench
"""


def _shell_completion(name: str, rest: list[str]) -> list[str] | None:
    """Hydra's ``-sc`` for a subcommand: ``install=bash`` prints a script that completes
    ``eatbench <command> ...`` (Hydra's own registers a nonexistent ``eatbench-<command>``);
    ``query=bash`` drops the command word from ``COMP_LINE`` so Hydra completes the overrides.
    Returns the arguments for Hydra, or ``None`` when the script was printed."""
    import os

    flag = "-sc" if "-sc" in rest else "--shell-completion" if "--shell-completion" in rest else None
    if flag is None or rest.index(flag) + 1 >= len(rest):
        return rest
    action = rest[rest.index(flag) + 1]
    if action in ("install=bash", "install"):
        print(COMPLETION_SCRIPT % {"commands": " ".join(COMMANDS)})
        return None
    if action.startswith("uninstall"):
        print("complete -r eatbench 2>/dev/null; unset -f _eatbench_completion")
        return None
    if action.startswith("query") and "COMP_LINE" in os.environ:
        words = os.environ["COMP_LINE"].split(" ")
        if len(words) > 1 and words[1] == name:  # "eatbench run k=v" -> "eatbench k=v"
            os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
    return rest


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
    head = f"[eatbench] {cfg.experiment} scheduler={cfg.scheduler.name} seed={cfg.seed}{where}"
    # one write per job, so parallel launcher workers (joblib) never interleave their blocks
    sys.stdout.write(f"{head}\n{_format_summary(result.summary)}\n")
    sys.stdout.flush()
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
    options, rest = split_flags(name, rest)
    OPTIONS.clear()
    OPTIONS.update(options)
    if name in TAKES_SWEEPS:
        OPTIONS["sweeps"], rest = _take_sweeps(rest)
    rest = _shell_completion(name, rest)
    if rest is None:
        return 0
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
