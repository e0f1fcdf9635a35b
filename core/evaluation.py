"""`blitz eval` and `blitz predict`: a trained run's checkpoint, rebuilt and put to work.

Everything needed to rebuild the model comes from the checkpoint's meta (model name and
arguments, number of classes, input shape, class names, normalization), so a run can be
evaluated or used for predictions without its training data. The run's config.toml supplies
the rest (data source arguments, evaluation batch size, precision).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.markup import escape
from rich.table import Table
from torch import nn

from blitz import checkpoint as ckpt
from blitz import runs
from blitz.batches import Normalizer
from blitz.catalog import resolve
from blitz.components import DataInfo, Strategy
from blitz.config import RunConfig, absolute_if_path, read_toml, validate
from blitz.errors import CheckpointError, DataNotFoundError, PluginError, UnknownNameError, UsageError
from blitz.files import atomic_write_text, json_text
from blitz.resolve import warn_unused_data_root
from blitz.notices import print_warning
from blitz.plugin_host import plugin_states

if TYPE_CHECKING:
    from blitz.scoring import EvalResult

CHECKPOINT_CHOICES = ("best", "last")
EVAL_STRATEGIES = ("auto", "cpu", "cuda")


@dataclass
class LoadedRun:
    """A run's model rebuilt from one of its checkpoints, ready for inference."""

    run_dir: Path
    checkpoint_path: Path
    config: RunConfig
    meta: dict[str, Any]
    info: DataInfo  # what the model was trained on: classes, input shape, normalization
    model: nn.Module


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``<run>/checkpoints/<best|last>.ckpt``; any other name is a usage error."""
    if which not in CHECKPOINT_CHOICES:
        raise UsageError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, not '{which}'.")
    return run_dir / "checkpoints" / f"{which}.ckpt"


def run_config(run_dir: Path) -> RunConfig:
    """The run's saved config (config.toml), validated as `blitz run --config` would."""
    path = run_dir / "config.toml"
    values = read_toml(path, what="run config")
    return validate(values, {key: f"run config {path}" for key in values})


