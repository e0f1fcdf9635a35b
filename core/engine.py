"""The training engine: train, evaluate and checkpoint the components a config names.

The hot loop is lean on purpose: no host sync per step (the loss is summed on the device and
read every ``log_every`` steps), ``zero_grad(set_to_none=True)``, fused optimizers where the
optimizer plugin asks for them, and batches that are already on the device.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from rich.console import Console
from torch import nn

from blitz import checkpoint as ckpt
from blitz import runs
from blitz.batches import LoaderBatches, TensorBatches, mix_seed
from blitz.build import (
    Components,
    build_model,
    call_factory,
    call_with_options,
    check_augment,
    check_batch_norm_batches,
    check_fit,
    check_options,
    check_optimizer_covers,
    check_returned,
    check_schedule,
    check_trainable,
    component_origins,
    contested_components,
    data_warnings,
    first_line,
    load_data,
    resolve_components,
    with_normalization,
)
from blitz.components import DataBundle, DataInfo, Strategy, TensorSplit, direct_gradients_of
from blitz.config import RunConfig, unused_logger_options
from blitz.errors import (
    BlitzError,
    ConfigError,
    FailedElsewhere,
    Interrupted,
    OutputError,
    PluginError,
    TrainingDivergedError,
    UsageError,
    same_on_every_rank,
)
from blitz.cuda_graphs import TrainingGraphs, cuda_graphs_problem
from blitz.freezing import GradientFreezer, can_freeze
from blitz.launch import launched_by_torchrun
from blitz.notices import warning_markup
from blitz.optimizer_state import has_step_hooks, restore_optimizer
from blitz.plugin_host import PluginHost, get_host
from blitz.progress import EpochProgress
from blitz.reproducibility import rng_state, seed_everything, set_rng_state
from blitz.run_loggers import start_loggers
from blitz.resume import (
    EpochSoFar,
    check_epochs_cover,
    check_process_count,
    check_resumable,
    check_same_epoch_length,
    load_resumable,
    resume_position,
)
from blitz.stopping import StopRequest
from blitz.scoring import EvalResult, EvaluationStopped, autocast, evaluate, without_grad
from blitz.thread_tuner import ThreadTuner
from blitz.timing import Clock


def release_compile_workers() -> None:
    """Shut inductor's compile workers down in the background, once the warm-up has compiled
    every graph of the run.

    On a GPU, torch.compile starts a helper process with a worker per CPU core, also when every
    graph comes from its cache. Left running, it is waited for at exit (a second or two), and
    until it is gone it holds the caller's output pipe open. A later compilation starts it again.
    """
    try:
        from torch._inductor.async_compile import shutdown_compile_workers
    except ImportError:  # a private API: without it the workers stay, as they would anyway
        return

    def shut_down() -> None:
        with contextlib.suppress(Exception):  # housekeeping: a failure costs only the time saved
            shutdown_compile_workers()

    threading.Thread(target=shut_down, name="blitz-compile-workers", daemon=True).start()


@dataclass
class TrainingRun:
    """What lifecycle hooks see of a run (loggers get its records, as dicts)."""

    config: RunConfig
    info: DataInfo
    model: nn.Module
    strategy: Strategy
    run_dir: Path | None
    components: Components
    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path | None
    final: EvalResult
    history: list[dict[str, Any]]
    info: DataInfo
    train_seconds: float
    images_per_s: float
    timed_seconds: float = 0.0  # airbench-style: data fitting, steps and evaluations (CUDA events on a GPU)
    model: nn.Module | None = None  # the trained model, unwrapped
    test_split: Any = None  # the test split as evaluated (for the report's pictures)


@dataclass
class _Session:
    """What one training run works with: built by ``Trainer._start_session``, then handed to (and
    advanced by) each phase of the run: resume, epochs, checkpoints, finish."""

    run: TrainingRun
    model: nn.Module  # the bare model: checkpoints hold its weights
    train_model: nn.Module  # as the strategy wraps it (and --compile compiles it)
    batches: TensorBatches | LoaderBatches
    test_split: Any
    memory_format: torch.memory_format
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    total_steps: int
    clock: Clock  # airbench-style time: fitting to the data, training steps, evaluations
    loggers: list[Any] = field(default_factory=list)
    best_accuracy: float = -1.0  # -1: no evaluation yet
    latest: EvalResult | None = None  # the last evaluation
    start_epoch: int = 1  # where training (re)starts
    start_step: int = 0
    evaluation_pending: bool = False  # the last finished epoch's evaluation was abandoned (Ctrl-C)
    so_far: EpochSoFar = field(default_factory=EpochSoFar)  # of the epoch a resumed run goes on with
    may_freeze: bool = False  # whether gradients a schedule ends early may be turned off (blitz.freezing)
    use_graphs: bool = False  # --cuda-graphs, where it can be used: captured in the warm-up
    graphs: TrainingGraphs | None = None  # the captured training step, removed when training ends
    freezer: GradientFreezer = field(default_factory=GradientFreezer)  # set once training starts


class _LossWindow:
    """The training steps since the last sync point: their losses (kept as tensors, summed at the
    sync point: one add per window, and no host sync per step), images and start time."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.images = 0
        self.start = time.perf_counter()

    @property
    def steps(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.losses.append(loss)
        self.images += images

    def loss_sum(self) -> torch.Tensor:
        return torch.stack(self.losses).sum(dtype=torch.float32)

    def restart(self) -> float:
        """Empty the window; returns its images per second."""
        now = time.perf_counter()
        rate = self.images / max(now - self.start, 1e-9)
        self.losses.clear()
        self.images, self.start = 0, now
        return rate


# Up to this batch size a CPU run trains on one thread by default: a second one gains ~15 % on
# an idle 2-core machine and loses 17 % to 3.4x when other work shares the cores (batch 4, measured).
SMALL_CPU_BATCH = 16


def cpu_threads(count: int) -> str:
    """``1 CPU thread``, ``2 CPU threads``."""
    return f"{count} CPU thread{'' if count == 1 else 's'}"


@contextlib.contextmanager
def threads_for(count: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``count`` inside (None: as it is), and put back after
    (also where a ThreadTuner changed it inside)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Trainer:
    """Trains one config end to end. ``console`` receives everything printed."""

    def __init__(
        self,
        config: RunConfig,
        *,
        console: Console | None = None,
        host: PluginHost | None = None,
        resume_from: Path | None = None,
        write_run: bool = True,
    ) -> None:
        self.config = config
        self.host = host or get_host()
        self.console = console or Console(emoji=False)
        self.resume_from = resume_from
        self.write_run = write_run
        self.stop = StopRequest()
        unused = unused_logger_options(config)  # also for a config built in Python, not only the CLI's
        if unused:
            raise ConfigError(f"{unused}.")
        self.components = resolve_components(config, self.host)
        with same_on_every_rank():  # a misspelt option: said before any data loads
            check_options(self.components, config, loggers=write_run)
        self.train_threads: int | None = None  # set by fit: the CPU threads of training steps
        self.thread_tuner: ThreadTuner | None = None  # set by fit for --cpu-threads auto on CPUs
        self.run_lock: IO[str] | None = None  # held while this process trains in its run folder
        self.keep_run_lock = False  # True: the caller releases it (the CLI, after the report)
        self.compile_setup_seconds = 0.0  # torch.compile's own call, shown as part of the warm-up

    def say(self, message: str) -> None:
        if self.strategy.is_main:  # one line each, never cut mid-value: a log or a pipe is read by grep
            self.console.print(message, highlight=False, soft_wrap=True)

    def warn_all(self, warnings: list[str]) -> None:
        for warning in warnings:  # plugin text: "[x]" in it is not markup
            self.say(warning_markup(warning))

    def fit(self) -> TrainResult:
        config, c = self.config, self.components
        strategy: Strategy = check_returned(
            c.strategy, "Strategy", call_factory(c.strategy, "Strategy", device=config.device), Strategy
        )
        self.strategy = strategy
        self.warn_all(contested_components(c, self.host))
        broken = self.host.failed()
        if broken:  # some of their hooks or components may be missing from this run
            self.warn_all([f"{len(broken)} plugin(s) have problems (failed to load, or some of what they register "
                           f"was refused): {', '.join(repr(b) for b in broken[:5])}; see 'blitz list-plugins'."])
        started = int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
        if started > 1 and strategy.world_size == 1:  # each process would train alone, on all the data
            raise UsageError(
                f"torchrun started {started} processes, but --strategy {config.strategy} trains in one; "
                "use --strategy ddp (or auto) under torchrun."
            )
        threads = torch.get_num_threads()
        try:
            strategy.setup()  # inside: teardown runs once, also when setup fails
            with self.stop.installed():
                return self._fit(strategy)
        finally:
            torch.set_num_threads(threads)  # the run's thread count is the run's, not the caller's
            if not self.keep_run_lock:
                self.release_run()
            strategy.teardown()

    def release_run(self) -> None:
        """Let other processes resume this run (``fit`` does it, unless ``keep_run_lock``)."""
        runs.release_run(self.run_lock)
        self.run_lock = None

    def _choose_threads(self, strategy: Strategy) -> str:
        """Set the CPU thread counts of evaluation and training steps (``train_threads``, or
        ``thread_tuner`` for --cpu-threads auto); returns the Strategy line's words for them."""
        config = self.config
        if isinstance(config.cpu_threads, int):
            torch.set_num_threads(config.cpu_threads)
        on_cpu = strategy.device.type == "cpu"
        threads = torch.get_num_threads()
        # Training steps of small CPU batches: one thread, unless --cpu-threads or OMP_NUM_THREADS
        # says otherwise (evaluation batches are large and keep the process's threads); auto:
        # 1 or 2, the faster as timed while training (thread_tuner.py)
        auto = on_cpu and config.cpu_threads == "auto"
        # auto trains as unset where there is nothing to choose from (one thread), or timing
        # cannot choose: ddp's processes wait on each other's steps, and compiled CPU kernels keep
        # the thread count they were compiled with
        declined = auto and (threads == 1 or strategy.world_size > 1 or config.compile)
        self.train_threads = (
            1 if on_cpu and (config.cpu_threads is None or declined) and "OMP_NUM_THREADS" not in os.environ
            and config.batch_size <= SMALL_CPU_BATCH else None
        )
        self.thread_tuner = ThreadTuner((1, 2)) if auto and not declined else None
        if not on_cpu:
            return ""
        # after '; ', not ', ': the strategy's words may end in auto's reason, which these are not part of
        if self.thread_tuner:
            return f"; 1 or 2 CPU threads to train (the faster as timed), {threads} to evaluate"
        if self.train_threads is None or self.train_threads == threads:
            return f"; {cpu_threads(threads)}"
        return f"; {cpu_threads(self.train_threads)} to train, {threads} to evaluate"

    def _fit(self, strategy: Strategy) -> TrainResult:
        config = self.config
        seed_everything(config.seed, config.deterministic, strategy.device)
        self.say(f"Strategy: {strategy.describe()}{self._choose_threads(strategy)}")
        state = self._resumable_state() if self.resume_from is not None else None  # before any work
        if self.write_run and state is None and config.out is not None:
            with same_on_every_rank():  # before the data is loaded: a clash is said at once
                runs.check_out_dir(config.out)
        if self.write_run and state is None and strategy.is_main:  # rank 0's folder: also before the data
            runs.check_creatable(config.out or runs.runs_root(), runs.out_advice(config))
        session = self._start_session(strategy)
        if state is not None:
            with same_on_every_rank():  # each rank checks the same checkpoint against the same settings
                self._resume(session, state)
        self._open_run(session)
        if state is not None:
            # Loggers drop what they hold past this point (work the stop or crash lost, which
            # the run now does again): metrics.jsonl keeps one record per epoch and step.
            self._log(session, {"event": "resume", "epoch": session.start_epoch, "step": session.run.global_step})
        with self._outcome_recorded(session):
            try:
                if strategy.is_main:
                    self.host.start_run()
                    self.warn_all(self.host.call_lifecycle("on_train_start", run=session.run))
                # After the hooks (they see the model as built) and the resume (the schedule as
                # saved); a resumed run starts with what it had frozen by then.
                session.freezer = GradientFreezer.for_schedule(
                    session.scheduler, self.components.schedule.name, session.may_freeze
                )
                session.freezer.catch_up(session.run.global_step)
                loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
                if strategy.device.type == "cuda" or config.compile or session.use_graphs:
                    session.graphs = self._warm_up(
                        session.train_model, session.model, session.run.info, session.batches,
                        session.test_split, loss_fn, session.memory_format, session.optimizer,
                        capture_graphs=session.use_graphs,
                    )
                latest = self._train_epochs(session, loss_fn)
            finally:  # also when warm-up, training or a hook fails: files flushed, writers stopped
                session.freezer.restore()  # the model leaves training as it came
                if session.graphs is not None:
                    session.graphs.remove()
                for logger in session.loggers:
                    logger.close()
            return self._finish(session, latest)

    @contextlib.contextmanager
    def _outcome_recorded(self, session: _Session) -> Iterator[None]:
        """summary.json says how a run ended early: ``stopped`` (by a signal; resumable from
        last.ckpt) or ``failed``. It says ``running`` from the start, so `blitz runs` lists
        a run that ends in its first epoch too."""
        if session.run.strategy.is_main:  # a resumed run's epoch so far counts from the start
            self._write_summary(session.run, "running", session.best_accuracy, session.latest, partial=session.so_far.seconds)
        try:
            yield
        except BaseException as exc:
            if session.run.strategy.is_main:
                status = "stopped" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "failed"
                with contextlib.suppress(Exception):  # the error at hand is the one to report
                    self._write_summary(
                        session.run, status, session.best_accuracy, session.latest, partial=session.so_far.seconds,
                        error=f"{type(exc).__name__}: {first_line(exc)}" if status == "failed" else None,
                    )
            raise

    def _start_session(self, strategy: Strategy) -> _Session:
        """Data, model, batches, optimizer and schedule, in the order that keeps runs reproducible
        (the seeds set here decide the initial weights and each rank's random stream)."""
        bundle = self._load_data(strategy)
        with same_on_every_rank():  # every rank builds the same from the same data
            return self._build_session(strategy, bundle)

    def _build_session(self, strategy: Strategy, bundle: DataBundle) -> _Session:
        config, c = self.config, self.components
        info = bundle.info
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = build_model(c.model, info, config)
        check_fit(model, info, c.model.name, c.dataset.name)
        check_trainable(c.model, model)
        parameters = sum(p.numel() for p in model.parameters())
        self.say(f"Model: {c.model.name}, {parameters:,} parameters")
        torch.manual_seed(mix_seed(config.seed, strategy.rank))  # each rank draws its own dropout noise

        if config.channels_last and not info.is_image:
            self.warn_all([f"--channels-last is not used: dataset '{c.dataset.name}' gives inputs of shape "
                           f"{tuple(info.input_shape)}, not images."])
        memory_format = torch.channels_last if config.channels_last and info.is_image else torch.contiguous_format
        check_batch_norm_batches(model, config, len(bundle.train) // strategy.world_size, c.model.name, info.input_shape)
        batches = self._train_batches(bundle, strategy, memory_format)
        if batches.per_rank == 0:  # ddp shards whole examples: it trained no step, with a loss of 0 shown
            raise UsageError(
                f"Dataset '{c.dataset.name}' has {len(bundle.train)} training example(s) for {strategy.world_size} "
                f"processes: each would train on none. Start at most {len(bundle.train)} (--nproc-per-node), or use more data."
            )
        # airbench-style time: fitting the model to the data, training steps and evaluations
        # (not warm-up, checkpoints, logs or hooks)
        clock = Clock(strategy.device)
        self._init_from_data(model, batches, clock)
        model = model.to(strategy.device, memory_format=memory_format)
        test_split = bundle.test
        if isinstance(test_split, TensorSplit):  # keep it resident too: evaluation is a hot path on GPUs
            test_split = TensorSplit(test_split.images.to(strategy.device), test_split.labels.to(strategy.device))
        steps_per_epoch = len(batches)
        if config.limit_steps:
            steps_per_epoch = min(steps_per_epoch, config.limit_steps)
        total_steps = max(1, steps_per_epoch * config.epochs)
        optimizer, scheduler = self._build_optimizer(model, total_steps)
        train_model = strategy.wrap(model)
        self.compile_setup_seconds = 0.0
        scaled = config.precision == "16-mixed"
        use_graphs = config.cuda_graphs and self._graphs_usable(train_model, model)
        may_freeze = can_freeze(train_model, model, compiled=config.compile, scaled=scaled, graphed=use_graphs)
        if config.compile:
            started = time.perf_counter()
            train_model = torch.compile(train_model, mode=config.compile_mode)
            self.compile_setup_seconds = time.perf_counter() - started  # imports the compiler: ~1 s
        return _Session(
            run=TrainingRun(config, info, model, strategy, None, c),
            model=model,
            train_model=train_model,
            batches=batches,
            test_split=test_split,
            memory_format=memory_format,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler(strategy.device.type, enabled=scaled),
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            clock=clock,
            may_freeze=may_freeze,
            use_graphs=use_graphs,
        )

    def _init_from_data(self, model: nn.Module, batches: TensorBatches | LoaderBatches, clock: Clock) -> None:
        """A model's ``init_from_data`` (airbench's whitening layer), on up to 5,000 training
        images held as tensors; timed as training, as airbench times it."""
        init_from_data = getattr(model, "init_from_data", None)
        if not (callable(init_from_data) and isinstance(batches, TensorBatches)):
            return
        if self.resume_from is None:  # a resumed run timed it when it first did it (then loads over it)
            clock.resume()
        sample = batches.normalize(batches.images[:5000], torch.contiguous_format)
        init_from_data(sample)  # on the training device, where the images are
        clock.pause()

    def _build_optimizer(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """The run's optimizer over ``model`` and its schedule over ``total_steps``, checked."""
        config, c = self.config, self.components
        optimizer = check_returned(c.optimizer, "Optimizer", call_with_options(
            c.optimizer, "Optimizer", model, given=config.optimizer_args,
            lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
            **{**c.optimizer.defaults, **config.optimizer_args},
        ), torch.optim.Optimizer)
        self.warn_all(check_optimizer_covers(c.optimizer, optimizer, model))
        scheduler = check_schedule(c.schedule, call_with_options(
            c.schedule, "Schedule", optimizer, given=config.schedule_args, total_steps=total_steps,
            **{**c.schedule.defaults, **config.schedule_args},
        ))
        return optimizer, scheduler

    def _load_data(self, strategy: Strategy) -> DataBundle:
        config, c = self.config, self.components
        # One process per machine prepares the data first (a download must happen once per
        # file system), the others wait and then read what it wrote.
        first = strategy.local_rank == 0
        failure: BlitzError | None = None
        if first:
            try:
                bundle = load_data(c.dataset, config)
            except BlitzError as exc:
                failure = exc
        if strategy.world_size > 1:
            # They say how it went, where a barrier would leave the others waiting for a rank that
            # failed until gloo or NCCL gave up, with a traceback of its own.
            failed, refused = strategy.all_reduce_sum(torch.tensor(
                [float(failure is not None), float(isinstance(failure, UsageError))], device=strategy.device
            )).tolist()
            if failed and failure is None:
                raise FailedElsewhere(UsageError.exit_code if refused else BlitzError.exit_code)
        if failure is not None:
            raise failure
        if not first:
            bundle = load_data(c.dataset, config)
        self.warn_all(data_warnings(c.dataset.name, bundle))
        info = with_normalization(bundle.info, config)
        check_augment(info, config)
        bundle.info = info
        self.say(
            f"Data: {c.dataset.name}, {len(bundle.train):,} train and {len(bundle.test):,} test examples, "
            f"{info.num_classes} classes, input {tuple(info.input_shape)}"
        )
        return bundle

    def _resumable_state(self) -> ckpt.Checkpoint:
        """The checkpoint to resume from, refused at once if it has nothing left to do or if
        another process is training the run now (this one then holds the run until it ends)."""
        assert self.resume_from is not None
        state = load_resumable(self.resume_from)
        check_resumable(state.meta, self.config.epochs)
        if self.write_run and self.strategy.is_main:
            self.run_lock = runs.lock_run(self.resume_from.parent.parent)  # <run>/checkpoints/last.ckpt
        return state

    def _resume(self, session: _Session, state: ckpt.Checkpoint) -> None:
        """Load ``state`` (the checkpoint ``resume_from``) into the session: weights, optimizer,
        schedule, scaler, data order, random state and where to start."""
        assert self.resume_from is not None
        config, strategy, run = self.config, session.run.strategy, session.run
        ckpt.load_weights(session.model, state.model, str(self.resume_from))
        training = state.training
        restore_optimizer(session.optimizer, training["optimizer"])
        session.scheduler.load_state_dict(training["scheduler"])
        session.scaler.load_state_dict(training["scaler"])
        session.batches.load_state_dict(training["batches"])
        set_rng_state(training["rng"])
        global_step = int(state.meta["global_step"])
        if strategy.world_size > 1:  # only rank 0's random state was saved: give each rank its own
            torch.manual_seed(mix_seed(config.seed, strategy.rank, global_step))
            session.batches.reseed(config.seed, strategy.rank, global_step)
        run.history = list(state.meta.get("history", []))
        session.evaluation_pending = bool(state.meta.get("evaluation_pending", False))
        session.clock.earlier = float(state.meta.get("timed_seconds", 0.0))
        session.best_accuracy = float(state.meta.get("best_accuracy", -1.0))
        check_process_count(state.meta, strategy.world_size)  # on the saved position, before it is normalised
        check_same_epoch_length(state.meta, session.batches, session.steps_per_epoch, config.limit_steps, strategy.world_size)
        start_epoch, start_step = resume_position(state.meta, session.steps_per_epoch)
        session.start_epoch, session.start_step = start_epoch, start_step
        if start_step > 0:
            session.so_far = EpochSoFar.from_meta(state.meta.get("epoch_so_far"))
        run.global_step = global_step
        check_epochs_cover(state.meta, config.epochs, start_epoch, start_step)
        self.say(f"Resuming from {self.resume_from} at epoch {start_epoch}, step {start_step}")
        saved_total = state.meta.get("total_steps")
        schedule = self.components.schedule.name
        if saved_total is not None and saved_total != session.total_steps and schedule != "constant":
            raise UsageError(
                f"The '{schedule}' schedule of this run was built for {saved_total} steps, and "
                f"--epochs/--nproc-per-node now make {session.total_steps}: resume with the run's own "
                "--epochs and process count, or start a new run (only 'constant' can be extended)."
            )

    def _open_run(self, session: _Session) -> None:
        """The run folder (rank 0 writes its start files) and the loggers, on the main rank."""
        strategy = session.run.strategy
        run_dir = self._prepare_run_dir(strategy)
        session.run.run_dir = run_dir
        try:
            session.loggers = start_loggers(self.components, self.config, run_dir, self.warn_all) if strategy.is_main else []
        except BaseException:  # a usage error, or a logger plugin's bug (shown with its traceback)
            if run_dir is not None and self.resume_from is None:
                self.release_run()
                shutil.rmtree(run_dir, ignore_errors=True)  # it holds only the start files
            raise

    def _train_epochs(self, session: _Session, loss_fn: nn.Module) -> EvalResult | None:
        """The epochs left to train, each followed by its evaluation, checkpoints, logs and hooks
        (first the evaluation a stop abandoned, if any). Returns the last evaluation (None if no
        epoch was due one)."""
        config, run = self.config, session.run
        latest: EvalResult | None = None
        if session.evaluation_pending:
            latest = self._complete_pending_evaluation(session)
        progress = EpochProgress(self.console, enabled=run.strategy.is_main)
        try:
            for epoch in range(session.start_epoch, config.epochs + 1):
                run.epoch = epoch
                session.clock.resume()
                first = session.start_step if epoch == session.start_epoch else 0
                before, session.so_far = (session.so_far if first else EpochSoFar()), EpochSoFar()
                epoch_start = time.perf_counter()
                with threads_for(self.train_threads):
                    steps_done, images, loss_sum = self._train_epoch(session, loss_fn, epoch, first, progress)
                done = EpochSoFar(
                    before.steps + steps_done - first, before.loss_sum + loss_sum,
                    before.seconds + time.perf_counter() - epoch_start, before.images + images,
                )
                if steps_done < session.steps_per_epoch and self.stop_agreed():
                    session.so_far = done  # saved with the checkpoint, for the resumed epoch's record
                    self._save_checkpoint(session, "last", epoch, steps_done)
                    raise self._interrupted(f"at epoch {epoch}, step {steps_done}", run.run_dir)
                due = epoch == config.epochs or (config.eval_every > 0 and epoch % config.eval_every == 0)
                abandoned = False
                try:
                    result = self._evaluate(session) if due else None
                except EvaluationStopped:  # Ctrl-C need not wait for a long evaluation
                    result, abandoned = None, True
                # an abandoned evaluation is done first when the run resumes (the checkpoint
                # holds the weights it was due on)
                session.evaluation_pending = abandoned
                session.clock.pause()
                latest = session.latest = result or latest
                loss_avg = done.loss_sum / max(done.steps, 1)
                threads_used = self.thread_tuner.take_steps_at() if self.thread_tuner else None
                checkpoint_due = self._end_epoch(
                    session, epoch, loss_avg, result, latest, done.images, done.seconds, threads_used
                )
                if abandoned or (epoch < config.epochs and self.stop_agreed()):  # a signal in evaluation or hooks
                    if not checkpoint_due:
                        self._save_checkpoint(session, "last", epoch + 1, 0)
                    where = f"during the evaluation after epoch {epoch}" if abandoned else f"after epoch {epoch}"
                    raise self._interrupted(where, run.run_dir)
        finally:
            progress.stop()
        return latest

    def _end_epoch(
        self, session: _Session, epoch: int, loss_avg: float, result: EvalResult | None,
        latest: EvalResult | None, images: int, epoch_seconds: float, threads_used: dict[int, int] | None = None,
    ) -> bool:
        """Record, print, checkpoint, log and announce a finished epoch; whether it checkpointed.

        ``threads_used``: the epoch's steps at each CPU thread count, where --cpu-threads auto chose.
        """
        config, run = self.config, session.run
        metrics = {
            "event": "epoch",
            "schema": runs.METRICS_SCHEMA,
            "epoch": epoch,
            "step": run.global_step,
            "train_loss": loss_avg,
            "test_loss": result.loss if result else None,
            "test_accuracy": result.accuracy if result else None,
            "images_per_s": images / epoch_seconds if epoch_seconds > 0 else 0.0,
            "lr": session.optimizer.param_groups[0]["lr"],
            "seconds": epoch_seconds,
        }
        threads_text = ""
        steps_timed = sum(threads_used.values()) if threads_used else 0
        if threads_used and steps_timed:
            metrics["cpu_threads_steps"] = {str(n): steps for n, steps in threads_used.items()}
            most = max(threads_used, key=lambda n: threads_used[n])
            threads_text = f", {cpu_threads(most)} for {100 * threads_used[most] / steps_timed:.0f} % of steps"
        run.history.append({k: v for k, v in metrics.items() if k not in ("event", "schema")})
        tested = f"  test loss {result.loss:.3f}  test accuracy {100 * result.accuracy:.2f} %" if result else ""
        self.say(
            f"epoch {epoch}/{config.epochs}  train loss {loss_avg:.3f}{tested}  "
            f"({metrics['images_per_s']:,.0f} img/s, {epoch_seconds:.1f} s{threads_text})"
        )
        improved = False
        if result is not None and result.accuracy > session.best_accuracy:
            session.best_accuracy, improved = result.accuracy, True  # before saving: last.ckpt carries it
        every = config.checkpoint_every
        checkpoint_due = epoch == config.epochs or (every > 0 and epoch % every == 0)
        if checkpoint_due:
            self._save_checkpoint(session, "last", epoch + 1, 0)
        if improved:
            # The model to use (`blitz eval` and `predict` default to it), whatever
            # checkpoint_every says: that spacing is for resuming, from last.ckpt.
            self._save_checkpoint(session, "best", epoch + 1, 0)
        self._publish_epoch(session, epoch, metrics, latest)
        return checkpoint_due

    def _publish_epoch(self, session: _Session, epoch: int, metrics: dict[str, Any], latest: EvalResult | None) -> None:
        """An epoch's record to the loggers and the on_epoch_end hooks, and summary.json."""
        run = session.run
        self._log(session, metrics)
        if run.strategy.is_main:
            self.warn_all(self.host.call_lifecycle("on_epoch_end", run=run, epoch=epoch, metrics=metrics))
            self._write_summary(run, "running", session.best_accuracy, latest)

    def _evaluate(self, session: _Session, checkpointed: bool = False) -> EvalResult:
        """The test split's evaluation; a loss that is not finite ends the run as diverged (its
        weights are kept from best.ckpt, however they score). ``checkpointed``: last.ckpt holds
        the weights evaluated (an evaluation redone on resume, or the final one)."""
        alone = session.run.strategy.world_size == 1
        result = evaluate(
            session.train_model, session.test_split, session.run.info, session.run.strategy, self.config,
            session.memory_format, should_stop=(lambda: self.stop.signal_number is not None) if alone else None,
            source=self._data_source(),
        )
        if not math.isfinite(result.loss):
            raise TrainingDivergedError(
                f"The test loss became {result.loss} after step {session.run.global_step} (epoch "
                f"{session.run.epoch}, lr {session.optimizer.param_groups[0]['lr']:.3g}): the model's outputs are no "
                f"longer finite; stopped. {self._kept_checkpoint(session.run, checkpointed)} Try a lower --lr."
            )
        return result

    @staticmethod
    def _kept_checkpoint(run: TrainingRun, checkpointed: bool = False) -> str:
        """Where a diverged run's last good weights are, if anywhere (``checkpointed``: last.ckpt
        holds the diverged ones)."""
        kept = run.run_dir / "checkpoints" if run.run_dir else None
        if kept and (kept / "last.ckpt").exists():
            if checkpointed:
                return f"{kept / 'last.ckpt'} holds these weights: no good checkpoint is kept."
            return f"The last good checkpoint is kept in {kept}."
        return "No checkpoint had been saved yet."

    def _finish(self, session: _Session, latest: EvalResult | None) -> TrainResult:
        """The final evaluation if no epoch made one, the finished summary and the end hook."""
        run, strategy, info = session.run, session.run.strategy, session.run.info
        final = latest
        if final is None:  # nothing left to train (epochs 0, or a run stopped right after its last step)
            session.clock.resume()
            try:
                final = self._evaluate(session, checkpointed=True)
            except EvaluationStopped:
                raise self._interrupted("during the final evaluation", run.run_dir) from None
        timed_seconds = session.clock.total()
        per_class = final.per_class(info.class_names)
        if strategy.is_main:
            self._write_summary(run, "finished", max(session.best_accuracy, final.accuracy), final, timed_seconds)
            self.warn_all(self.host.call_lifecycle(
                "on_train_end", run=run,
                metrics={"test_accuracy": final.accuracy, "test_loss": final.loss, "per_class_accuracy": per_class},
            ))
        strategy.barrier()  # every rank done before any tears the process group down
        # The whole run's training, earlier sessions of a resumed run included (from the records)
        train_seconds = sum(h["seconds"] for h in run.history)
        images = sum(h["images_per_s"] * h["seconds"] for h in run.history)
        return TrainResult(
            run_dir=run.run_dir,
            final=final,
            history=run.history,
            info=info,
            train_seconds=train_seconds,
            images_per_s=images / train_seconds if train_seconds > 0 else 0.0,
            model=session.model,
            test_split=session.test_split,
            timed_seconds=timed_seconds,
        )

    def _complete_pending_evaluation(self, session: _Session) -> EvalResult:
        """The evaluation a stop abandoned after the last finished epoch, run first on resume (the
        weights are those it was due on): into that epoch's record (logged again, complete),
        best.ckpt if it is the best, and last.ckpt (no longer pending)."""
        run = session.run
        epoch = session.start_epoch - 1
        self.say(f"Evaluating epoch {epoch} first: a stop had cut its evaluation short")
        session.clock.resume()
        try:
            result = self._evaluate(session, checkpointed=True)
        except EvaluationStopped:  # stopped again: last.ckpt still says pending
            raise self._interrupted(f"during the evaluation after epoch {epoch}", run.run_dir) from None
        session.clock.pause()
        session.evaluation_pending = False
        session.latest = result
        self.say(f"epoch {epoch}/{self.config.epochs}  test loss {result.loss:.3f}  test accuracy "
                 f"{100 * result.accuracy:.2f} %  (its evaluation, redone)")
        record = run.history[-1] if run.history and run.history[-1].get("epoch") == epoch else None
        if record is not None:
            record.update(test_loss=result.loss, test_accuracy=result.accuracy)
        improved = result.accuracy > session.best_accuracy
        session.best_accuracy = max(session.best_accuracy, result.accuracy)
        self._save_checkpoint(session, "last", epoch + 1, 0)
        if improved:
            self._save_checkpoint(session, "best", epoch + 1, 0)
        if record is not None:  # loggers and hooks saw the epoch without test figures: now with them
            self._publish_epoch(session, epoch, {"event": "epoch", "schema": runs.METRICS_SCHEMA, **record}, result)
        elif run.strategy.is_main:
            self._write_summary(run, "running", session.best_accuracy, result)
        return result

    def _log(self, session: _Session, record: dict[str, Any]) -> None:
        """``record`` (with the metrics schema) to every logger (the main rank's)."""
        record = {"event": record["event"], "schema": runs.METRICS_SCHEMA, **record}
        for logger in session.loggers:
            logger.log(record)

    def _save_checkpoint(self, session: _Session, name: str, epoch: int, step_in_epoch: int) -> None:
        """Write ``<run>/checkpoints/<name>.ckpt`` (main rank only): what a resume needs to go on
        exactly, and what `blitz eval`/`predict` need to rebuild the model."""
        run, config, c = session.run, self.config, self.components
        if run.run_dir is None or not run.strategy.is_main:
            return
        info = run.info
        meta = {
            "model": c.model.name,
            "model_component": c.model.entry.name,
            "model_args": {**c.model.defaults, **config.model_args},
            "dataset": c.dataset.name,
            "dataset_args": {**c.dataset.defaults, **config.dataset_args},
            "num_classes": info.num_classes,
            "input_shape": list(info.input_shape),
            "class_names": list(info.class_names),
            "mean": list(info.mean),
            "std": list(info.std),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": run.global_step,
            "total_steps": session.total_steps,
            "steps_per_epoch": session.steps_per_epoch,
            "evaluation_pending": session.evaluation_pending,
            "epoch_so_far": asdict(session.so_far) if step_in_epoch > 0 else None,
            "timed_seconds": session.clock.total(),  # so far: a resumed run adds to it
            "world_size": run.strategy.world_size,  # processes; a partial epoch resumes only with as many
            "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", run.strategy.world_size)),
            "best_accuracy": session.best_accuracy,
            "history": run.history,
            "blitz_checkpoint": True,
        }
        training = {
            "optimizer": session.optimizer.state_dict(),
            "scheduler": session.scheduler.state_dict(),
            "scaler": session.scaler.state_dict(),
            "batches": session.batches.state_dict(),
            "rng": rng_state(),
        }
        path = run.run_dir / "checkpoints" / f"{name}.ckpt"
        try:
            ckpt.save_checkpoint(path, ckpt.Checkpoint(meta, session.model.state_dict(), training))
        except OSError as exc:  # a full disk or a vanished folder: say so, keep the old file
            raise OutputError(
                f"Could not write the checkpoint '{path}': {exc.strerror or exc}. The previous "
                "checkpoint, if any, is intact; free space or fix the folder, then resume."
            ) from None

    def _warm_up(
        self, train_model: nn.Module, model: nn.Module, info: DataInfo, batches: TensorBatches | LoaderBatches,
        test_split: Any, loss_fn: nn.Module, memory_format: torch.memory_format,
        optimizer: torch.optim.Optimizer | None = None, capture_graphs: bool = False,
    ) -> TrainingGraphs | None:
        """Run each batch shape of the run once, forward and backward, and each evaluation shape
        forward, and take one optimizer step, before the clock starts: cuDNN's autotuning (and
        torch.compile's compilation) happen on the first batch of each shape, and a GPU loads
        each kernel (the optimizer's too) at its first launch; timed, all of it would count as
        training. Then, with ``capture_graphs``, capture the training step of the full batch as
        CUDA graphs (returned). Nothing else of it stays: weights, buffers, gradients, the
        optimizer's state and random state are put back.
        """
        config, device = self.config, self.strategy.device
        start = time.perf_counter()
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        random_state = rng_state()
        b = config.batch_size
        train_sizes = {min(b, batches.per_rank)}
        partial_kept = len(batches) * b > batches.per_rank  # (a last batch of one is left out)
        if partial_kept and (not config.limit_steps or config.limit_steps >= len(batches)):
            train_sizes.add(batches.per_rank % b)
        eval_count = len(range(self.strategy.rank, len(test_split), self.strategy.world_size))
        eval_sizes = {min(config.eval_batch_size, eval_count), eval_count % config.eval_batch_size}

        def inputs(n: int) -> torch.Tensor:
            x = torch.randn(n, *info.input_shape, device=device)
            return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x

        precision = autocast(config, device)
        train_model.train()
        for n in sorted(train_sizes - {0}):
            with precision:
                logits = train_model(inputs(n))
                try:
                    loss = loss_fn(logits, torch.zeros(n, dtype=torch.long, device=device))
                except (TypeError, ValueError, RuntimeError) as exc:
                    raise self._not_logits(logits, n, info.num_classes) or exc
            loss.backward()
        if optimizer is not None and any(p.grad is not None for p in model.parameters()) \
                and not has_step_hooks(optimizer):  # a hook (an EMA of the weights, say) would keep it
            saved_state = copy.deepcopy(optimizer.state_dict())  # tensors cloned: the step changes them
            optimizer.step()
            restore_optimizer(optimizer, saved_state)
        train_model.eval()
        with without_grad(train_model), precision:
            for n in sorted(eval_sizes - {0}):
                train_model(inputs(n))
        train_model.train()
        graphs = self._capture_graphs(train_model, batches, memory_format, inputs) if capture_graphs else None
        try:
            for p in model.parameters():
                p.grad = None
            model.load_state_dict(saved)  # in place: the graphs read the same tensors
            set_rng_state(random_state)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            what = " and ".join(w for w, on in (
                ("compiling", config.compile), ("cuDNN autotuning", device.type == "cuda"),
                ("capturing CUDA graphs", graphs is not None),
            ) if on)
            seconds = time.perf_counter() - start + self.compile_setup_seconds  # all that compiling cost
            self.say(f"Warm-up ({what}, not timed): {seconds:.1f} s")
        except BaseException:  # the caller never gets the graphs to remove: the model leaves as it came
            if graphs is not None:
                graphs.remove()
            raise
        if config.compile:
            release_compile_workers()
        return graphs

    def _capture_graphs(
        self, train_model: nn.Module, batches: TensorBatches | LoaderBatches, memory_format: torch.memory_format,
        inputs: Callable[[int], torch.Tensor],
    ) -> TrainingGraphs | None:
        """The full batch's training step captured as CUDA graphs (after the warm-up's autotuning:
        the graphs replay the kernels it chose), or None, with a warning, where the capture fails."""
        n = min(self.config.batch_size, batches.per_rank)
        # A sample as the training batches come (their dtype and layout), drawing no randomness,
        # in a buffer of its own: each replay copies its batch into it (float data comes out of
        # normalize() as a view of the stored examples, which it would overwrite).
        sample = (batches.normalize(batches.images[:n], memory_format).clone() if isinstance(batches, TensorBatches)
                  else inputs(n))
        try:
            with autocast(self.config, self.strategy.device, cache=False):
                return TrainingGraphs(train_model, sample)
        except Exception as exc:  # an op a graph cannot hold (a host sync, a module hook): train as usual
            reason = (str(exc).strip().splitlines() or [""])[0]  # CUDA's first line; the rest is advice
            self.warn_all([f"--cuda-graphs is not used: capturing the training step failed "
                           f"({type(exc).__name__}: {reason})."])
            return None

    def _graphs_usable(self, train_model: nn.Module, model: nn.Module) -> bool:
        """Whether this run can capture CUDA graphs (``--cuda-graphs``); says why not where not."""
        problem = cuda_graphs_problem(
            self.strategy.device, compiled=self.config.compile,
            wrapper=None if train_model is model else type(train_model).__name__,
        )
        if problem is not None:
            self.warn_all([f"--cuda-graphs is not used: {problem}."])
        return problem is None

    def _interrupted(self, where: str, run_dir: Path | None) -> Interrupted:
        signum = self.stop.signal_number or signal.SIGTERM
        resumable = run_dir is not None and (run_dir / "checkpoints" / "last.ckpt").is_file()
        resume = f"; its checkpoint is saved: resume with: blitz run --resume {run_dir}" if resumable else ""
        world = self.strategy.world_size
        if resume and world > 1:
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            resume += (
                f" (which starts the same {world} processes)" if per_node == world
                else f" --nproc-per-node {per_node} and the same --nnodes/--rdzv-* options on every machine"
            )
        name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
        return Interrupted(f"Stopped by {name} {where}{resume}", signum)

    def stop_agreed(self) -> bool:
        """Whether to stop now. With several processes every rank must agree, at the same step,
        or the next collective would hang: a signal seen by any rank stops them all."""
        if self.strategy.world_size == 1:
            return self.stop.signal_number is not None
        seen = torch.tensor([0 if self.stop.signal_number is None else 1], device=self.strategy.device)
        if int(self.strategy.all_reduce_sum(seen)) == 0:
            return False
        if self.stop.signal_number is None:
            self.stop.signal_number = signal.SIGTERM
        return True

    def _train_batches(self, bundle: DataBundle, strategy: Strategy, memory_format: torch.memory_format) -> TensorBatches | LoaderBatches:
        config = self.config
        if isinstance(bundle.train, TensorSplit):
            if config.num_workers:
                self.warn_all([
                    f"--num-workers {config.num_workers} is not used: '{self.components.dataset.name}' is held in "
                    "memory as tensors, batched without a DataLoader (workers help data read from files)."
                ])
            return TensorBatches(
                bundle.train, bundle.info, device=strategy.device, batch_size=config.batch_size,
                shuffle=config.shuffle, seed=config.seed, augment=config.augment,
                rank=strategy.rank, world_size=strategy.world_size, memory_format=memory_format,
            )
        if config.augment.alternates_flips:
            self.warn_all([
                f"--flip-mode alternate needs data held as tensors; '{self.components.dataset.name}' is read "
                "through a DataLoader, so its flips are random."
            ])
        return LoaderBatches(
            bundle.train, bundle.info, device=strategy.device, batch_size=config.batch_size,
            shuffle=config.shuffle, seed=config.seed, augment=config.augment, rank=strategy.rank,
            world_size=strategy.world_size, num_workers=config.num_workers, memory_format=memory_format,
            source=self._data_source(),
        )

    def _data_source(self) -> str:
        """How errors in the data name it: its bugs are its plugin's."""
        return self.components.dataset.named("Dataset")

    def _train_epoch(
        self, session: _Session, loss_fn: nn.Module, epoch: int, first_step: int, progress: EpochProgress
    ) -> tuple[int, int, float]:
        """Train one epoch from ``first_step``; returns (steps done, images, summed loss). Stops early,
        at a sync point, when a stop is agreed."""
        config, device = self.config, self.strategy.device
        run, model, optimizer, scheduler, scaler = (
            session.run, session.train_model, session.optimizer, session.scheduler, session.scaler
        )
        steps, world = session.steps_per_epoch, self.strategy.world_size
        model.train()
        loss_total, images = 0.0, 0
        window = _LossWindow()
        use_scaler = scaler.is_enabled()
        steps_done = first_step
        progress.start(epoch, config.epochs, steps, done=first_step)
        precision = autocast(config, device)
        direct = None if use_scaler else direct_gradients_of(model)
        freeze = session.freezer.after_step if session.freezer else None
        tuner = self.thread_tuner
        if tuner:
            tuner.start()
        for inputs, labels in session.batches.epoch(epoch, first_step):
            if steps_done >= steps:
                break
            optimizer.zero_grad(set_to_none=True)
            # Labels are in range here: a TensorSplit's are checked when loaded, a Dataset's per
            # batch (batches.check_labels), before the device could meet them as an assert.
            with precision:
                # A model's own step (gradients included) where it has one, else autograd's
                loss = direct(inputs, labels, loss_fn) if direct else None
                autograd = loss is None
                if autograd:
                    logits = model(inputs)
                    try:
                        loss = loss_fn(logits, labels)
                    except (TypeError, ValueError, RuntimeError) as exc:  # no cost in steps that do not raise
                        raise self._not_logits(logits, labels.shape[0], run.info.num_classes) or exc
            if use_scaler:  # fp16: scale the loss so small gradients survive, unscale before the step
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                if autograd:  # outside autocast, as PyTorch recommends
                    loss.backward()
                optimizer.step()
            scheduler.step()
            steps_done += 1
            run.global_step += 1
            if freeze:
                freeze(run.global_step)
            if tuner:
                tuner.after_step(labels.shape[0])
            n = labels.shape[0] * world  # every rank trains on as many: images/s is the whole job's
            window.add(loss.detach(), n)
            images += n
            # Sync points are at the same steps on every rank; alone, a stop request is one too.
            alone_stopping = world == 1 and self.stop.signal_number is not None
            if window.steps == config.log_every or steps_done == steps or alone_stopping:
                window_steps = window.steps
                loss_total += self._sync_point(session, window, epoch, steps_done, progress) * window_steps
                if self.stop_agreed():
                    break
        progress.stop()
        return steps_done, images, loss_total

    def _not_logits(self, output: Any, batch: int, num_classes: int) -> PluginError | None:
        """The model's bug where its training-mode output, which the loss refused, is not logits of
        shape (batch, num_classes): check_fit saw the eval-mode output only (Inception-style
        models return auxiliary logits too while training). None where the output looks right."""
        if isinstance(output, torch.Tensor) and tuple(output.shape) == (batch, num_classes):
            return None
        got = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
        return PluginError(
            f"{self.components.model.named('Model')} returned {got} in training mode, not logits of "
            f"shape ({batch}, {num_classes}): its forward must return one such tensor in training and in eval mode."
        )

    def _sync_point(
        self, session: _Session, window: _LossWindow, epoch: int, steps_done: int, progress: EpochProgress
    ) -> float:
        """The window's mean loss over all ranks (the loss of the global batch), read back every
        log_every steps: the training loop's only host sync. Shown, logged, and checked to be finite;
        the window starts again."""
        run, world = session.run, self.strategy.world_size
        steps = window.steps
        window_loss = float(self.strategy.all_reduce_sum(window.loss_sum())) / (steps * world)
        lr = session.optimizer.param_groups[0]["lr"]
        if not math.isfinite(window_loss):
            raise TrainingDivergedError(
                f"The loss became {window_loss} by step {run.global_step} (epoch {epoch}, "
                f"lr {lr:.3g}); stopped. {self._kept_checkpoint(run)} Try a lower --lr"
                + (" (from the first steps on, it may also be NaN or inf in the data or the model's output)."
                   if run.global_step == steps_done == steps else ".")
            )
        rate = window.restart()
        progress.update(steps_done, window_loss, rate)
        record = {
            "event": "step", "schema": runs.METRICS_SCHEMA, "epoch": epoch,
            "step": run.global_step, "loss": window_loss, "images_per_s": rate, "lr": lr,
        }
        for logger in session.loggers:
            logger.log(record)
        return window_loss

    def _prepare_run_dir(self, strategy: Strategy) -> Path | None:
        if not self.write_run:
            return None
        if self.resume_from is not None:
            path = self.resume_from.parent.parent  # <run>/checkpoints/last.ckpt
        elif strategy.is_main:
            path = runs.new_run_dir(self.config)
        else:
            path = None
        path = strategy.broadcast_object(path)
        if strategy.is_main:
            if self.run_lock is None:
                path.mkdir(parents=True, exist_ok=True)
                self.run_lock = runs.lock_run(path)
            plugins = {r.name: r.origin for r in self.host.records.values() if r.loaded}
            runs.write_start_files(
                path, self.config, self.strategy.describe(), plugins, component_origins(self.components),
                device_type=self.strategy.device.type,
            )
        return path

    def _write_summary(
        self, run: TrainingRun, status: str, best: float, last: EvalResult | None, timed: float | None = None,
        partial: float = 0.0, error: str | None = None,
    ) -> None:
        """summary.json; ``partial``: training seconds of an epoch stopped part-way (not in the
        history); ``error``: what ended a failed run."""
        if run.run_dir is None:
            return
        runs.write_summary(run.run_dir, {
            "status": status,
            "model": self.config.model,
            "dataset": self.config.dataset,
            "recipe": self.config.recipe,
            "epochs": self.config.epochs,
            "epochs_done": len(run.history),
            **({"limit_steps": self.config.limit_steps} if self.config.limit_steps else {}),
            "best_accuracy": best if best >= 0 else None,  # None: no evaluation yet
            "last_accuracy": last.accuracy if last else None,
            "seconds": sum(h["seconds"] for h in run.history) + partial,
            "timed_seconds": timed,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"error": error} if error else {}),
        })


__all__ = ["Trainer", "TrainResult", "TrainingRun"]
