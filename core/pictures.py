"""The pictures at the end of a run: predictions on test images, learning curves, confusion.

Written with matplotlib's object-oriented API onto an Agg canvas: no pyplot, no GUI backend,
no global state touched (a user calling blitz from a notebook keeps their backend). Each
picture is rendered into memory and written atomically, and each is guarded on its own: a
picture that fails is a warning, the others and the run are kept.

Sizes are fixed (inches x DPI) so the files are small and predictable:
predictions.png 800x800, curves.png 800x350, confusion.png 700x600 pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from blitz.files import atomic_write
from blitz.notices import print_warning

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from blitz.components import DataInfo
    from blitz.engine import Trainer, TrainResult

DPI = 100
PREDICTIONS_SIZE = (8.0, 8.0)  # inches
CURVES_SIZE = (8.0, 3.5)
CONFUSION_SIZE = (7.0, 6.0)
GRID = 4  # predictions.png shows GRID x GRID test images
ANNOTATE_MAX_CLASSES = 20  # beyond this the confusion cells are too small for numbers


@dataclass
class Samples:
    """A few test examples with what the model made of them."""

    display: torch.Tensor  # (N, C, H, W) floats in [0, 1], for imshow
    labels: list[int]
    predicted: list[int]


def write_pictures(result: TrainResult, trainer: Trainer) -> list[Path]:
    """predictions.png, curves.png and confusion.png in the run directory; returns those written."""
    if result.run_dir is None:
        return []
    from blitz.runs import read_metrics

    config = trainer.config
    # which run a picture shows, when it is looked at away from its folder
    title = f"{config.recipe or config.model} on {config.dataset}: {100 * result.final.accuracy:.2f} % test accuracy"
    steps = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r.get("event") == "step"]
    pictures: list[tuple[str, Callable[[], Figure | None]]] = [
        ("predictions.png", lambda: predictions_figure(result, trainer)),
        ("curves.png", lambda: curves_figure(result.history, steps, title)),
        ("confusion.png", lambda: confusion_figure(result.final.confusion, result.info.class_names, title)),
    ]
    written = []
    for name, make in pictures:
        path = result.run_dir / name
        try:
            figure = make()
            if figure is None:  # nothing to draw (non-image data, no epochs)
                continue
            save_figure(figure, path)
            written.append(path)
        except Exception as exc:  # a picture is never worth a lost run
            print_warning(trainer.console, f"could not draw {name}: {type(exc).__name__}: {exc}")
    return written


def new_figure(size: tuple[float, float], layout: Literal["constrained"] | None = "constrained") -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)  # attaches itself: rendering needs no pyplot and no display
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    # No bbox_inches="tight": keep the size exact. zlib level 1, not 6: files ~8 % larger,
    # written in half the time (~0.2 s of every run's end, most of it predictions.png's photos).
    figure.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


# ---- predictions.png -------------------------------------------------------------------------


def predictions_figure(result: TrainResult, trainer: Trainer) -> Figure | None:
    """The tutorial's grid of test images, titled true / predicted; wrong predictions in red."""
    info = result.info
    if not info.is_image or info.input_shape[0] not in (1, 3):
        return None
    return samples_figure(predict_samples(result, trainer, GRID * GRID), info.class_names)


def samples_figure(samples: Samples, names: tuple[str, ...]) -> Figure:
    """``samples`` in a GRID x GRID grid, each titled "true / predicted", red where wrong."""
    # A fixed grid: constrained layout measured every title's box, half of this picture's time.
    figure = new_figure(PREDICTIONS_SIZE, layout=None)
    figure.suptitle("Test images: true / predicted (red = wrong)", y=0.985)
    axes = figure.subplots(GRID, GRID, gridspec_kw={"left": 0.02, "right": 0.98, "bottom": 0.01, "top": 0.93,
                                                     "wspace": 0.08, "hspace": 0.22})
    title_gap = 6 / 72 / PREDICTIONS_SIZE[1]  # an axes title's pad, 6 points, as a fraction of the figure
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(samples.labels):
            continue
        image = samples.display[i]
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        true, predicted = samples.labels[i], samples.predicted[i]
        # Figure text where ax.set_title would put it: an axes title is laid out again at every
        # draw (~0.2 s for the 16, a third of the picture's time).
        box = ax.get_position()
        figure.text((box.x0 + box.x1) / 2, box.y1 + title_gap, f"{short(names[true])} / {short(names[predicted])}",
                    ha="center", va="baseline", fontsize=9, color="black" if true == predicted else "red")
    return figure


