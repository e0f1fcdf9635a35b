"""The ``blitz`` command line (typer)."""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import json
import logging
import os
import signal
import sys
import warnings
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table
from typer import rich_utils
from typer.core import TyperGroup

from blitz import __version__
from blitz.errors import BlitzError, ConfigError, Interrupted, UsageError, debug_requested
from blitz.kinds import KINDS
from blitz.launch import GLOBAL_OPTIONS_WITH_VALUES, environ_set
from blitz.memory import keep_freed_memory
from blitz.notices import print_warning
from blitz.stopping import INTERRUPTED, ctrl_c_pressed, remember_ctrl_c

if TYPE_CHECKING:
    from blitz.catalog import Catalog
    from blitz.launch import LaunchSpec
    from blitz.resolve import ResolvedConfig


def one_line_usage_error(error: Any) -> None:
    """A command-line parsing error (a bad flag or value) as one line, like blitz's own errors.

    Replaces typer's rendering (usage, a hint and the message in a framed box); the exit code
    stays click's 2.
    """
    if type(error).__name__ == "NoArgsIsHelpError":  # typer shows the help instead
        return
    message = " ".join(error.format_message().split())
    if not message.endswith((".", "?", "!")):
        message += "."
    ctx = getattr(error, "ctx", None)
    hint = f" See '{ctx.command_path} --help'." if ctx is not None else ""
    if getattr(error, "option_name", None) in GLOBAL_OPTIONS_WITH_VALUES and ctx is not None and ctx.parent is not None:
        command = ctx.command_path.partition(" ")[2]  # 'list models', not 'models'
        hint = f" {error.option_name} goes before the command: 'blitz {error.option_name} ... {command} ...'."
    err_console.print(f"[bold red]Error:[/] {escape(message)}{hint}", highlight=False, soft_wrap=True)


def _untyped_flags(shown: Callable[..., Any]) -> Callable[..., Any]:
    """typer 0.2x writes a flag's type in --help (``--flip --no-flip <bool>``), as if it took a
    value: ``--flip true`` is then an error. Flags get no type column; other options keep theirs."""
    return lambda self, ctx: None if getattr(self, "is_flag", False) and self.metavar is None else shown(self, ctx)


def _untyped_named_arguments(shown: Callable[..., Any]) -> Callable[..., Any]:
    """An argument named by its metavar (``RUN``) shows no Python type (``<str>``, ``<list[Path]>``)."""
    return lambda self, ctx: None if self.metavar is not None else shown(self, ctx)


