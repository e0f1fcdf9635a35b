"""The hook points of blitz: what a plugin can implement.

A plugin is a module that implements some of these with ``@blitz.hookimpl``. Component hooks
(``register_*``) receive a ``register`` callback: call it once per component with a name, a
factory and a description. The factory contracts are in docs/plugins.md and in
:mod:`blitz.components`. Lifecycle hooks are called on the main process only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from blitz.components import Register, RegisterRecipe
    from blitz.engine import TrainingRun

PROJECT = "blitz"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_datasets(register: Register) -> None:
    """Register data sources.

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(*, root: Path | None, download: bool, **options)`` and returns a
        :class:`blitz.DataBundle`; a factory that names a ``splits`` parameter is given ``("test",)`` where the command
        reads only that split (``blitz eval``) and may skip the other; elsewhere it is not
        given, so its default must be ``("train", "test")``.
        ``reads_data_root=False`` marks a source that reads no files (synthetic data):
        ``--data-root`` given for it gets a warning.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register models.

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(*, num_classes: int, input_shape: tuple[int, ...], **options)`` and returns an
        ``nn.Module`` mapping a batch of ``input_shape`` tensors to ``num_classes`` logits. A name
        ending in ``/*`` registers a family, and its factory also receives ``variant: str``.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers.

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(model, *, lr: float, momentum: float, weight_decay: float, **options)`` and
        returns a ``torch.optim.Optimizer`` over the model's parameters.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register learning-rate schedules, stepped once per optimizer step.

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(optimizer, *, total_steps: int, **options)`` and returns a
        ``torch.optim.lr_scheduler.LRScheduler``.
    """


@hookspec
def register_strategies(register: Register) -> None:
    """Register device strategies (where and how the model runs).

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(*, device: str | None)`` and returns a :class:`blitz.Strategy`.
    """


@hookspec
def register_loggers(register: Register) -> None:
    """Register metric loggers.

    :param register: call ``register(name, factory, description=...)``; the factory is called as
        ``factory(*, run_dir: Path, **options)`` (``--logger-arg NAME.KEY=VALUE``) and returns a
        :class:`blitz.MetricLogger`.
    """


@hookspec
def register_recipes(register: RegisterRecipe) -> None:
    """Register recipes: named training setups, as registry.toml's ``[recipes.<name>]`` tables.

    :param register: call ``register(name, description=..., measured=..., **config)`` with any
        ``blitz run`` config keys (``model="tiny_cnn", epochs=10, model_args={"width": 8}``); users
        run it as ``blitz run --recipe name``. A name registry.toml already gives a recipe is
        refused (the catalog's is kept), as is a key that is not a config key.
    """


@hookspec
def on_train_start(run: TrainingRun) -> None:
    """Called once before the first training step, after the model, data and optimizer exist.

    :param run: the training run: its ``config``, ``model``, ``info`` and ``run_dir``.
    """


@hookspec
def on_epoch_end(run: TrainingRun, epoch: int, metrics: dict[str, Any]) -> None:
    """Called after each epoch's evaluation.

    :param run: the training run.
    :param epoch: the epoch that ended, counting from 1.
    :param metrics: this epoch's figures: ``train_loss``, ``test_loss``, ``test_accuracy``,
        ``images_per_s``, ``lr``, ``seconds``; ``test_loss`` and ``test_accuracy`` are None after
        an epoch that was not evaluated (``--eval-every``).
    """


@hookspec
def on_train_end(run: TrainingRun, metrics: dict[str, Any]) -> None:
    """Called once after training ends normally.

    :param run: the training run.
    :param metrics: the final figures, including ``test_accuracy`` and ``per_class_accuracy``
        (``{class name: fraction}``; None for a class without test examples).
    """
