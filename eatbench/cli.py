"""The ``eatbench`` command: ``eatbench <command> [hydra overrides...]``.

Each command is a Hydra app over the package's configs, ``pkg://eatbench.conf`` (so ``-m``
multiruns, ``--cfg job``, launcher overrides and ``hydra.searchpath=[file://DIR]`` for configs
of one's own work as in any Hydra app).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from eatbench.core.commands import CHECKS, COMMANDS, FLAGS, OPTIONS, TAKES_SWEEPS, command  # noqa: F401  (re-exported)
from eatbench.core.config import ConfigError, ExperimentConfig, register_configs, to_experiment_config
from eatbench.experiment.compose import conf_dir, config_path, group_options, searchpath_overrides

USAGE = """usage: eatbench <command> [key=value ...] [-m]

commands:
  run      run one experiment (or a sweep with -m) and write its result files
{extra}
examples:
  eatbench run scheduler=greedy cluster=hetero8 workload.rate=0.05 seed=3
  eatbench run -m +experiment=paper_rates                    # the paper's sweep (joblib, 2 workers)
  eatbench run -m +experiment=paper_rates scheduler=mine     # add a scheduler to its results
  eatbench run hydra.searchpath=[file:///abs/dir] scheduler=mine   # dir/scheduler/mine.yaml (_target_: pkg.mod.Cls)
  eatbench report                                            # reports/results -> reports/REPORT.md
  eatbench run -m +experiment=paper_rates hydra/launcher=local_ray   # Ray (pip install -e ".[ray]")

output: result files in output.root (default reports/results), the report beside them (reports/).
tab completion (bash): eval "$(eatbench run -sc install=bash)"
"""

#: how many composed variants of a sweep (-m) are checked up front at most
MAX_PRECHECKS = 32


def _take_sweeps(args: list[str]) -> tuple[list[str], list[str]]:
    """(sweep overrides, the other arguments) of ``args``; flags and malformed ones stay."""
    from eatbench.experiment.compose import split_sweep_overrides

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


def check_run_inputs(cfg: ExperimentConfig) -> None:
    """Everything a run reads before it starts, without starting a backend: the cluster,
    the latency profile, the quality curve, the workload (its trace and prompts), the
    scheduler's parameters and its checkpoint file."""
    from eatbench.engine.cluster import Cluster
    from eatbench.engine.profiles import QUALITY_CURVES
    from eatbench.engine.workload import generate_tasks
    from eatbench.experiment.runner import build_profile, create_scheduler, k_options, slo_reference_kind
    from eatbench.schedulers import SCHEDULERS, learned_names

    cluster = Cluster.from_config(cfg.cluster)
    profile = build_profile(cfg, cluster)
    QUALITY_CURVES.create(cfg.quality.name, path=cfg.quality.path).table(cfg.engine.max_steps)
    ref = slo_reference_kind(cluster.kind_of)
    w = cfg.workload

    def isolated(k: int, res: int) -> float:
        return profile.duration([ref] * k, w.model, res, w.slo_steps, False)

    tasks = generate_tasks(w, cfg.seed, isolated, max_k=len(cluster))
    ks = k_options(cfg, len(cluster))
    for model, res, k in {(t.model, t.resolution, t.k) for t in tasks}:  # a trace's own models and sizes
        profile.check(cluster.kind_of, model, [res], [k] if k else ks)
    create_scheduler(cfg)
    cls = SCHEDULERS.get_class(cfg.scheduler.name)
    if cfg.scheduler.checkpoint not in (None, "auto") and not hasattr(cls, "load_checkpoint"):
        raise ConfigError(
            f"checkpoint={cfg.scheduler.checkpoint!r} is invalid with scheduler={cfg.scheduler.name!r} (it learns "
            f"nothing); allowed: no checkpoint, or a learned scheduler ({', '.join(learned_names())})"
        )
    path = cls.checkpoint_file(cfg)
    if path and not Path(path).is_file():
        if cfg.scheduler.checkpoint == "auto":
            shipped = sorted(p.stem for p in Path(path).parent.glob(f"{cfg.scheduler.name}-*.pt"))
            raise ConfigError(
                f"checkpoint=auto is invalid for cluster {cfg.cluster.name!r}: no shipped {cfg.scheduler.name} "
                f"checkpoint for it; allowed: a cluster with one ({', '.join(shipped) or 'none'}), or "
                f"checkpoint=<run dir>/policy.pt after `eatbench train scheduler={cfg.scheduler.name} "
                f"cluster={cfg.cluster.name}`, or a size-agnostic scheduler (eat_set, dsac_set, sac_set, "
                "eat_nodiff_set) once its checkpoint is trained"
            )
        raise ConfigError(f"scheduler.checkpoint={path!r} is invalid; allowed: an existing policy file (.pt)")
    if cfg.output.wandb != "disabled":  # only `eatbench report` logs to W&B
        raise ConfigError(
            f"output.wandb={cfg.output.wandb!r} is invalid for `eatbench run` (it logs nothing to W&B); allowed: "
            "disabled (log finished runs with `eatbench report output.wandb=offline|online`)"
        )
    root = Path(cfg.output.root)
    if cfg.output.write and root.exists() and not root.is_dir():
        raise ConfigError(f"output.root={cfg.output.root!r} is invalid (it is a file); allowed: a folder path")


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


@command("run", "run one experiment (or a sweep with -m) and write its result files", check=check_run_inputs)
def run_command(raw: DictConfig) -> object:
    from eatbench.experiment.runner import run_dir, run_experiment

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


def _variants(overrides: list[str]) -> list[list[str]]:
    """Override lists to check up front: the first value of every sweep (``a=1,2``), then
    each other value of each sweep once (at most ``MAX_PRECHECKS``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices: list[list[str]] = []
    for text, o in zip(overrides, parsed, strict=True):
        if o.is_sweep_override():
            key = text.split("=", 1)[0]
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()] or [text])
        else:
            choices.append([text])
    base = [c[0] for c in choices]
    out = [base]
    for i, c in enumerate(choices):
        for v in c[1:]:
            out.append([*base[:i], v, *base[i + 1 :]])
    return out[:MAX_PRECHECKS]


def precheck(name: str, args: list[str]) -> Path | None:
    """Compose and validate the config of ``eatbench <name> args`` (each value of a sweep)
    and run the command's check (commands registered with one: run, train), before Hydra
    creates any folder. Raises ``ConfigError``. Returns the output root (``None`` when
    nothing was checked: no check, or Hydra flags left to Hydra)."""
    import yaml

    from eatbench.experiment.compose import compose_experiment

    check = CHECKS.get(name)
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    if check is None or any(a.startswith("-") or "=" not in a for a in overrides):
        return None  # a command with its own arguments; --cfg, --help, --info, -cp ...: Hydra's own
    # Hydra's own settings (launcher, sweeper, run dir) do not change the experiment; its
    # search path does (a scheduler/mine.yaml in a folder of one's own)
    searchpath = searchpath_overrides(overrides)
    overrides = [a for a in overrides if not a.lstrip("+~").startswith("hydra")]
    try:
        variants = _variants(overrides)
    except Exception as err:  # the override grammar's errors
        raise ConfigError(
            f"override is invalid ({' '.join(str(err).split())}); allowed: key=value in Hydra's override grammar "
            "(https://hydra.cc/docs/advanced/override_grammar/basic/)"
        ) from err
    root = None
    for variant in variants:
        try:
            cfg = compose_experiment([*searchpath, *variant])
        except yaml.YAMLError as err:  # a config file with a syntax error: yaml names the file and line
            raise ConfigError(_yaml_message(err)) from err
        except ConfigError as err:
            raise ConfigError(_explain_compose_error(err)) from err
        root = root or Path(cfg.output.root)
        check(cfg)
    return root


_TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "String": "a string"}


def _explain_compose_error(err: ConfigError) -> str:
    """Hydra's and OmegaConf's composition errors as one ``field=value is invalid; allowed: ...`` line."""
    import re

    cause = err.__cause__
    msg = str(cause) if cause is not None else str(err)
    if m := re.search(r"Could not override '([^']+)'", msg):
        key = m.group(1)
        group = conf_dir() / key
        if group.is_dir():  # a config group that the defaults list does not select
            options = ", ".join(group_options(key))
            return f"{key}=... is invalid: {key} is a config group added with +; allowed: +{key}=<{options}>"
        parent, _, leaf = key.rpartition(".")
        node: object = ExperimentConfig()
        for part in [p for p in parent.split(".") if p]:
            node = getattr(node, part, None)
        if isinstance(node, dict) or not hasattr(node, "__dataclass_fields__"):  # free-form (scheduler.params)
            return (
                f"unknown config key {key!r}; allowed: keys the chosen {parent.split('.')[0]} config sets "
                f"under {parent}, or a new one added with +{key}=... (then checked by the {parent.split('.')[0]})"
            )
        fields = ", ".join(node.__dataclass_fields__)
        return f"unknown config key {key!r}; allowed here: {fields}"
    if m := re.search(r"Could not find '([^']+)/([^'/]+)'", msg):
        group, choice = m.group(1), m.group(2)
        tail = msg.split("Available options", 1)[1] if "Available options" in msg else ""
        options = re.findall(r"^\t([^\s=]+)$", tail.split("Config search path", 1)[0], flags=re.M)
        return f"{group}={choice!r} is invalid; allowed: {', '.join(options) or '(no file in conf/' + group + ')'}"
    if m := re.search(r"Error merging override ([^=\s]+)=(.*)", msg):
        inner = cause.__cause__ if cause is not None else None
        detail = str(inner).splitlines()[0] if inner is not None else ""
        t = re.search(r"converted to (\w+)", detail)
        allowed = _TYPE_WORDS.get(t.group(1), t.group(1)) if t else detail or "a value of the field's type"
        return f"{m.group(1)}={m.group(2)!r} is invalid; allowed: {allowed}"
    if type(cause).__name__ == "OverrideParseException":
        return (
            f"override is invalid ({' '.join(str(cause).split())}); allowed: key=value in Hydra's override grammar "
            "(https://hydra.cc/docs/advanced/override_grammar/basic/)"
        )
    return " ".join(str(err).split())


def _yaml_message(err: Exception) -> str:
    """``config file <path> line L column C: ... is invalid; allowed: valid YAML``."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = " ".join(str(getattr(err, "problem", "") or err).split())
    context = getattr(err, "context", None)
    what = f"{context}: {problem}" if context else problem
    cmark = getattr(err, "context_mark", None)
    if cmark is not None and mark is not None and cmark.line != mark.line:
        what += f"; it began at line {cmark.line + 1} column {cmark.column + 1}"
    if mark is None:
        return f"a config file is invalid YAML ({what}); allowed: valid YAML"
    return (
        f"config file {mark.name} line {mark.line + 1} column {mark.column + 1}: YAML syntax ({what}) "
        "is invalid; allowed: valid YAML (see https://yaml.org/spec/)"
    )


def _remove_new_empty_dirs(created: list[Path]) -> None:
    """Remove the Hydra output folder of a failed job when it holds only Hydra's log, and
    the folders in ``created`` (did not exist before this command) if they are empty."""
    try:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
        if out.is_dir() and all(p.is_file() and p.suffix == ".log" for p in out.iterdir()):
            for p in out.iterdir():
                p.unlink()
            out.rmdir()
            parent = out.parent
            if parent.name.isdigit() or parent.name[:4].isdigit():  # a multirun's dated folder
                if not any(parent.iterdir()):
                    parent.rmdir()
    except Exception:  # noqa: BLE001 - cleaning up after an error must not hide the error
        pass
    for d in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Run ``eatbench <command> [overrides]``; returns the exit status (0 ok, 2 bad input,
    130 interrupted)."""
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
    try:
        primary = config_path()
        root = precheck(name, rest)
    except ConfigError as err:
        print(f"eatbench {name}: config error: {err}", file=sys.stderr)
        return 2
    watch = [root, root / ".hydra", root / ".multirun"] if root is not None else []
    created = [d for d in watch if not d.exists()]

    def task(raw: DictConfig) -> object:
        try:
            return fn(raw)
        except ConfigError as err:
            print(f"eatbench {name}: config error: {err}", file=sys.stderr)
            _remove_new_empty_dirs(created)
            sys.exit(2)
        except KeyboardInterrupt as err:
            if not getattr(err, "reported", False):  # a command that can resume has said how already
                print(f"eatbench {name}: interrupted", file=sys.stderr)
            sys.exit(130)  # as a shell reports Ctrl-C

    app = hydra.main(config_path=primary, config_name="config", version_base="1.3")(task)
    saved_argv = sys.argv
    sys.argv = [f"eatbench-{name}", *rest]
    try:
        app()
    except KeyboardInterrupt:
        print(f"eatbench {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    # run the imported module's main(): commands register on ``eatbench.cli``, not ``__main__``
    from eatbench.cli import main as _main

    sys.exit(_main())