@contextlib.contextmanager
def blitz_rendering() -> Iterator[None]:
    """typer renders blitz's help and command-line errors as blitz words them, inside; as before
    after. typer has no settings for these: its functions are swapped for the call and put back,
    so another typer app in the same process (a user's own) keeps its rendering."""
    swaps = [(rich_utils, "rich_format_error", lambda shown: one_line_usage_error)]
    for cls, wrap in ((getattr(typer.core, "TyperOption", None), _untyped_flags),
                      (getattr(typer.core, "TyperArgument", None), _untyped_named_arguments)):
        if callable(getattr(cls, "display_type_rich", None)):  # another typer: its own rendering stays
            swaps.append((cls, "display_type_rich", wrap))
    saved = [(owner, name, owner.__dict__.get(name, _INHERITED) if isinstance(owner, type) else getattr(owner, name))
             for owner, name, _ in swaps]
    for owner, name, wrap in swaps:
        setattr(owner, name, wrap(getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, value in saved:
            if value is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


_INHERITED = object()  # a class attribute that came from a base class: deleted to put it back


class BlitzGroup(TyperGroup):
    """blitz's command group: runs inside :func:`blitz_rendering`."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        with blitz_rendering():
            return super().main(*args, **kwargs)


app = typer.Typer(
    cls=BlitzGroup,
    name="blitz",
    help="Train image classifiers with PyTorch: swap models, data and hardware with a flag.",
    epilog="Start with: blitz run --recipe tutorial --data-root DIR (DIR holds cifar-10-batches-py), then "
    "blitz runs, blitz show latest, blitz predict latest IMAGE. 'blitz list recipes' lists the ready-made setups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h as most CLIs take it; subcommands inherit it
    add_completion=False,
)
list_app = typer.Typer(help="List registered components of one kind.", no_args_is_help=True)
data_app = typer.Typer(help="Work with data sources.", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")

console = Console(emoji=False)  # ":x:" in a name or path is text, not an emoji
err_console = Console(stderr=True, emoji=False)


_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn BlitzError into one red line on stderr and its exit code (traceback with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            debug = _state["debug"] or debug_requested()
            if ctrl_c_pressed() and not debug and not isinstance(exc, Interrupted):
                return interrupted()  # an import swallowed a Ctrl-C: this error is what followed it
            if debug or not isinstance(exc, BlitzError):
                raise
            # A stop is agreed by every rank of a ddp job at the same step, and some errors are
            # raised alike by every rank: rank 0 tells them once (and the launcher, which has
            # nothing to add, not at all).
            if str(exc) and not ((isinstance(exc, Interrupted) or exc.every_rank) and os.environ.get("RANK", "0") != "0"):
                text = escape(str(exc))  # a stop the user asked for is no error: said plainly
                err_console.print(f"[bold yellow]{text}[/]" if isinstance(exc, Interrupted) else f"[bold red]Error:[/] {text}",
                                  highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C before training set its own handler, or a second one
            if _state["debug"] or debug_requested():
                raise
            return interrupted()

    def interrupted() -> NoReturn:
        if os.environ.get("RANK", "0") == "0":  # every rank of a ddp job got it: say it once
            err_console.print(INTERRUPTED_RUN if func.__name__ == "run" else INTERRUPTED, highlight=False)
        raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


INTERRUPTED_RUN = "Interrupted by Ctrl-C. A run that had started keeps the last checkpoint it saved, if any: see 'blitz runs'."


def version_callback(value: bool) -> None:
    if value:
        console.print(f"blitz {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    plugins_dir: Annotated[Optional[list[str]], typer.Option(
        "--plugins-dir", metavar="DIR",
        help="Also load each .py file in DIR as a plugin, without installing it (repeatable; "
        "the same as BLITZ_PLUGINS_DIR).",
    )] = None,
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = None,
) -> None:
    _state["debug"] = debug
    keep_freed_memory()  # this process is blitz's: steps stop page-faulting (blitz.memory)
    if plugins_dir:
        from blitz.plugin_host import PLUGINS_DIR_ENV, reset_host

        if not all(folder.strip() for folder in plugins_dir):  # an unset "$VARIABLE", most likely
            err_console.print("[bold red]Error:[/] --plugins-dir needs a folder, and was given an empty value.")
            raise typer.Exit(UsageError.exit_code)
        # Through the environment, so the processes a ddp run starts load the same files.
        given = [str(Path(folder).expanduser().absolute()) for folder in plugins_dir]
        earlier = os.environ.get(PLUGINS_DIR_ENV)
        # for this command only (the Python API and tests go on): put back when it ends, then
        # the plugins reloaded as the next command asks
        ctx.call_on_close(reset_host)
        ctx.with_resource(environ_set({PLUGINS_DIR_ENV: os.pathsep.join([*given, *([earlier] if earlier else [])])}))
        reset_host()


# Spellings TOML refuses but a user means as a boolean or number: Python's True/False, and a
# decimal without its leading zero. Anything else TOML refuses stays a string (a name, a path).
_PYTHON_BOOLEANS = {"True": True, "False": False}


def parse_value(raw: str) -> Any:
    """One ``--*-arg`` value: TOML (numbers, booleans, lists, quoted strings), else the text itself."""
    text = raw.strip()
    if text in _PYTHON_BOOLEANS:
        return _PYTHON_BOOLEANS[text]
    if text.startswith((".", "-.")):
        text = text.replace(".", "0.", 1)  # ".5" -> "0.5", "-.5" -> "-0.5"
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    # A date or time is TOML, but no option takes one: keep the text as typed.
    return raw if isinstance(value, (datetime.date, datetime.time)) else value


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are read as TOML (numbers, booleans, lists) or else strings.
    A key given twice is refused: which one would count is anyone's guess."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{item}'.")
        key = key.strip()
        if key in result:
            raise ConfigError(f"{flag} {key} is given twice; give it once.")
        result[key] = parse_value(raw)
    return result


def parse_logger_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--logger-arg LOGGER.KEY=VALUE`` as ``{logger: {key: value}}`` (a logger's name may hold
    dots: the key is what follows the last one)."""
    by_logger: dict[str, dict[str, Any]] = {}
    for item in items or []:
        target, sep, raw = item.partition("=")
        name, dot, key = target.strip().rpartition(".")
        name, key = name.strip(), key.strip()
        if not sep or not dot or not name or not key:
            raise ConfigError(f"--logger-arg expects LOGGER.KEY=VALUE (tensorboard.flush_secs=10), got '{item}'.")
        options = by_logger.setdefault(name, {})
        if key in options:
            raise ConfigError(f"--logger-arg {name}.{key} is given twice; give it once.")
        options[key] = parse_value(raw)
    return by_logger


def parse_floats(text: str | None, flag: str) -> list[float] | None:
    """``0.5,0.5,0.5`` as a list of floats."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects numbers separated by commas, got '{text}'.") from None


def parse_thread_count(text: str | None) -> int | str | None:
    """``--cpu-threads``: a whole number of threads, or ``auto``."""
    from blitz.config import CPU_THREADS_HINT, MAX_CPU_THREADS

    if text is None:
        return None
    value = text.strip().lower()
    if value == "auto":
        return value
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_CPU_THREADS:
        return int(value)
    raise ConfigError(f"--cpu-threads '{text}': {CPU_THREADS_HINT}.")


RUN_HELP = "Train a model. Flags override --config, which overrides --recipe, which overrides defaults."


def default(field: str) -> str:
    """`` (default: X)`` for a run option's help: RunConfig's value, used when no flag, config
    file or recipe sets it (the option itself defaults to None, to know whether it was given)."""
    from blitz.config import AugmentConfig, RunConfig

    model, name = (AugmentConfig, field.split(".")[1]) if field.startswith("augment.") else (RunConfig, field)
    return f" (default: {model.model_fields[name].default})"


# `blitz run --help` in panels, the way a user looks for an option, not one list of ~55
_SETUP, _DATA, _TRAINING = "Setup and output", "Model and data", "Training"
_AUGMENT, _HARDWARE, _DDP = "Augmentation", "Hardware and speed", "Several processes (--strategy ddp)"


@app.command(help=RUN_HELP)
@reports_errors
def run(
    recipe: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_SETUP, help="A named setup from registry.toml or a plugin (see 'blitz list recipes').")] = None,
    config: Annotated[Optional[str], typer.Option("--config", metavar="FILE", rich_help_panel=_SETUP, help="A TOML config file (keys as in 'blitz run --print-config').")] = None,
    model: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_DATA, help="Model name (see 'blitz list models')." + default("model"))] = None,
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_DATA, help="Data source (see 'blitz list datasets')." + default("dataset"))] = None,
    optimizer: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_TRAINING, help="Optimizer (see 'blitz list optimizers')." + default("optimizer"))] = None,
    schedule: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_TRAINING, help="Learning-rate schedule (see 'blitz list schedules')." + default("schedule"))] = None,
    strategy: Annotated[Optional[str], typer.Option(metavar="NAME", rich_help_panel=_HARDWARE, help="Device strategy: auto, cpu, cuda, dataparallel, ddp, ..." + default("strategy"))] = None,
    device: Annotated[Optional[str], typer.Option(rich_help_panel=_HARDWARE, help="Device for cpu/cuda strategies, e.g. cuda:1.")] = None,
    epochs: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Passes over the training set." + default("epochs"))] = None,
    batch_size: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Examples per step (per process)." + default("batch_size"))] = None,
    eval_batch_size: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Examples per evaluation batch." + default("eval_batch_size"))] = None,
    lr: Annotated[Optional[float], typer.Option(rich_help_panel=_TRAINING, help="Learning rate (default: the optimizer's own; sgd 0.001, muon 0.02).")] = None,
    momentum: Annotated[Optional[float], typer.Option(rich_help_panel=_TRAINING, help="SGD momentum / Adam beta1 / Muon momentum (default: the optimizer's own; sgd 0.9, muon 0.95).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(rich_help_panel=_TRAINING, help="Weight decay (default: the optimizer's own; 0, adamw 0.01).")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(rich_help_panel=_TRAINING, help="Label smoothing of the loss." + default("label_smoothing"))] = None,
    seed: Annotated[Optional[int], typer.Option(rich_help_panel=_SETUP, help="Random seed." + default("seed"))] = None,
    data_root: Annotated[Optional[str], typer.Option(metavar="DIR", rich_help_panel=_DATA, help="Data folder (default $BLITZ_DATA_ROOT or ./data).")] = None,
    download: Annotated[Optional[bool], typer.Option("--download/--no-download", rich_help_panel=_DATA, help="Download the data if missing (needs a network).")] = None,
    out: Annotated[Optional[str], typer.Option(metavar="DIR", rich_help_panel=_SETUP, help="Run directory (default runs/<time>-<name>-<dataset>).")] = None,
    resume: Annotated[Optional[str], typer.Option(metavar="RUN", rich_help_panel=_SETUP, help="Continue a run (its directory, name, the start of a name, or 'latest') from its last checkpoint.")] = None,
    precision: Annotated[Optional[str], typer.Option(metavar="32|bf16|16-mixed", rich_help_panel=_HARDWARE, help="32, bf16 or 16-mixed." + default("precision"))] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", rich_help_panel=_HARDWARE, help="Channels-last memory format.")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", rich_help_panel=_HARDWARE, help="torch.compile the model.")] = None,
    cuda_graphs: Annotated[Optional[bool], typer.Option("--cuda-graphs/--no-cuda-graphs", rich_help_panel=_HARDWARE, help="Replay each training step's forward and backward as CUDA graphs, without compiling (one GPU).")] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--no-deterministic", rich_help_panel=_HARDWARE, help="Deterministic kernels (bit-identical reruns).")] = None,
    shuffle: Annotated[Optional[bool], typer.Option("--shuffle/--no-shuffle", rich_help_panel=_AUGMENT, help="Reshuffle the training set each epoch.")] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", rich_help_panel=_AUGMENT, help="Random horizontal flips.")] = None,
    flip_mode: Annotated[Optional[str], typer.Option(metavar="random|alternate", rich_help_panel=_AUGMENT, help="Flip scheme: random, or alternate (random in epoch 1, then each image the other way round every epoch)." + default("augment.flip_mode"))] = None,
    translate: Annotated[Optional[int], typer.Option(rich_help_panel=_AUGMENT, help="Random translation, pixels." + default("augment.translate"))] = None,
    cutout: Annotated[Optional[int], typer.Option(rich_help_panel=_AUGMENT, help="Cutout square side, pixels (0 = off)." + default("augment.cutout"))] = None,
    limit_steps: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Stop each epoch after this many steps (quick checks).")] = None,
    compile_mode: Annotated[Optional[str], typer.Option(metavar="MODE", rich_help_panel=_HARDWARE, help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune.")] = None,
    cpu_threads: Annotated[Optional[str], typer.Option(metavar="N|auto", rich_help_panel=_HARDWARE, help="PyTorch CPU threads, 1-1024, or 'auto' (CPU runs: training steps on 1 or 2 threads, whichever blitz times as faster; evaluation keeps PyTorch's count). Default: PyTorch's choice, except 1 for training steps at batch sizes up to 16 unless OMP_NUM_THREADS is set.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Epochs between test evaluations (0 = only at the end)." + default("eval_every"))] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Epochs between checkpoints (0 = only at the end and when stopped)." + default("checkpoint_every"))] = None,
    num_workers: Annotated[Optional[int], typer.Option(rich_help_panel=_DATA, help="DataLoader worker processes (Dataset sources)." + default("num_workers"))] = None,
    mean: Annotated[Optional[str], typer.Option(metavar="M,M,M", rich_help_panel=_DATA, help="Override the data's per-channel mean, e.g. 0.5,0.5,0.5.")] = None,
    std: Annotated[Optional[str], typer.Option(metavar="S,S,S", rich_help_panel=_DATA, help="Override the data's per-channel std, e.g. 0.5,0.5,0.5.")] = None,
    log_every: Annotated[Optional[int], typer.Option(rich_help_panel=_TRAINING, help="Steps between progress updates." + default("log_every"))] = None,
    logger: Annotated[Optional[list[str]], typer.Option("--logger", metavar="NAME", rich_help_panel=_TRAINING, help="Another metric logger besides jsonl (repeatable), e.g. tensorboard.")] = None,
    logger_arg: Annotated[Optional[list[str]], typer.Option("--logger-arg", metavar="LOGGER.KEY=VALUE", rich_help_panel=_TRAINING, help="An option of a metric logger, e.g. tensorboard.flush_secs=10 (repeatable).")] = None,
    model_arg: Annotated[Optional[list[str]], typer.Option("--model-arg", metavar="KEY=VALUE", rich_help_panel=_DATA, help="KEY=VALUE for the model factory (repeatable).")] = None,
    dataset_arg: Annotated[Optional[list[str]], typer.Option("--dataset-arg", metavar="KEY=VALUE", rich_help_panel=_DATA, help="KEY=VALUE for the data source (repeatable).")] = None,
    optimizer_arg: Annotated[Optional[list[str]], typer.Option("--optimizer-arg", metavar="KEY=VALUE", rich_help_panel=_TRAINING, help="KEY=VALUE for the optimizer (repeatable).")] = None,
    schedule_arg: Annotated[Optional[list[str]], typer.Option("--schedule-arg", metavar="KEY=VALUE", rich_help_panel=_TRAINING, help="KEY=VALUE for the schedule (repeatable).")] = None,
    nproc_per_node: Annotated[Optional[int], typer.Option(rich_help_panel=_DDP, help="ddp: processes per machine (blitz starts torchrun).")] = None,
    nnodes: Annotated[Optional[int], typer.Option(rich_help_panel=_DDP, help="ddp: number of machines.")] = None,
    node_rank: Annotated[Optional[int], typer.Option(rich_help_panel=_DDP, help="ddp: this machine's rank.")] = None,
    rdzv_endpoint: Annotated[Optional[str], typer.Option(metavar="HOST[:PORT]", rich_help_panel=_DDP, help="ddp: rendezvous HOST[:PORT] for several machines.")] = None,
    rdzv_backend: Annotated[Optional[str], typer.Option(rich_help_panel=_DDP, help="ddp: rendezvous backend (default c10d).")] = None,
    rdzv_id: Annotated[Optional[str], typer.Option(rich_help_panel=_DDP, help="ddp: job id shared by all machines (default blitz).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", rich_help_panel=_SETUP, help="Show the resolved config and where each value came from, then exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", hidden=True)] = False,  # 'blitz --debug run' typed the other way round
) -> None:
    _state["debug"] = _state["debug"] or debug
    from blitz.resolve import CLIOverrides, resolve_config, unused_data_root

    for flag, given in (("--recipe", recipe), ("--resume", resume), ("--device", device), ("--precision", precision),
                        ("--config", config), ("--data-root", data_root), ("--out", out)):
        if given is not None and not given.strip():  # an unset "$VARIABLE", most likely: not the current folder
            raise UsageError(f"{flag} was given an empty value; give a value or leave the flag out.")
    config_path, data_root_path, out_path = (Path(p) if p is not None else None for p in (config, data_root, out))
    threads = parse_thread_count(cpu_threads)

    flags: dict[str, Any] = {
        "model": model, "dataset": dataset, "optimizer": optimizer, "schedule": schedule,
        "strategy": strategy, "device": device, "epochs": epochs, "batch_size": batch_size,
        "eval_batch_size": eval_batch_size, "lr": lr, "momentum": momentum,
        "weight_decay": weight_decay, "label_smoothing": label_smoothing, "seed": seed,
        "data_root": data_root_path, "download": download, "out": out_path, "precision": precision,
        "channels_last": channels_last, "compile": compile, "cuda_graphs": cuda_graphs, "deterministic": deterministic,
        "shuffle": shuffle, "limit_steps": limit_steps, "log_every": log_every,
        "loggers": list(dict.fromkeys(["jsonl", *logger])) if logger else None,
        "eval_every": eval_every, "checkpoint_every": checkpoint_every, "num_workers": num_workers, "cpu_threads": threads,
        "compile_mode": compile_mode,
        "mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std"),
    }
    augment = {"flip": flip, "flip_mode": flip_mode, "translate": translate, "cutout": cutout}
    overrides = CLIOverrides(
        values={k: v for k, v in flags.items() if v is not None},
        augment={k: v for k, v in augment.items() if v is not None},
        model_args=parse_assignments(model_arg, "--model-arg"),
        dataset_args=parse_assignments(dataset_arg, "--dataset-arg"),
        optimizer_args=parse_assignments(optimizer_arg, "--optimizer-arg"),
        schedule_args=parse_assignments(schedule_arg, "--schedule-arg"),
        logger_args=parse_logger_options(logger_arg),
    )
    resolved = resolve_config(recipe=recipe, config_file=config_path, overrides=overrides, resume=resume)

    from blitz.launch import check_ddp_device, launched_by_torchrun

    wants_launch = any(v is not None for v in (nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_backend, rdzv_id))
    if wants_launch and resolved.config.strategy != "ddp":
        raise UsageError(
            "--nproc-per-node, --nnodes, --node-rank, --rdzv-endpoint, --rdzv-backend and --rdzv-id go with --strategy ddp."
        )
    if resolved.config.strategy == "ddp":
        check_ddp_device(resolved.config.device)  # before starting processes that would each refuse it
    launching = resolved.config.strategy == "ddp" and not launched_by_torchrun()
    if print_config or launching:  # where no Trainer in this process checks them first (it does below)
        from blitz.build import check_options, resolve_components

        check_options(resolve_components(resolved.config), resolved.config)  # before processes start
    if print_config:  # after the checks of the command line as a whole: what it shows would run
        show_config(resolved.config, resolved.provenance)
        return
    if launching:
        from blitz.launch import LaunchSpec

        launch_ddp(resolved, LaunchSpec(
            nproc_per_node=nproc_per_node, nnodes=1 if nnodes is None else nnodes,
            node_rank=0 if node_rank is None else node_rank, rdzv_endpoint=rdzv_endpoint,
            rdzv_backend=rdzv_backend or "c10d", rdzv_id=rdzv_id or "blitz",
        ))
        return
    unused = unused_data_root(resolved.config, resolved.provenance)
    if unused:  # here, where a process trains: under ddp rank 0 alone says it (the launcher does not)
        warnings.warn(unused, stacklevel=1)
    train_and_report(resolved)


def launch_ddp(resolved: ResolvedConfig, spec: LaunchSpec) -> None:
    """Start the processes of a ddp run through torchrun, after the checks that need none of them."""
    import dataclasses

    from blitz.launch import argv_after_run, launch, saved_process_count, strip_launch_options
    from blitz.runs import check_out_dir

    if resolved.resume_checkpoint is not None:
        from blitz.resume import check_epochs_cover, check_process_count, check_resumable, load_resumable, resume_position
        from blitz.runs import lock_run, release_run

        # The checks each process would make, here once, before any starts.
        meta = load_resumable(resolved.resume_checkpoint).meta
        check_resumable(meta, resolved.config.epochs)
        if isinstance(meta.get("steps_per_epoch"), int):  # (older checkpoints: each process checks it)
            check_epochs_cover(meta, resolved.config.epochs, *resume_position(meta, meta["steps_per_epoch"]))
        # not being trained right now (rank 0 takes the lock again)
        release_run(lock_run(resolved.resume_checkpoint.parent.parent))
        if spec.nproc_per_node is None and spec.nnodes == 1:  # as many processes as the run had
            spec = dataclasses.replace(spec, nproc_per_node=saved_process_count(meta))
            if spec.nproc_per_node > 1:
                console.print(f"Resuming with --nproc-per-node {spec.nproc_per_node}, as the run was saved.", highlight=False)
        check_process_count(meta, (spec.nproc_per_node or 1) * spec.nnodes)
    elif resolved.config.out is not None:
        check_out_dir(resolved.config.out)  # refused here, before any process starts
    if spec.nproc_per_node is None:
        spec = dataclasses.replace(spec, nproc_per_node=1)  # 0 is an error, not "default"
    launch(spec, strip_launch_options(argv_after_run()))


def train_and_report(resolved: ResolvedConfig) -> None:
    """Train in this process, then (on rank 0) print the tutorial-style report and write the run's."""
    from blitz.engine import Trainer
    from blitz.report import print_final_report, write_run_report

    from blitz.launch import report_finished

    trainer = Trainer(resolved.config, console=console, resume_from=resolved.resume_checkpoint)
    trainer.keep_run_lock = True  # until the report is written: a resume must not start before
    try:
        result = trainer.fit()
        if trainer.strategy.is_main:
            with signals_held():  # training is over: a Ctrl-C now must not leave a half-written report
                print_final_report(console, result)
                if result.run_dir is not None:
                    write_run_report(result, trainer)
                    console.print(f"Run saved in {result.run_dir}", highlight=False, soft_wrap=True)
                report_finished()
    finally:
        trainer.release_run()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """The stop signals ignored inside (a second or so of writing files), as they were after."""
    from blitz.stopping import STOP_SIGNALS

    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def show_config(config: Any, provenance: dict[str, str]) -> None:
    table = Table(title="Resolved config", show_lines=False)
    # Folded, not cut with "…": a value shown must be one that can be copied into a config file
    table.add_column("key", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    data = config.model_dump(mode="json")
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                table.add_row(f"{key}.{sub}", json.dumps(subvalue), provenance.get(f"{key}.{sub}", "default"))
            if not value:
                table.add_row(key, "{}", "default")
        else:
            table.add_row(key, json.dumps(value), provenance.get(key, "default"))
    console.print(table)


KIND_CHOICES = (*KINDS, "recipes")


def _list_kind(kind: str, pattern: str, as_json: bool) -> None:
    import fnmatch

    from blitz.catalog import load_catalog

    catalog = load_catalog()
    rows = _recipe_rows(catalog) if kind == "recipes" else _component_rows(kind, catalog, pattern)
    given = pattern
    if not any(ch in pattern for ch in "*?["):  # a plain word: a substring search, as users expect
        pattern = f"*{pattern}*"
    rows = [r for r in rows if fnmatch.fnmatch(r["name"].lower(), pattern.lower())]
    if as_json:
        console.print_json(json.dumps(rows))
    elif rows:
        _print_listing(kind, rows, given)
    else:
        _print_no_match(kind, given)


def _recipe_rows(catalog: Catalog) -> list[dict[str, Any]]:
    from blitz.catalog import recipe_plugin

    rows = []
    for name, recipe in sorted(catalog.recipes.items()):
        row = {"name": name, "description": recipe.description, "measured": recipe.measured}
        plugin = recipe_plugin(name)
        if plugin is not None:  # registry.toml's own have none
            row["plugin"] = plugin
            row["description"] += f" (plugin {plugin})"
        rows.append(row)
    return rows


def _component_rows(kind: str, catalog: Catalog, pattern: str) -> list[dict[str, Any]]:
    """One row per registered component and per registry.toml name of the kind; with a pattern
    that starts a family's prefix ('timm/res'), the family's own names too."""
    from blitz.build import factory_options
    from blitz.catalog import alias_problem
    from blitz.plugin_host import get_host

    registry = get_host().registries[kind]
    noun = registry.kind.capitalize()
    aliases = catalog.entries(kind)
    rows: list[dict[str, Any]] = []
    registered: dict[str, dict[str, Any]] = {}
    for entry in registry.entries():
        # registry.toml's own entry for the same name, where it has one, says more
        same = aliases.get(entry.name)
        description = same.description if same is not None and same.description else entry.description
        row = {"name": entry.name.replace("/*", "/<name>"), "description": description, "plugin": entry.plugin,
               "options": factory_options(entry.factory, noun)}
        hyperparameters = entry.metadata.get("hyperparameters")
        if hyperparameters:  # an optimizer's own lr, momentum and weight decay
            row["hyperparameters"] = hyperparameters
            row["description"] += " (" + ", ".join(f"{k} {v}" for k, v in hyperparameters.items()) + ")"
        rows.append(row)
        registered[entry.name] = row
    for name, alias in sorted(aliases.items()):
        row = registered.get(name) if not alias.component or alias.component == name else None
        if row is None:  # a catalog name for another component (or for none that is registered)
            row = {
                "name": name, "description": alias.description or f"= {alias.component or name}",
                "plugin": alias.plugin, "component": alias.component, "defaults": alias.defaults,
            }
            rows.append(row)
        problem = alias_problem(name, alias, registry)
        if problem:  # the catalog's entry wins when the name is resolved: show that, and why it fails
            row.update(problem=problem, description=f"{row['description']} (not usable: {problem})")
        elif row.get("component"):  # what the component it names takes, with the entry's defaults
            target = registry.get(alias.component or name)
            row["options"] = factory_options(target.factory, noun, alias.defaults)
    # 'timm/<pattern>': the family's own names (timm's architectures), which it can list
    family = next((e for e in registry.entries() if e.is_family and pattern.lower().startswith(e.name[:-1].lower())), None)
    if family is not None:
        prefix = family.name[:-2]
        family_options = factory_options(family.factory, noun)
        rows += [
            {"name": f"{prefix}/{variant}", "description": f"{prefix}'s {variant}", "plugin": family.plugin,
             "options": family_options}
            for variant in registry.variants(family)
        ]
    return rows


def _print_listing(kind: str, rows: list[dict[str, Any]], given: str) -> None:
    table = Table(title=f"{kind} ({len(rows)})")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("plugin" if kind != "recipes" else "measured")
    for r in rows:
        extra = r.get("plugin", "") if kind != "recipes" else r.get("measured", "")
        table.add_row(escape(r["name"]), escape(r["description"]), escape(extra))  # "[x]" from a plugin is text
    console.print(table)
    for r in rows:  # the one asked for by its exact name: what it takes
        if r["name"] == given and r.get("options") is not None:
            console.print(f"{r['name']} takes: {describe_options(r['options'])}", highlight=False, markup=False)


def _print_no_match(kind: str, given: str) -> None:
    from blitz.plugin_host import get_host

    families = [e.name.replace("/*", "/") for e in get_host().registries[kind].entries() if e.is_family] if kind != "recipes" else []
    more = f"; a family's own names are listed by its prefix, e.g. blitz list {kind} '{families[0]}*resnet*'" if families else ""
    broken = get_host().failed()
    if broken:
        more += f" ({len(broken)} plugin(s) failed to load: see 'blitz list-plugins')"
    console.print(f"No {kind} match '{given}'. 'blitz list {kind}' shows them all{more}.", highlight=False)


def describe_options(options: dict[str, dict[str, Any]]) -> str:
    """``width (int, default 16), depth (int, default 3)``, for `blitz list KIND NAME`."""
    if not options:
        return "no options"
    parts = []
    for name, option in options.items():
        if name == "**":
            parts.append("any other keyword (passed on)")
            continue
        details = [option["type"]] if "type" in option else []
        if "default" in option:
            details.append(f"default {option['default']!r}" if isinstance(option["default"], str) else f"default {option['default']}")
        elif "default_text" in option:
            details.append(f"default {option['default_text']}")
        parts.append(f"{name} ({', '.join(details)})" if details else name)
    return ", ".join(parts)


_PATTERN_HELP = {False: "A word to look for, or a glob ('*cos*').",
                 True: "A word to look for, or a glob; 'timm/*resnet*' lists timm's own names."}


def _make_list_command(kind: str) -> None:
    def _command(pattern: str = "*", as_json: bool = False) -> None:
        _list_kind(kind, pattern, as_json)

    # Objects, not the strings `from __future__ import annotations` makes: typer evaluates those
    # in the module's globals, where this kind's help text is not
    _command.__annotations__.update(
        pattern=Annotated[str, typer.Argument(metavar="PATTERN", help=_PATTERN_HELP[kind == "models"])],
        as_json=Annotated[bool, typer.Option("--json", help="Print JSON.")],
    )
    list_app.command(name=kind, help=f"List {kind}, optionally filtered by a glob PATTERN.")(reports_errors(_command))


for _kind in KIND_CHOICES:
    _make_list_command(_kind)


@app.command("list-models", help="List models (same as 'blitz list models').", hidden=True)  # an alias, kept working
@reports_errors
def list_models(
    pattern: Annotated[str, typer.Argument(metavar="PATTERN", help=_PATTERN_HELP[True])] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    _list_kind("models", pattern, as_json)


SLOW_PLUGIN_SECONDS = 0.5


_CHECK_HELP = ("Exit 1 if any plugin, plugin recipe, factory signature or default has a problem, or "
               "BLITZ_LOAD_PLUGINS names an unknown plugin (for CI).")


@app.command("list-plugins", help="List every plugin, its distribution, version and what it registers.")
@reports_errors
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    check: Annotated[bool, typer.Option("--check", help=_CHECK_HELP)] = False,
) -> None:
    from blitz.build import factory_signature_problems, option_default_problems
    from blitz.catalog import plugin_recipe_problems
    from blitz.plugin_host import get_host, misplaced_entry_points

    host = get_host()
    records = list(host.records.values())
    _print_plugins(records, as_json)
    # Recipes and defaults are checked when used; here before that, as a plugin's CI wants it
    problems = [*plugin_recipe_problems(host), *factory_signature_problems(host), *option_default_problems(host)]
    for problem in problems:
        print_warning(err_console, problem)
    for misplaced in misplaced_entry_points():  # not counted by --check: another tool may own such a group
        print_warning(err_console, f"{misplaced}.")
    if check and (any(r.errors for r in records) or problems or host.unmatched_allowed):
        raise typer.Exit(1)


def _print_plugins(records: list[Any], as_json: bool) -> None:
    from blitz.plugin_host import get_host

    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in records]))
        return
    table = Table(title=f"plugins ({len(records)})")
    for column in ("plugin", "distribution", "registers", "status"):
        table.add_column(column)
    for r in records:
        registers = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(r.registers.items()))
        extra_hooks = [h for h in r.hooks if not h.startswith("register_")]
        if extra_hooks:
            registers = "; ".join(filter(None, [registers, "hooks: " + ", ".join(extra_hooks)]))
        if r.skipped:
            status = f"[dim]skipped ({r.skipped})[/]"
        elif r.errors:
            status = "[red]" + escape(" | ".join(r.errors)) + "[/]"  # a plugin's text: "[/]" in it is not markup
        else:
            status = "[green]ok[/]"
        # every command waits for it (built-ins load first and pay for importing torch: not theirs)
        if not r.builtin and (r.load_seconds or 0) >= SLOW_PLUGIN_SECONDS:
            status += f" [yellow](took {r.load_seconds:.1f} s to load)[/]"
        table.add_row(escape(r.name), escape(r.origin + (" (built-in)" if r.builtin else "")), escape(registers), status)
    console.print(table)
    unmatched = get_host().unmatched_allowed
    if unmatched:
        names = escape(", ".join(repr(u) for u in unmatched))  # the user's text: "[/]" in it is not markup
        err_console.print(f"[yellow]BLITZ_LOAD_PLUGINS names {names}, which no plugin has "
                      "(names are the 'plugin' column's, case-sensitive).[/]", highlight=False)