def info_from_meta(meta: dict[str, Any], path: Path) -> DataInfo:
    """The DataInfo the model was trained with, as the checkpoint recorded it."""
    try:
        return DataInfo(
            num_classes=int(meta["num_classes"]),
            input_shape=tuple(int(s) for s in meta["input_shape"]),
            class_names=tuple(str(n) for n in meta["class_names"]),
            mean=tuple(float(m) for m in meta.get("mean", ())),
            std=tuple(float(s) for s in meta.get("std", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is a damaged blitz checkpoint: its meta lacks a valid {exc}.") from None


def load_run(run_name: str | Path, which: str = "best") -> LoadedRun:
    """Find a run, load its checkpoint and rebuild the model with the saved weights (strictly)."""
    from blitz.build import build_model  # imports torch and the registries: only when needed

    run_dir = runs.find_run(run_name)
    path = checkpoint_path(run_dir, which)
    if not path.is_file() and runs.being_trained(run_dir):  # not "stopped", nor "train it again": it is training
        last = which == "best" and checkpoint_path(run_dir, "last").is_file()
        raise UsageError(
            f"No checkpoint at '{path}': the run is being trained right now and has not saved it yet; "
            + ("use --checkpoint last for the weights it saved last." if last else
               "try again once it has (every --checkpoint-every epochs, at its end, or when it is stopped).")
        )
    if which == "best" and not path.is_file() and checkpoint_path(run_dir, "last").is_file():
        raise CheckpointError(
            f"No checkpoint at '{path}': the run stopped before its first evaluation. Use "
            "--checkpoint last for the weights it saved when it stopped."
        )
    if not any(checkpoint_path(run_dir, kind).is_file() for kind in ("best", "last")):
        raise UsageError(
            f"No checkpoint at '{path}': the run saved none (it stopped or failed before its first, or trained "
            f"0 epochs), so there is nothing to load; train it again: {runs.rerun_command(run_dir)}"
        )
    other = "last" if which == "best" else "best"
    try:
        state = ckpt.load_checkpoint(path)  # CheckpointError naming the path if invalid
    except CheckpointError as exc:
        if path.is_file() and not exc.damaged:  # another version, say: the other checkpoint would not help
            raise
        if checkpoint_path(run_dir, other).is_file():
            raise CheckpointError(f"{exc} Try --checkpoint {other}.", damaged=True) from None
        raise CheckpointError(f"{exc} Train the run again: {runs.rerun_command(run_dir)}",
                              damaged=True) from None
    config = run_config(run_dir)
    info = info_from_meta(state.meta, path)
    if "model" not in state.meta:
        raise CheckpointError(f"'{path}' is a damaged blitz checkpoint: its meta names no model.")
    # The checkpoint, not config.toml, is the authority on the model: its meta holds the
    # arguments the weights were built with (catalog defaults already merged in).
    config = config.model_copy(update={"model": state.meta["model"], "model_args": dict(state.meta.get("model_args", {}))})
    # The component the weights were built with, not the name's meaning today: registry.toml (or
    # BLITZ_REGISTRY) may have pointed an alias elsewhere since. Older checkpoints lack it.
    try:
        resolved = resolve("models", state.meta.get("model_component") or state.meta["model"])
    except UnknownNameError as exc:
        exc.add_hint(runs.plugins_not_loaded(run_dir, plugin_states()))
        raise
    try:
        model = build_model(resolved, info, config, check_types=False)
    except PluginError as exc:  # a factory that cannot rebuild what it once built: the plugin changed?
        raise CheckpointError(f"Cannot rebuild model '{state.meta['model']}' for '{path}': {exc}") from None
    ckpt.load_weights(model, state.model, str(path))
    model.eval()
    return LoadedRun(run_dir, path, config, state.meta, info, model)


def eval_strategy(name: str | None) -> Strategy:
    """A single-process strategy for evaluation: cpu, cuda, or auto (cuda when available)."""
    from blitz.build import call_factory

    name = name or "auto"
    if name not in EVAL_STRATEGIES:
        raise UsageError(f"Evaluation runs in one process: use --strategy cpu or cuda, not '{name}'.")
    if name == "auto":  # not the 'auto' plugin: under torchrun it would pick ddp
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return call_factory(resolve("strategies", name), "Strategy", device=None)


def eval_config(
    loaded: LoadedRun, dataset: str | None, data_root: Path | None, device: torch.device,
    dataset_args: dict[str, Any] | None = None,
) -> RunConfig:
    """The config to load data and evaluate with: the run's, with the requested data swapped in."""
    update: dict[str, Any] = {}
    if dataset is not None and dataset != loaded.config.dataset:
        update["dataset"] = dataset
        update["dataset_args"] = {}  # the run's data arguments belong to the run's data source
    if dataset_args:  # e.g. an image folder's path, after the folder moved
        update["dataset_args"] = {**update.get("dataset_args", loaded.config.dataset_args), **{
            key: absolute_if_path(key, value) for key, value in dataset_args.items()
        }}
    if data_root is not None:
        update["data_root"] = data_root.expanduser().absolute()  # model_copy does not run the validators
    if device.type == "cpu" and loaded.config.precision != "32":
        update["precision"] = "32"  # half-precision autocast on a CPU is slow and partial
    return loaded.config.model_copy(update=update)


def check_data_fits(loaded: LoadedRun, data: DataInfo, dataset: str) -> None:
    """The data's classes and input shape must be the model's, else a usage error naming both."""
    model_info = loaded.info
    if data.num_classes != model_info.num_classes or tuple(data.input_shape) != tuple(model_info.input_shape):
        raise UsageError(
            f"Dataset '{dataset}' ({data.num_classes} classes, input shape {tuple(data.input_shape)}) does not "
            f"fit the model of run '{loaded.run_dir}' (trained on '{loaded.meta.get('dataset', '?')}': "
            f"{model_info.num_classes} classes, input shape {tuple(model_info.input_shape)})."
        )


def evaluate_run(
    run_name: str,
    *,
    checkpoint: str = "best",
    dataset: str | None = None,
    data_root: Path | None = None,
    dataset_args: dict[str, Any] | None = None,
    strategy: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on its test data (or another data source); print and save it."""
    from blitz.report import eval_results
    from blitz.scoring import evaluate

    console = console or Console(emoji=False)
    loaded = load_run(run_name, checkpoint)
    device_strategy = eval_strategy(strategy)
    config = eval_config(loaded, dataset, data_root, device_strategy.device, dataset_args)
    warn_unused_data_root(config, given=data_root is not None)
    test_split, info = _eval_data(loaded, config, console)
    device_strategy.setup()
    try:
        model = loaded.model.to(device_strategy.device)
        result = evaluate(model, test_split, info, device_strategy, config,
                          source=resolve("datasets", config.dataset).named("Dataset"))
    finally:
        device_strategy.teardown()
    console.print(
        f"Run {loaded.run_dir}, checkpoint {checkpoint} ({epochs_text(loaded.meta)}), "
        f"dataset {config.dataset}, on {device_strategy.device}",
        highlight=False,
    )
    _print_eval(console, result, info)
    data = eval_results(result, info.class_names)
    data.update({"run": str(loaded.run_dir), "checkpoint": checkpoint, "dataset": config.dataset})
    _save_eval(console, loaded.run_dir, f"eval-{safe_name(config.dataset)}-{checkpoint}", data, result, info)
    return data


def _eval_data(loaded: LoadedRun, config: RunConfig, console: Console) -> tuple[Any, DataInfo]:
    """The test split to evaluate on, and its DataInfo with the run's normalization; refused
    where it does not fit the model, warned where its class names differ from the run's."""
    from blitz.build import load_data

    try:
        bundle = load_data(resolve("datasets", config.dataset), config, splits=("test",))
    except DataNotFoundError as exc:  # the data source's advice is for `blitz run`; here it is one of these
        raise DataNotFoundError(
            f"{exc} For this run: --data-root DIR (it read '{config.resolved_data_root()}'), or "
            "--dataset-arg KEY=VALUE for its data options."
        ) from None
    check_data_fits(loaded, bundle.info, config.dataset)
    ours, theirs = tuple(bundle.info.class_names), tuple(loaded.info.class_names)
    if ours != theirs:  # same count, other names (or order): the accuracy may mean nothing
        differ = [
            f"class {i}: '{here}' here, '{there}' in the run" for i, (here, there) in enumerate(zip(ours, theirs))
            if here != there
        ] or [f"{len(ours)} names here, {len(theirs)} in the run"]
        print_warning(console, f"dataset '{config.dataset}' names its classes otherwise than the run did "
                               f"({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''}): "
                               "the model's class i is scored as the data's class i.")
    if config.precision != loaded.config.precision:
        console.print(f"Precision {config.precision} on the CPU (the run trained in {loaded.config.precision}): "
                      "figures may differ from results.json in the last digits.", highlight=False)
    # Normalize exactly as in training: the checkpoint's mean/std (which include any override).
    return bundle.test, dataclasses.replace(bundle.info, mean=loaded.info.mean, std=loaded.info.std)


def _print_eval(console: Console, result: EvalResult, info: DataInfo) -> None:
    from blitz.report import accuracy_lines

    console.print(
        f"Accuracy of the network on the {result.count:,} test images: {100 * result.accuracy:.2f} %  "
        f"(loss {result.loss:.4f})",
        highlight=False,
    )
    for line in accuracy_lines(result.per_class(info.class_names)):
        console.print(line, highlight=False, markup=False)  # class names are data: "[x]" is text
    width = console.width if console.is_terminal else 10_000  # a file or a pipe: nothing narrow reads it
    console.print(confusion_table(result.confusion, info.class_names, width), highlight=False, soft_wrap=not console.is_terminal)


def _save_eval(console: Console, run_dir: Path, stem: str, data: dict[str, Any], result: EvalResult, info: DataInfo) -> None:
    """``<stem>.json`` and ``<stem>-confusion.csv`` in the run (best and last have their own
    stems: neither overwrites the other); a warning where the run cannot be written to."""
    from blitz.report import confusion_csv

    try:
        atomic_write_text(run_dir / f"{stem}.json", json_text(data, indent=2) + "\n")
        atomic_write_text(run_dir / f"{stem}-confusion.csv", confusion_csv(result.confusion, info.class_names))
    except OSError as exc:  # a read-only copy of a run: the figures printed are the results
        print_warning(console, f"could not save the results in {run_dir} ({exc.strerror or exc}): "
                               "they are only printed above.")
        return
    console.print(f"Saved {run_dir / (stem + '.json')} and {stem}-confusion.csv", highlight=False)


def epochs_text(meta: dict[str, Any]) -> str:
    done = len(meta.get("history", []))
    return f"after {done} epoch{'' if done == 1 else 's'}"


def safe_name(name: str) -> str:
    """A component name usable in a file name (``timm/x`` -> ``timm_x``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def confusion_table(
    confusion: torch.Tensor, class_names: tuple[str, ...], width: int = 200, max_classes: int = 20
) -> Table | str:
    """The confusion matrix as a rich table: rows true class, columns predicted, headed by the
    classes' names cut to the counts' width (their indices where cut names would clash); a
    one-line note instead where it does not fit ``width`` columns (a count is never cut short)."""
    k = len(class_names)
    counts = [[int(v) for v in row] for row in confusion.tolist()]
    digits = max([len(str(v)) for row in counts for v in row] + [1])
    short = [name[:max(digits, 4)] for name in class_names]
    headers = short if len(set(short)) == k else [str(j) for j in range(k)]
    if k > max_classes:
        return f"Confusion matrix: {k} x {k}, too wide to show; see the CSV file."
    table = Table(title="confusion: rows true class, columns predicted", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("true", style="bold", no_wrap=True)
    for header in headers:
        table.add_column(escape(header), justify="right", no_wrap=True)
    for i, name in enumerate(class_names):
        cells = [f"[green]{v}[/]" if j == i else str(v) for j, v in enumerate(counts[i])]
        table.add_row(f"{i} {escape(name)}", *cells)
    unbounded = Console(width=10_000)  # the table's own width, as it would be drawn
    if Measurement.get(unbounded, unbounded.options, table).maximum > width:
        return f"Confusion matrix: {k} x {k}, too wide for {width} columns; see the CSV file."
    return table


# ---- predict ---------------------------------------------------------------------------------


def read_image(path: Path, info: DataInfo) -> torch.Tensor:
    """One image file as the uint8 (C, H, W) tensor training stored: the model's mode and size,
    decoded as the imagefolder data source decodes its files."""
    from PIL import UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    from blitz.images import decode_image

    channels, height, width = info.input_shape
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; give image files (e.g. {path}/*.png).")
    if not path.is_file():
        raise UsageError(f"'{path}' is not a regular file; give image files." if path.exists() else f"No image file '{path}'.")
    try:
        pixels = decode_image(path, height, width, "L" if channels == 1 else "RGB")
    except Exception as exc:  # noqa: BLE001  # any file PIL cannot decode (a decompression bomb too) is the user's input
        reason = ("not a readable image" if isinstance(exc, UnidentifiedImageError)
                  else f"{type(exc).__name__}: {str(exc).rstrip('.')}")  # PIL's own full stop is not doubled
        advice = (f"Give a smaller copy of the image (the model sees it at {width}x{height} pixels)"
                  if isinstance(exc, DecompressionBombError) else "Give image files (PNG, JPEG, BMP, WebP, TIFF, ...)")
        raise UsageError(f"Cannot read '{path}': {reason}. {advice}.") from None
    return torch.from_numpy(pixels)


def predict_images(
    run_name: str,
    images: list[Path],
    *,
    top_k: int = 3,
    checkpoint: str = "best",
    as_json: bool = False,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Classify image files with a run's model: the top ``top_k`` classes of each, with probabilities."""
    console = console or Console(emoji=False)
    if not images:
        raise UsageError("Give at least one image file.")
    loaded = load_run(run_name, checkpoint)
    info = loaded.info
    if not info.is_image or info.input_shape[0] not in (1, 3):
        raise UsageError(
            f"The model of run '{loaded.run_dir}' takes inputs of shape {tuple(info.input_shape)}, "
            "not 1- or 3-channel images; predict works on image models only."
        )
    # Every file that reads is classified; each one that does not is reported after them (the
    # command then exits 2), as `file` or `identify` go on past a bad file.
    read: dict[int, torch.Tensor] = {}
    errors: dict[int, str] = {}
    for i, path in enumerate(images):
        try:
            read[i] = read_image(Path(path), info)
        except UsageError as exc:
            errors[i] = str(exc)
    rows: list[dict[str, Any]] = [{"file": str(path)} for path in images]
    if read:
        inputs = Normalizer(info, torch.device("cpu"))(torch.stack(list(read.values())), torch.contiguous_format)
        with torch.inference_mode():
            probabilities = torch.softmax(loaded.model(inputs).float(), dim=1)
        top = probabilities.topk(min(top_k, info.num_classes), dim=1)
        for row, (i, _) in enumerate(read.items()):
            rows[i]["predictions"] = [
                {"class": info.class_names[int(index)], "probability": float(p)}
                for p, index in zip(top.values[row], top.indices[row])
            ]
    for i, message in errors.items():
        rows[i]["error"] = message
    if as_json:
        console.print(json_text(rows, indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        print_predictions(console, [row for row in rows if "predictions" in row])
    if errors:
        first = next(iter(errors.values()))
        more = f" ({len(errors) - 1} more file(s) could not be read; --json lists each)" if len(errors) > 1 else ""
        raise UsageError(f"{first}{more}")
    return rows


def print_predictions(console: Console, rows: list[dict[str, Any]]) -> None:
    width = max((len(p["class"]) for row in rows for p in row["predictions"]), default=0)  # rows that have them
    for row in rows:
        console.print(f"[bold]{escape(row['file'])}[/]", highlight=False, soft_wrap=True)
        for p in row["predictions"]:
            console.print(f"  {p['class']:<{width}}  {100 * p['probability']:6.2f} %", highlight=False, markup=False)
