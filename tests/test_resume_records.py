"""What a stopped, crashed or resumed run records: each epoch and step once, whole epochs, the
evaluation a stop abandoned done on resume; and the data path's edge cases found with them."""

from __future__ import annotations

import json
import time
from io import StringIO

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from blitz.batches import LoaderBatches, TensorBatches, augment, batches_per_epoch
from blitz.checkpoint import load_checkpoint
from blitz.config import AugmentConfig
from blitz.engine import Trainer
from blitz.errors import Interrupted
from blitz.hookspecs import hookimpl
from blitz.images import decode_image
from blitz.plugin_host import PluginHost, discover, local_source
from blitz.plugins.lenet import LeNet
from blitz.runs import read_json, read_metrics
from tests.test_engine import INFO, final_weights, split, tiny_config


def records(run_dir, event):
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == event]


def stop_in_epoch(trainer: Trainer, epoch: int, at_step: int) -> None:
    """Ask ``trainer`` to stop (SIGINT) while it trains step ``at_step`` (from 1) of ``epoch``."""
    original = trainer._train_epoch

    def train_epoch(session, *args, **kwargs):
        if session.run.epoch != epoch:
            return original(session, *args, **kwargs)
        real = session.batches.epoch

        def batches(e, start=0):
            for step, batch in enumerate(real(e, start), start + 1):
                if step == at_step:
                    trainer.stop(2)
                yield batch

        session.batches.epoch = batches
        try:
            return original(session, *args, **kwargs)
        finally:
            del session.batches.epoch

    trainer._train_epoch = train_epoch


def test_a_mid_epoch_resume_records_the_whole_epoch(tmp_path):
    full = Trainer(tiny_config(tmp_path, out=tmp_path / "full")).fit()
    trainer = Trainer(tiny_config(tmp_path, out=tmp_path / "cut"))
    stop_in_epoch(trainer, 2, at_step=2)
    with pytest.raises(Interrupted):
        trainer.fit()
    meta = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 2) and meta["epoch_so_far"]["steps"] == 2
    cut = Trainer(tiny_config(tmp_path, out=tmp_path / "cut"), resume_from=tmp_path / "cut" / "checkpoints" / "last.ckpt").fit()
    # the resumed epoch's mean loss is over its 4 steps, not the 2 after the resume
    assert cut.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-6)
    images = [h["images_per_s"] * h["seconds"] for h in cut.history]
    assert images == pytest.approx([100, 100, 100])
    assert cut.train_seconds == pytest.approx(sum(h["seconds"] for h in cut.history))
    steps = [r["step"] for r in records(tmp_path / "cut", "step")]
    assert steps == sorted(set(steps))  # each step once