@list_app.command("plugins", help="List every plugin (same as 'blitz list-plugins').")
def list_plugins_in_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    check: Annotated[bool, typer.Option("--check", help=_CHECK_HELP)] = False,
) -> None:
    list_plugins(as_json, check)  # `blitz list plugins`, as for every other kind


@app.command("runs", help="List the runs under runs/ (or $BLITZ_RUNS_DIR).")
@reports_errors
def runs_command(
    root: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Folder holding run directories.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    from blitz.runs import list_runs

    rows = list_runs(root)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("No runs yet. Start one with 'blitz run'.")
        return
    headers = ("run", "epochs", "best", "time", "status", "model / data")
    cells = [_run_cells(r) for r in rows]
    widths = [max(cell_len(text) for text in (header, *(c[i] for c in cells))) for i, header in enumerate(headers)]
    if sum(widths) + 2 * (len(widths) - 1) <= console.width:  # each column's padding and the rule between
        # Plain columns (like `ls -l`): a boxed table needs ~100 columns for a run name
        table = Table(title=f"runs ({len(rows)})", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                      show_edge=False)
        for column, width in zip(headers, widths):
            table.add_column(column, no_wrap=True, min_width=width)  # the name is what show, eval... take
        for c in cells:
            table.add_row(*c)
        console.print(table)
    else:  # a narrow terminal: each run's name on a line of its own, its figures under it, never cut
        console.print(f"runs ({len(rows)})", highlight=False)
        for c in cells:
            console.print(c[0], highlight=False, soft_wrap=True)
            console.print("    " + "  ".join(c[1:]), highlight=False)
    if any(r.get("limit_steps") for r in rows):
        console.print("* epochs cut short by --limit-steps", highlight=False)


def _is_figure(value: Any) -> bool:
    """Whether a summary or metrics value is a figure to show: a number of 0 or more (not a
    hand-edited file's text or null, nor the -1 that older runs wrote before an evaluation)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _number(value: Any, spec: str, scale: float = 1.0, suffix: str = "", missing: str = "-") -> str:
    """``value`` formatted, or ``missing`` where it is no figure: one odd file must not stop
    `blitz runs` listing the others."""
    return f"{scale * value:{spec}}{suffix}" if _is_figure(value) else missing


def _run_cells(r: dict[str, Any]) -> list[str]:
    """A run's row in `blitz runs`: name, epochs, best accuracy, time, status, model / data."""
    return [
        r["run"], f"{r.get('epochs_done', '?')}/{r.get('epochs', '?')}" + ("*" if r.get("limit_steps") else ""),
        _number(r.get("best_accuracy"), ".2f", 100, " %"), _number(r.get("seconds"), ".0f", suffix=" s"),
        str(r.get("status", "?")), f"{r.get('model', '?')} / {r.get('dataset', '?')}",
    ]


@app.command("show", help="Show one run: config, summary and per-epoch metrics.")
@reports_errors
def show(run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run directory, run name, the start of a name, or 'latest'.")]) -> None:
    from blitz.runs import find_run, ran_on, read_metrics, read_summary

    path = find_run(run_name)
    summary = read_summary(path)
    console.print(f"[bold]{path}[/]")
    for key, value in summary.items():
        if value is None or (key == "best_accuracy" and not _is_figure(value)):  # no recipe, no evaluation yet
            continue
        if isinstance(value, float):  # 23.6 s, not 23.644509513997036; accuracies as fractions
            shown: Any = f"{100 * value:.2f} %" if key.endswith("accuracy") else f"{value:,.1f}"
        else:
            shown = value
        console.print(f"  {key}: {shown}", highlight=False)
    environment = ran_on(path)
    if environment:
        console.print(f"  ran on: {environment}", highlight=False, markup=False)
    console.print("[bold]config.toml[/]")
    # a damaged byte shown as such: the rest of the run is still worth seeing
    console.print((path / "config.toml").read_text(encoding="utf-8", errors="replace"), highlight=False, markup=False)
    # the last record of each epoch (a run resumed by an earlier version may hold two); by its
    # text, as a hand-edited record's epoch may be a list
    by_epoch = {str(r.get("epoch")): r for r in read_metrics(path / "metrics.jsonl") if r.get("event") == "epoch"}
    epochs = list(by_epoch.values())
    if epochs:
        table = Table(title="epochs")
        for column in ("epoch", "train loss", "test loss", "test acc", "img/s", "s"):
            table.add_column(column, justify="right")  # figures: their digits in line
        for r in epochs:
            table.add_row(
                str(r.get("epoch")), _number(r.get("train_loss"), ".3f", missing="–"),
                _number(r.get("test_loss"), ".3f", missing="–"),
                _number(r.get("test_accuracy"), ".2f", 100, " %", missing="–"),
                _number(r.get("images_per_s"), ",.0f", missing="–"), _number(r.get("seconds"), ".1f", missing="–"),
            )
        console.print(table)
    elif not (path / "metrics.jsonl").exists():  # a config whose `loggers` left out jsonl
        console.print("No epoch table: the run kept no metrics.jsonl (its loggers did not include 'jsonl').",
                      highlight=False)
    written = [name for name in ("report.md", "predictions.png", "curves.png", "confusion.png") if (path / name).is_file()]
    if written:  # where the rest is: per-class figures, pictures
        console.print(f"More in {path}: {', '.join(written)}", highlight=False, soft_wrap=True)


@app.command("eval", help="Evaluate a run's checkpoint: accuracy, per-class accuracy, confusion matrix.")
@reports_errors
def eval_command(
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run directory, run name, the start of a name, or 'latest'.")],
    checkpoint: Annotated[str, typer.Option(metavar="best|last", help="Which checkpoint.")] = "best",
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME", help="Evaluate on another data source.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Data folder.")] = None,
    dataset_arg: Annotated[Optional[list[str]], typer.Option("--dataset-arg", metavar="KEY=VALUE", help="For the data source, over the run's (repeatable).")] = None,
    strategy: Annotated[Optional[str], typer.Option(metavar="cpu|cuda", help="Where to evaluate (default: a GPU if there is one).")] = None,
) -> None:
    from blitz.evaluation import evaluate_run

    evaluate_run(
        run_name, checkpoint=checkpoint, dataset=dataset, data_root=data_root,
        dataset_args=parse_assignments(dataset_arg, "--dataset-arg"), strategy=strategy, console=console,
    )


@app.command("predict", help="Classify image files with a trained run: top-k classes with probabilities.")
@reports_errors
def predict(
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run directory, run name, the start of a name, or 'latest'.")],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files (PNG, JPEG, BMP, WebP, TIFF, ...).")],
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", min=1, help="How many classes to show.")] = 3,
    checkpoint: Annotated[str, typer.Option(metavar="best|last", help="Which checkpoint.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    from blitz.evaluation import predict_images

    predict_images(run_name, images, top_k=top_k, checkpoint=checkpoint, as_json=as_json, console=console)


@data_app.command("verify", help="Check a data source's files: structure, counts and labels.")
@reports_errors
def data_verify(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Data source name (see 'blitz list datasets').")],
    data_root: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Data folder.")] = None,
    dataset_arg: Annotated[Optional[list[str]], typer.Option("--dataset-arg", metavar="KEY=VALUE", help="For the data source (repeatable).")] = None,
) -> None:
    from blitz.build import load_data
    from blitz.catalog import resolve
    from blitz.config import RunConfig
    from blitz.resolve import warn_unused_data_root

    config = RunConfig(dataset=name, data_root=data_root, dataset_args=parse_assignments(dataset_arg, "--dataset-arg"))
    entry = resolve("datasets", name)  # an unknown name is the error, before any warning
    warn_unused_data_root(config, given=data_root is not None)
    bundle = load_data(entry, config)
    info = bundle.info
    console.print(f"[green]OK[/] {escape(name)}: {len(bundle.train):,} train and {len(bundle.test):,} test examples, "
                  f"{info.num_classes} classes, input shape {tuple(info.input_shape)}", highlight=False)
    if info.class_names:  # in label order: a folder of split folders taken for classes shows here
        names = ", ".join(info.class_names[:20]) + (f", ... ({len(info.class_names)} in all)" if len(info.class_names) > 20 else "")
        console.print(f"  classes: {names}", highlight=False, markup=False)
    for path in bundle.files:
        console.print(f"  checked {path}", highlight=False, markup=False)


def _exit_at_once(signum: int, _frame: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


def _exit_now(exc: SystemExit | None) -> NoReturn:
    """End the process with ``exc``'s exit status, skipping the interpreter's shutdown.

    blitz has flushed and closed everything it wrote by now. What is left is tearing down
    torch's modules, about a second, and with ``--compile`` on a GPU, waiting for inductor's
    compile workers to shut down (they exit by themselves once this process is gone).
    """
    code: int = 0
    if exc is not None and exc.code is not None:
        if isinstance(exc.code, int):
            code = exc.code
        else:  # sys.exit("message"): Python would print it and exit 1
            print(exc.code, file=sys.stderr)
            code = 1
    logging.shutdown()
    multiprocessing = sys.modules.get("multiprocessing")  # not imported: no children to stop
    if multiprocessing is not None:
        # What multiprocessing's atexit hook does, which os._exit skips: daemonic children
        # (persistent DataLoader workers) are stopped, which left alone would live, holding the
        # output pipe, until they notice that this process is gone (up to 5 s later); others
        # are waited for.
        for child in multiprocessing.active_children():
            if child.daemon:
                child.terminate()
            else:
                child.join()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ReaderTolerantStream:
    """sys.stdout or sys.stderr that carries on when its reader goes away (``blitz run | head``, or
    the terminal closed).

    Python raises BrokenPipeError (or, on a terminal that hung up, EIO) on the next write, which
    would end a training run half-way, or after training without its report and pictures. Output
    then goes nowhere; the work goes on.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EIO):
                raise
            self._stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # for the rest of the process
            return getattr(self._stream, method)(*args)

    def write(self, text: str) -> int:
        return self._guarded("write", text)

    def flush(self) -> None:
        self._guarded("flush")

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """A warning as one line: the file and source line Python adds are blitz's, not the user's
    (``--debug`` keeps them)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"Warning{kind}: {message}\n"


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("BLITZ_COMMAND_LINE", " ".join(["blitz", *sys.argv[1:]]))
    from blitz.launch import launched_by_torchrun

    sys.stdout, sys.stderr = ReaderTolerantStream(sys.stdout), ReaderTolerantStream(sys.stderr)
    if "--debug" not in sys.argv and not debug_requested():
        warnings.formatwarning = _one_line_warning
        if launched_by_torchrun() and os.environ.get("RANK", "0") != "0":
            warnings.simplefilter("ignore")  # the ranks load the same data and code: rank 0 says it once
    exit_status: SystemExit | None = None
    remember_ctrl_c()
    try:
        app()
    except SystemExit as exc:
        exit_status = exc
    except KeyboardInterrupt:  # while the command line is parsed, before any command runs
        if launched_by_torchrun():
            raise
        err_console.print(INTERRUPTED, highlight=False)
        exit_status = SystemExit(130)
    finally:
        # The command is over: a Ctrl-C now (a second one on the way out) ends the process at
        # once, without a traceback after blitz's last line.
        signal.signal(signal.SIGINT, _exit_at_once)
    # Every process ends without running static destructors and atexit handlers: a DDP worker
    # because gloo in torch 2.14 sometimes aborts in them (SIGABRT after a clean teardown),
    # which would fail a finished job; any other run because the interpreter's shutdown costs
    # one to three seconds of wall time after the work is done.
    _exit_now(exit_status)