def short(name: str, limit: int = 16) -> str:
    """A class name that fits its column of the fixed grid (two names per title): its start and
    its end, so that names differing only at the end (class_1, class_2, ...) stay apart."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 3
    return name[:head] + "…" + name[-(limit - 1 - head):]


def predict_samples(result: TrainResult, trainer: Trainer, n: int) -> Samples:
    """The first ``n`` test examples through the final model.

    Uses ``result.model`` / ``result.test_split`` when the engine provides them; otherwise the
    final weights come from the run's last checkpoint and the test split from the data source.
    """
    model = getattr(result, "model", None)
    if model is None:
        from blitz.evaluation import load_run

        assert result.run_dir is not None
        model = load_run(result.run_dir, "last").model
    split = getattr(result, "test_split", None)
    if split is None:
        from blitz.build import load_data

        split = load_data(trainer.components.dataset, trainer.config, splits=("test",)).test
    inputs, display, labels = first_examples(split, result.info, n)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    predicted = predict(model, inputs.to(device))
    return Samples(display=display, labels=labels, predicted=predicted)


def first_examples(split: Any, info: DataInfo, n: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(model inputs, display images in [0, 1], labels) of a split's first ``n`` examples."""
    from blitz.batches import Normalizer
    from blitz.components import TensorSplit

    count = min(n, len(split))
    if isinstance(split, TensorSplit):
        pixels = split.images[:count].cpu()
        labels = split.labels[:count].cpu().tolist()
    else:  # a Dataset yields (uint8 pixels or float features, label), as training reads them
        items = [split[i] for i in range(count)]
        pixels = torch.stack([torch.as_tensor(image) for image, _ in items])
        labels = [int(label) for _, label in items]
    inputs = Normalizer(info, torch.device("cpu"))(pixels, torch.contiguous_format)
    # Stored pixels are the undistorted image: show them, not the normalized tensor.
    display = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else denormalize(inputs, info)
    return inputs, display, labels


def denormalize(inputs: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Undo (x - mean) / std for display (the tutorial's ``img / 2 + 0.5``)."""
    if info.mean:
        mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        std = torch.tensor(info.std).view(1, -1, 1, 1)
        inputs = inputs * std + mean
    return inputs.clamp(0.0, 1.0)


def predict(model: nn.Module, inputs: torch.Tensor) -> list[int]:
    from blitz.scoring import eval_mode

    with eval_mode(model), torch.inference_mode():
        return model(inputs).argmax(dim=1).cpu().tolist()


# ---- curves.png ------------------------------------------------------------------------------


def curves_figure(history: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None, title: str = "") -> Figure | None:
    """Train and test loss, and test accuracy, per epoch; with ``steps`` (metrics.jsonl's step
    records) the training loss as it went, every ``log_every`` steps, as the tutorial prints it."""
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    figure = new_figure(CURVES_SIZE)
    if title:
        figure.suptitle(title, fontsize=10)
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    trail = _loss_trail(history, steps or [])
    if trail:
        loss_ax.plot(*trail, linewidth=1, alpha=0.6, color="tab:blue", label="train (every log_every steps)")
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", linestyle="" if trail else "-",
                 color="tab:blue", label="train (epoch mean)")
    tested = [h for h in history if h.get("test_loss") is not None]  # eval_every may skip epochs
    loss_ax.plot([h["epoch"] for h in tested], [h["test_loss"] for h in tested], marker="o", color="tab:orange", label="test")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend(fontsize=8)
    accuracy_ax.plot([h["epoch"] for h in tested], [100 * h["test_accuracy"] for h in tested], marker="o", color="tab:green")
    accuracy_ax.set(title="test accuracy (%)", xlabel="epoch")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(epochs) == 1:  # one point: the locator would still put ticks at 0.96 ... 1.04
            ax.set_xticks(epochs)
    return figure


def _loss_trail(history: list[dict[str, Any]], steps: list[dict[str, Any]]) -> tuple[list[float], list[float]] | None:
    """The step records' losses against the epoch (fractional: 1.5 is half-way through epoch 2,
    placed by each epoch's step count), or None where there are too few to draw a line."""
    ends = {h["epoch"]: h.get("step") for h in history}  # the global step at each epoch's end
    xs, ys = [], []
    for record in steps:
        epoch, step, loss = record.get("epoch"), record.get("step"), record.get("loss")
        if not isinstance(epoch, int):
            continue
        end, start = ends.get(epoch), ends.get(epoch - 1, 0)
        if not all(isinstance(v, (int, float)) for v in (step, loss, end, start)) or end <= start:
            continue  # a record of an epoch the history lacks (an older run, a hand-edited file)
        xs.append(epoch - 1 + (step - start) / (end - start))
        ys.append(loss)
    return (xs, ys) if len(xs) >= 3 else None


# ---- confusion.png ---------------------------------------------------------------------------


def confusion_figure(confusion: torch.Tensor, class_names: tuple[str, ...], title: str = "") -> Figure:
    """The confusion matrix as a heat map, rows true class (with its accuracy), columns predicted class."""
    matrix = confusion.cpu().numpy()
    k = len(class_names)
    figure = new_figure(CONFUSION_SIZE)
    if title:
        figure.suptitle(title, fontsize=10)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set(title="confusion matrix", xlabel="predicted", ylabel="true (its accuracy)")
    if k <= ANNOTATE_MAX_CLASSES:
        totals = matrix.sum(axis=1)
        rows = [f"{name} ({100 * matrix[i, i] / totals[i]:.0f} %)" if totals[i] else f"{name} (n/a)"
                for i, name in enumerate(class_names)]
        ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=rows, fontsize=8)
        threshold = 0.6 * matrix.max() if matrix.size else 0  # white only on the darkest blues: readable
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > threshold else "black")
    else:  # too many classes for numbers in the cells: a color scale instead
        figure.colorbar(image, ax=ax)
    return figure