def test_a_resume_after_a_crash_drops_the_records_of_the_lost_work(tmp_path):
    config = tiny_config(tmp_path, checkpoint_every=1)
    trainer = Trainer(config)
    original = trainer._train_epoch

    def crash_in_epoch_three(session, *args, **kwargs):
        done = original(session, *args, **kwargs)
        if session.run.epoch == 3:
            raise RuntimeError("the machine went away")
        return done

    trainer._train_epoch = crash_in_epoch_three
    with pytest.raises(RuntimeError):
        trainer.fit()
    assert [r["step"] for r in records(tmp_path / "run", "step")][-1] == 12  # epoch 3's steps logged, then lost
    Trainer(config, resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert [r["epoch"] for r in records(tmp_path / "run", "epoch")] == [1, 2, 3]
    steps = [r["step"] for r in records(tmp_path / "run", "step")]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert [r["step"] for r in records(tmp_path / "run", "resume")] == [8]


class EpochEnds:
    """Records what on_epoch_end sees: (epoch, test accuracy)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float | None]] = []

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        self.seen.append((epoch, metrics["test_accuracy"]))


def test_a_stop_at_the_last_step_of_an_epoch_leaves_its_evaluation_to_the_resume(tmp_path):
    full = Trainer(tiny_config(tmp_path, out=tmp_path / "full", log_every=10)).fit()  # 4 steps an epoch
    hook = EpochEnds()
    host = lambda: PluginHost([*discover(), local_source(hook, "epochends")])  # noqa: E731
    trainer = Trainer(tiny_config(tmp_path, out=tmp_path / "cut", log_every=10), host=host())
    stop_in_epoch(trainer, 1, at_step=4)  # the epoch's last
    with pytest.raises(Interrupted, match="during the evaluation after epoch 1"):
        trainer.fit()
    meta = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"], meta["evaluation_pending"]) == (2, 0, True)
    console = Console(file=StringIO(), width=200)
    cut = Trainer(
        tiny_config(tmp_path, out=tmp_path / "cut", log_every=10), host=host(), console=console,
        resume_from=tmp_path / "cut" / "checkpoints" / "last.ckpt",
    ).fit()
    assert "Evaluating epoch 1 first: a stop had cut its evaluation short" in console.file.getvalue()
    accuracies = [h["test_accuracy"] for h in full.history]
    assert (f"epoch 1/3  test loss {full.history[0]['test_loss']:.3f}  test accuracy {100 * accuracies[0]:.2f} %  "
            "(its evaluation, redone)") in console.file.getvalue()  # its figures, as an epoch line gives them
    assert hook.seen == [(1, None), (1, accuracies[0]), (2, accuracies[1]), (3, accuracies[2])]  # the hooks see it too
    assert [h["test_accuracy"] for h in cut.history] == [h["test_accuracy"] for h in full.history]
    assert [r["test_accuracy"] for r in records(tmp_path / "cut", "epoch")] == [h["test_accuracy"] for h in full.history]
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cut" / "checkpoints" / "best.ckpt").is_file()


class SlowInit(LeNet):
    """LeNet whose fitting to the data takes 100 s of the clock blitz times with (as airbench's
    whitening takes some, less): the clock is moved, not waited for, so that a busy machine
    cannot blur the figures."""

    skipped = 0.0

    def init_from_data(self, images: torch.Tensor) -> None:
        SlowInit.skipped += 100.0


def test_a_resume_does_not_time_fitting_to_the_data_again(tmp_path, monkeypatch):
    import blitz.timing

    real = time.perf_counter
    monkeypatch.setattr(blitz.timing.time, "perf_counter", lambda: real() + SlowInit.skipped)

    class Models:
        @hookimpl
        def register_models(self, register):
            register("slowinit", lambda *, num_classes, input_shape: SlowInit(num_classes=num_classes))

    host = lambda: PluginHost([*discover(), local_source(Models(), "slowinit")])  # noqa: E731
    Trainer(tiny_config(tmp_path, model="slowinit", epochs=1), host=host()).fit()
    first = read_json(tmp_path / "run" / "summary.json")["timed_seconds"]
    assert first >= 100.0
    Trainer(tiny_config(tmp_path, model="slowinit", epochs=2), host=host(),
            resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert read_json(tmp_path / "run" / "summary.json")["timed_seconds"] - first < 50  # one tiny epoch, not the fit


def test_the_jsonl_logger_keeps_one_record_per_epoch_and_step(tmp_path):
    from blitz.plugins.jsonl_logger import JSONLLogger

    path = tmp_path / "metrics.jsonl"
    log = JSONLLogger(path)
    for step in (2, 4):
        log.log({"event": "step", "epoch": 1, "step": step})
    log.log({"event": "epoch", "epoch": 1, "step": 4, "test_accuracy": None})
    log.log({"event": "step", "epoch": 2, "step": 6})
    log.close()
    with path.open("a") as f:
        f.write('{"event": "step", "ep')  # cut short by a crash
    log = JSONLLogger(path)  # the resumed run's
    log.log({"event": "resume", "epoch": 2, "step": 4})
    log.log({"event": "epoch", "epoch": 1, "step": 4, "test_accuracy": 0.5})  # its abandoned evaluation, done
    log.log({"event": "step", "epoch": 2, "step": 6})
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in lines] == [
        ("step", 2), ("step", 4), ("resume", 4), ("epoch", 4), ("step", 6)
    ]
    assert lines[3]["test_accuracy"] == 0.5


def test_show_lists_each_epoch_once_from_an_older_log(tmp_path):
    from typer.testing import CliRunner

    from blitz.cli import app

    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    path = tmp_path / "run" / "metrics.jsonl"
    epoch = records(tmp_path / "run", "epoch")[0]
    with path.open("a") as f:  # what a resume by an earlier version could leave
        f.write(json.dumps({**epoch, "test_accuracy": 0.123}) + "\n")
    out = CliRunner().invoke(app, ["show", str(tmp_path / "run")]).output
    assert out.count("12.30 %") == 1 and "epochs" in out
    assert sum(1 for line in out.splitlines() if line.lstrip("│ ").startswith("1 ")) == 1


def test_loader_batches_leave_the_global_random_stream_alone():
    """iter(DataLoader) draws its workers' base seed: from the batches' own generator, so a
    resumed run's dropout masks are those of the uninterrupted run."""
    from torch.utils.data import TensorDataset

    data = split(20)
    loader = LoaderBatches(TensorDataset(data.images, data.labels), INFO, device=torch.device("cpu"),
                           batch_size=8, shuffle=True, seed=0, augment=AugmentConfig(flip=True))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = [y for _, y in loader.epoch(1)]
    assert torch.equal(torch.get_rng_state(), before)
    again = [y for _, y in loader.epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize(("examples", "batch", "expected"), [(32, 4, 8), (33, 4, 8), (34, 4, 9), (1, 4, 1), (5, 1, 5)])
def test_a_last_batch_of_one_example_is_left_out(examples, batch, expected):
    from torch.utils.data import TensorDataset

    assert batches_per_epoch(examples, batch) == expected
    data = split(examples)
    tensor = TensorBatches(data, INFO, device=torch.device("cpu"), batch_size=batch, shuffle=True, seed=0,
                           augment=AugmentConfig())
    loader = LoaderBatches(TensorDataset(data.images, data.labels), INFO, device=torch.device("cpu"),
                           batch_size=batch, shuffle=True, seed=0, augment=AugmentConfig())
    for batches in (tensor, loader):
        sizes = [len(y) for _, y in batches.epoch(1)]
        assert len(batches) == len(sizes) == expected and (1 not in sizes or examples == 1 or batch == 1)


def test_a_batchnorm_model_trains_when_one_example_is_left_over(tmp_path):
    config = tiny_config(tmp_path, model="timm/test_resnet", dataset_args={"length": 33, "test_length": 8},
                         batch_size=4, epochs=1, augment=AugmentConfig())
    result = Trainer(config).fit()
    assert result.history[0]["images_per_s"] * result.history[0]["seconds"] == pytest.approx(32)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 8])
def test_cutout_zeroes_a_square_of_exactly_its_size(size):
    images = torch.full((300, 1, 32, 32), 255, dtype=torch.uint8)
    out = augment(images, AugmentConfig(cutout=size), torch.Generator().manual_seed(0))
    for image in out[:, 0]:
        rows, cols = (image == 0).nonzero(as_tuple=True)
        if len(rows):  # a square, clipped where it meets the border
            assert rows.max() - rows.min() < size and cols.max() - cols.min() < size
            assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert (out == 0).flatten(1).sum(1).max() == size * size  # whole where it lies inside


def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    expected = np.rint(ramp / 257.0)
    for mode in ("L", "RGB"):
        pixels = decode_image(tmp_path / "ramp.png", 64, 64, mode)
        assert pixels.dtype == np.uint8 and pixels.shape == ((1 if mode == "L" else 3), 64, 64)
        assert np.abs(pixels.astype(float) - expected).max() <= 1
    # mode I (16-bit PGM, 32-bit TIFF) is on the 16-bit scale whatever the image's own range:
    # a dark image is not read as an 8-bit one
    for value, expected in ((200, 1), (51400, 200)):
        Image.fromarray(np.full((8, 8), value, dtype=np.int32), "I").save(tmp_path / "gray.tiff")
        assert (decode_image(tmp_path / "gray.tiff", 8, 8, "L") == expected).all()


def test_a_batch_file_with_text_for_labels_is_a_data_error(tmp_path):
    import pickle

    from blitz.errors import DataError
    from blitz.plugins.cifar10 import read_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": b"training batch 1 of 5"}))
    with pytest.raises(DataError, match="data_batch_1': 'labels' is not a list of class indices"):
        read_batch(path)


def test_a_checkpoint_of_a_blitz_that_kept_a_batch_of_one_is_refused_not_misread(tmp_path):
    from blitz.checkpoint import Checkpoint, save_checkpoint
    from blitz.errors import UsageError

    config = tiny_config(tmp_path, dataset_args={"length": 9, "test_length": 8}, batch_size=4, log_every=1)
    trainer = Trainer(config)
    stop_in_epoch(trainer, 1, at_step=1)
    with pytest.raises(Interrupted):
        trainer.fit()
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(path)
    assert saved.meta.pop("steps_per_epoch") == 2  # 9 examples at 4: 2 steps now, 3 before
    save_checkpoint(path, Checkpoint(saved.meta, saved.model, saved.training))  # as an earlier blitz wrote it
    with pytest.raises(UsageError, match=r"saved by an earlier blitz that trained a last batch of one example \(3 steps"):
        Trainer(config, resume_from=path).fit()


def test_an_earlier_checkpoint_with_the_same_epochs_still_resumes(tmp_path):
    from blitz.checkpoint import Checkpoint, save_checkpoint

    trainer = Trainer(tiny_config(tmp_path))  # 100 examples at 25: no batch of one either way
    stop_in_epoch(trainer, 2, at_step=2)
    with pytest.raises(Interrupted):
        trainer.fit()
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(path)
    del saved.meta["steps_per_epoch"], saved.meta["epoch_so_far"]
    save_checkpoint(path, Checkpoint(saved.meta, saved.model, saved.training))
    assert len(Trainer(tiny_config(tmp_path), resume_from=path).fit().history) == 3


def test_the_default_data_root_is_saved_absolute(tmp_path, monkeypatch):
    import tomllib

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BLITZ_DATA_ROOT", raising=False)
    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert saved["data_root"] == str(tmp_path / "data")


def test_a_logger_that_calls_sys_exit_is_turned_off_and_training_goes_on(tmp_path):
    class Exits:
        def __init__(self, *, run_dir):
            pass

        def log(self, record):
            raise SystemExit(0)

        def close(self):
            pass

    class Loggers:
        @hookimpl
        def register_loggers(self, register):
            register("exits", Exits, description="exits")

    console = Console(file=StringIO(), width=200)
    host = PluginHost([*discover(), local_source(Loggers(), "exitlog")])
    result = Trainer(tiny_config(tmp_path, loggers=["exits", "jsonl"]), host=host, console=console).fit()
    assert len(result.history) == 3 and "logger 'exits' (plugin 'exitlog') raised in log(): SystemExit" in console.file.getvalue()


def test_a_damaged_byte_in_the_log_does_not_turn_the_logger_off(tmp_path):
    from blitz.plugins.jsonl_logger import JSONLLogger

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"event": "step", "epoch": 1, "step": 2}\n\xff\xfe garbage\n{"event": "step", "epoch": 1, "step": 4}\n')
    log = JSONLLogger(path)
    log.log({"event": "resume", "epoch": 1, "step": 2})
    log.close()
    assert [r["step"] for r in read_metrics(path)] == [2, 2]  # the step record kept, the resume record added


def test_tensorboard_draws_a_resumed_epoch_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(tmp_path, loggers=["tensorboard"], log_every=10)
    trainer = Trainer(config)
    stop_in_epoch(trainer, 1, at_step=4)  # its evaluation is done on resume
    with pytest.raises(Interrupted):
        trainer.fit()
    Trainer(config, resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("epoch/train_loss")] == [4, 8, 12]
    assert [e.step for e in events.Scalars("epoch/test_accuracy")] == [4, 8, 12]
