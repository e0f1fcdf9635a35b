"""The engine's pieces: batches, augmentation, evaluation, fit checks, resume and determinism."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from blitz import DataInfo, TensorSplit
from blitz.batches import TensorBatches, augment, eval_batches
from blitz.checkpoint import load_checkpoint
from blitz.components import Strategy
from blitz.config import AugmentConfig, RunConfig
from blitz.build import call_factory, check_fit
from blitz import engine
from blitz.engine import Trainer
from blitz.stopping import StopRequest
from blitz.scoring import evaluate
from blitz.errors import IncompatibleError, Interrupted, UsageError
from blitz.hookspecs import hookimpl
from blitz.plugin_host import PluginHost, discover, local_source
from blitz.runs import read_metrics
from tests.fresh_process import printed_by
from blitz.plugins.lenet import build_lenet

INFO = DataInfo(num_classes=10, input_shape=(3, 32, 32), class_names=tuple("abcdefghij"), mean=(0.5,) * 3, std=(0.5,) * 3)


def split(n: int, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))


def batches(data: TensorSplit, **kwargs) -> TensorBatches:
    options = dict(device=torch.device("cpu"), batch_size=8, shuffle=True, seed=1, augment=AugmentConfig())
    options.update(kwargs)
    return TensorBatches(data, INFO, **options)


def test_normalization_matches_the_tutorials_transform():
    data = split(16)
    images, _ = next(batches(data, shuffle=False).epoch(1))
    expected = (data.images[:8].float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(images, expected)


@pytest.mark.parametrize("mean,std", [((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), ((0.5,), (0.25,))])
def test_normalizer_equals_the_broadcast_formula_bit_for_bit_and_leaves_pixels_alone(mean, std):
    from blitz.batches import Normalizer

    info = DataInfo(num_classes=10, input_shape=(3, 8, 8), class_names=tuple("abcdefghij"), mean=mean, std=std)
    pixels = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kept = pixels.clone()
    normalize = Normalizer(info, torch.device("cpu"))
    scale = 1.0 / (255.0 * torch.tensor(std).view(-1, 1, 1))
    shift = -torch.tensor(mean).view(-1, 1, 1) / torch.tensor(std).view(-1, 1, 1)
    expected = torch.addcmul(shift, pixels.float(), scale)  # the formula, broadcast per channel
    for memory_format in (torch.contiguous_format, torch.channels_last):
        out = normalize(pixels, memory_format)
        assert torch.equal(out, expected) and out.is_contiguous(memory_format=memory_format)
    assert torch.equal(normalize(pixels[:2], torch.contiguous_format), expected[:2])  # another batch size
    assert torch.equal(pixels, kept)  # normalized into a new tensor, never over the stored pixels


def test_each_epoch_is_a_permutation_and_epochs_differ():
    data = split(40)
    b = batches(data)
    seen = [torch.cat([y for _, y in b.epoch(e)]) for e in (1, 2)]
    order1, order2 = b.order(1), b.order(2)
    assert sorted(order1.tolist()) == list(range(40))
    assert not torch.equal(order1, order2)
    assert torch.equal(seen[0], data.labels[order1])


def test_ranks_partition_the_permutation_like_distributed_sampler():
    data = split(42)
    ranks = [batches(data, rank=r, world_size=2) for r in range(2)]
    orders = [b.order(3) for b in ranks]
    assert len(orders[0]) == len(orders[1]) == 21  # equal shares: every rank takes the same steps
    assert set(orders[0].tolist()).isdisjoint(orders[1].tolist())
    single = batches(data).order(3)
    assert torch.equal(torch.stack(orders, 1).flatten(), single[:42])


def test_augmentation_keeps_shape_dtype_and_changes_pixels():
    images = split(64).images
    config = AugmentConfig(flip=True, translate=4, cutout=8)
    out = augment(images, config, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    assert (out == 0).flatten(1).any(1).float().mean() > 0.9  # cutout zeroes a square in nearly every image


def test_flip_only_flips():
    images = split(64).images
    out = augment(images, AugmentConfig(flip=True), torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    same = (out == images).flatten(1).all(1)
    assert (flipped | same).all() and 10 < flipped.sum() < 54


def test_translate_shifts_within_the_padding():
    images = torch.zeros(32, 1, 8, 8, dtype=torch.uint8)
    images[:, :, 4, 4] = 255
    out = augment(images, AugmentConfig(translate=2), torch.Generator().manual_seed(0))
    positions = (out[:, 0] == 255).nonzero()[:, 1:]
    assert ((positions - 4).abs() <= 2).all()
    assert len({tuple(p) for p in positions.tolist()}) > 5


def test_eval_batches_cover_every_example_once_across_ranks():
    data = split(23)
    seen = []
    for rank in range(3):
        seen += [y for _, y in eval_batches(data, INFO, device=torch.device("cpu"), batch_size=4, rank=rank, world_size=3)]
    assert sorted(torch.cat(seen).tolist()) == sorted(data.labels.tolist())


class _IndexWhereTheTensorIs(torch.overrides.TorchFunctionMode):
    """Fails an ``index_select`` whose index is on another device, as CUDA does (the meta device does not)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.index_select, torch.index_select):
            source, index = args[0], (args[2] if len(args) > 2 else kwargs["index"])
            assert index.device == source.device, f"index on {index.device}, tensor on {source.device}"
        return func(*args, **kwargs)


def test_eval_batches_index_on_the_device_that_holds_the_split():
    """The engine moves the test split to the GPU before evaluating: the index must follow it."""
    meta = torch.device("meta")
    data = split(10)
    on_device = TensorSplit(data.images.to(meta), data.labels.to(meta))
    labels_apart = TensorSplit(data.images.to(meta), data.labels)  # a library caller's split, labels on the CPU
    with _IndexWhereTheTensorIs():
        evaluated = list(eval_batches(on_device, INFO, device=meta, batch_size=4))
        apart = list(eval_batches(labels_apart, INFO, device=meta, batch_size=4))
    assert [x.shape[0] for x, _ in evaluated] == [4, 4, 2] and all(x.device == meta for x, _ in evaluated)
    assert [y.shape[0] for _, y in apart] == [4, 4, 2] and all(y.device == meta for _, y in apart)


class PerfectModel(torch.nn.Module):
    """Predicts the label hidden in the first pixel (for checking evaluation arithmetic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = ((x[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().long()
        return torch.nn.functional.one_hot(label, 10).float() * 10


def test_evaluate_counts_and_confusion(monkeypatch):
    data = split(30)
    data.images[:, 0, 0, 0] = data.labels.to(torch.uint8)
    predicted = data.labels.clone()
    data.labels[:5] = (data.labels[:5] + 1) % 10  # five wrong
    expected = torch.zeros(10, 10, dtype=torch.long)
    for true, guess in zip(data.labels.tolist(), predicted.tolist()):
        expected[true, guess] += 1
    counts = []
    bincount = torch.bincount
    monkeypatch.setattr(torch, "bincount", lambda *a, **k: counts.append(1) or bincount(*a, **k))
    result = evaluate(PerfectModel(), data, INFO, Strategy("cpu"), RunConfig(eval_batch_size=7))
    assert result.count == 30
    assert result.accuracy == pytest.approx(25 / 30)
    assert torch.equal(result.confusion, expected)  # rows true, columns predicted
    assert counts == [1]  # counted once for the 5 batches: on a GPU each count waits for the device


def test_check_fit_names_both_components_and_shapes():
    small = DataInfo(num_classes=10, input_shape=(1, 28, 28), class_names=tuple("abcdefghij"))
    model = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    with pytest.raises(IncompatibleError, match=r"Model 'lenet' does not fit dataset 'mnist': inputs of shape \(1, 28, 28\)"):
        check_fit(model, small, "lenet", "mnist")
    eleven = DataInfo(num_classes=11, input_shape=(3, 32, 32), class_names=tuple("abcdefghijk"))
    with pytest.raises(IncompatibleError, match=r"to \(2, 10\), but the dataset has 11 classes"):
        check_fit(model, eleven, "lenet", "mine")


def tiny_config(tmp_path, **kwargs) -> RunConfig:
    values = dict(
        model="lenet", dataset="random", strategy="cpu", epochs=3, batch_size=25, lr=0.01,
        dataset_args={"length": 100, "test_length": 40}, augment=AugmentConfig(flip=True, translate=2),
        deterministic=True, out=tmp_path / "run", log_every=2,
    )
    values.update(kwargs)
    return RunConfig(**values)


def final_weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt").model


def test_deterministic_runs_are_bit_identical(tmp_path):
    Trainer(tiny_config(tmp_path, out=tmp_path / "a")).fit()
    Trainer(tiny_config(tmp_path, out=tmp_path / "b")).fit()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)



def test_a_gpu_run_sets_determinism_both_ways(monkeypatch):
    """A deterministic GPU run does not leave later runs in the same process deterministic."""
    from blitz.reproducibility import seed_everything

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # restored after the test
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    gpu = torch.device("cuda")  # only its type is read: nothing runs on it
    try:
        seed_everything(0, True, gpu)
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        seed_everything(0, False, gpu)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        seed_everything(0, True, gpu)
        seed_everything(0, True, torch.device("cpu"))  # a CPU run after it: nothing to make deterministic
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]

def test_a_run_that_is_not_deterministic_does_not_import_the_compiler():
    """Turning deterministic algorithms off when they are off imports torch._inductor (~1 s of
    every run's start, eager runs included): seed_everything leaves the switch alone then."""
    code = (
        "import sys, torch\n"
        "from blitz.reproducibility import seed_everything\n"
        "import blitz.engine, blitz.plugins.airbench, blitz.plugins.muon\n"
        "seed_everything(0, False, torch.device('cpu'))\n"
        "seed_everything(0, False, torch.device('cuda'))  # only its type is read\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._inductor')))\n"
    )
    assert printed_by(code) == "[]"


class StopAfterEpoch:
    """A plugin that asks the trainer to stop (as SIGTERM would) at the end of one epoch."""

    def __init__(self, epoch: int, stop: list[StopRequest], step: int | None = None) -> None:
        self.epoch, self.stop = epoch, stop

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        if epoch == self.epoch:
            self.stop[0](15)  # SIGTERM


def host_with(plugin: object) -> PluginHost:
    return PluginHost([*discover(), local_source(plugin, "test_stopper")])


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, schedule):
    Trainer(tiny_config(tmp_path, out=tmp_path / "full", schedule=schedule)).fit()

    stops: list[StopRequest] = []
    trainer = Trainer(tiny_config(tmp_path, out=tmp_path / "cut", schedule=schedule), host=host_with(StopAfterEpoch(1, stops)))
    stops.append(trainer.stop)
    with pytest.raises(Interrupted) as info:
        trainer.fit()
    assert info.value.exit_code == 143 and "--resume" in str(info.value)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt").meta["epoch"] == 2

    resumed = Trainer(
        tiny_config(tmp_path, out=tmp_path / "cut", schedule=schedule),
        resume_from=tmp_path / "cut" / "checkpoints" / "last.ckpt",
    ).fit()
    assert len(resumed.history) == 3
    full, cut = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_stop_mid_epoch_resumes_at_the_same_step(tmp_path):
    Trainer(tiny_config(tmp_path, out=tmp_path / "full")).fit()

    class StopMidEpoch:
        @hookimpl
        def on_train_start(self, run):
            pass

    trainer = Trainer(tiny_config(tmp_path, out=tmp_path / "cut"), host=host_with(StopMidEpoch()))
    original = trainer._train_epoch

    def stop_during_epoch_two(session, *args, **kwargs):
        if session.run.epoch == 2:
            trainer.stop(2)  # SIGINT, noticed at the next sync point (log_every=2 steps)
        return original(session, *args, **kwargs)

    trainer._train_epoch = stop_during_epoch_two
    with pytest.raises(Interrupted) as info:
        trainer.fit()
    assert info.value.exit_code == 130
    meta = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 1)

    Trainer(tiny_config(tmp_path, out=tmp_path / "cut"), resume_from=tmp_path / "cut" / "checkpoints" / "last.ckpt").fit()
    full, cut = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_dataset_path_normalizes_and_augments_uint8_items_like_the_tensor_path():
    from torch.utils.data import TensorDataset

    from blitz.batches import LoaderBatches

    data = split(16)
    dataset = TensorDataset(data.images, data.labels)
    loader = LoaderBatches(dataset, INFO, device=torch.device("cpu"), batch_size=8, shuffle=False, seed=0, augment=AugmentConfig())
    images, labels = next(loader.epoch(1))
    torch.testing.assert_close(images, (data.images[:8].float() / 255 - 0.5) / 0.5)
    flipping = LoaderBatches(dataset, INFO, device=torch.device("cpu"), batch_size=16, shuffle=False, seed=0, augment=AugmentConfig(flip=True))
    flipped, _ = next(flipping.epoch(1))
    plain = (data.images.float() / 255 - 0.5) / 0.5
    same = torch.isclose(flipped, plain, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(flipped, plain.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all() and mirrored.any()
    evaluated = torch.cat([x for x, _ in eval_batches(dataset, INFO, device=torch.device("cpu"), batch_size=5)])
    torch.testing.assert_close(evaluated, plain)


def test_the_dataset_paths_augmentation_stream_carries_over_a_resume_and_restarts_across_devices():
    from torch.utils.data import TensorDataset

    from blitz.batches import LoaderBatches

    data = split(16)
    dataset = TensorDataset(data.images, data.labels)

    def flips(state: dict | None = None) -> torch.Tensor:
        loader = LoaderBatches(dataset, INFO, device=torch.device("cpu"), batch_size=16, shuffle=False, seed=0,
                               augment=AugmentConfig(flip=True))
        if state is not None:
            loader.load_state_dict(state)
        return next(loader.epoch(1))[0]

    fresh = flips()
    saved = LoaderBatches(dataset, INFO, device=torch.device("cpu"), batch_size=16, shuffle=False, seed=0,
                          augment=AugmentConfig(flip=True))
    next(saved.epoch(1))  # the stream moves on: a resume goes on from there
    state = saved.state_dict()
    torch.testing.assert_close(flips(state), next(saved.epoch(1))[0])  # the saved stream, exactly
    torch.testing.assert_close(flips({"augment_generator": torch.zeros(16, dtype=torch.uint8)}), fresh)  # a CUDA generator's
    with pytest.raises(RuntimeError):  # a damaged state of the right size is not passed over in silence
        flips({"augment_generator": torch.full_like(state["augment_generator"], 255)})


@pytest.mark.parametrize("bad", [10, -1])
def test_dataset_path_refuses_labels_outside_the_classes_before_they_reach_the_device(bad):
    """On a GPU the loss would meet them as a device-side assert, with no word of the data."""
    from torch.utils.data import TensorDataset

    from blitz.batches import LoaderBatches
    from blitz.errors import DataError

    data = split(16)
    labels = data.labels.clone()
    labels[11] = bad
    loader = LoaderBatches(
        TensorDataset(data.images, labels), INFO, device=torch.device("cpu"), batch_size=4, shuffle=False,
        seed=0, augment=AugmentConfig(), source="Dataset 'mine'",
    )
    batches_seen = []
    with pytest.raises(DataError, match=rf"Dataset 'mine' gave a label outside 0\.\.9 at step 2 of epoch 3 \(label {bad}\)"):
        for batch in loader.epoch(3):
            batches_seen.append(batch)
    assert len(batches_seen) == 2  # the bad batch itself is never handed on
    with pytest.raises(DataError, match=rf"Dataset 'mine' gave a label outside 0\.\.9 in its test split, evaluation batch 2 \(label {bad}\)"):
        list(eval_batches(TensorDataset(data.images, labels), INFO, device=torch.device("cpu"), batch_size=4, source="Dataset 'mine'"))
    soft = LoaderBatches(  # probability targets are the loss's business
        TensorDataset(data.images, torch.full((16, 10), 0.1)), INFO, device=torch.device("cpu"), batch_size=4,
        shuffle=False, seed=0, augment=AugmentConfig(),
    )
    assert len(list(soft.epoch(1))) == 4


@pytest.mark.parametrize("total", [1, 2, 4, 1000])
def test_onecycle_rises_then_falls_for_any_length(total):
    from blitz.plugins.schedules import build_onecycle_schedule

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = build_onecycle_schedule(optimizer, total_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) <= 0.1 + 1e-12
    if total >= 4:
        peak = lrs.index(max(lrs))
        assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
        assert max(lrs) == pytest.approx(0.1, rel=0.05)


def test_alternate_flip_mirrors_each_image_every_other_epoch():
    data = split(64)
    alternating = batches(data, shuffle=False, batch_size=64, augment=AugmentConfig(flip=True, flip_mode="alternate"))
    plain = batches(data, shuffle=False, batch_size=64)
    original = next(plain.epoch(1))[0]

    def mirrored(epoch: int) -> torch.Tensor:
        images = next(alternating.epoch(epoch))[0]
        is_mirror = torch.isclose(images, original.flip(-1)).flatten(1).all(1)
        assert (is_mirror | torch.isclose(images, original).flatten(1).all(1)).all()  # only flips
        return is_mirror

    first, second, third = mirrored(1), mirrored(2), mirrored(3)
    assert 10 < first.sum() < 54  # random in the first epoch
    assert torch.equal(second, ~first) and torch.equal(third, first)  # then the other way round


def test_alternate_flip_follows_the_example_not_its_position():
    data = split(64)
    alternating = batches(data, batch_size=64, augment=AugmentConfig(flip=True, flip_mode="alternate"))
    for epoch in (1, 2):  # shuffled: each example keeps its own flip sequence
        order = alternating.order(epoch)
        images = next(alternating.epoch(epoch))[0]
        expected = alternating.normalize(data.images[order], torch.contiguous_format)
        flips = alternating.first_flips[order] ^ (epoch == 2)
        expected = torch.where(flips.view(-1, 1, 1, 1), expected.flip(-1), expected)
        assert torch.allclose(images, expected)


def test_checkpoint_every_spaces_last_checkpoints_and_best_follows_improvements(tmp_path, monkeypatch):
    from blitz import checkpoint

    saved = []
    original = checkpoint.save_checkpoint
    monkeypatch.setattr(checkpoint, "save_checkpoint", lambda path, state: (saved.append((path.stem, state.meta["epoch"])), original(path, state)))
    Trainer(tiny_config(tmp_path, checkpoint_every=0)).fit()
    assert [epoch for name, epoch in saved if name == "last"] == [4]  # once, after epoch 3
    best = [epoch for name, epoch in saved if name == "best"]  # after each improved evaluation
    assert best[0] == 2 and best == sorted(set(best))  # the first one always improves on none
    saved.clear()
    Trainer(tiny_config(tmp_path, out=tmp_path / "two", checkpoint_every=2)).fit()
    assert [epoch for name, epoch in saved if name == "last"] == [3, 4]  # after epochs 2 and 3


def test_stop_between_epochs_checkpoints_even_when_none_is_due(tmp_path):
    stops: list[StopRequest] = []
    trainer = Trainer(tiny_config(tmp_path, checkpoint_every=0), host=host_with(StopAfterEpoch(1, stops)))
    stops.append(trainer.stop)
    with pytest.raises(Interrupted):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta["epoch"] == 2


def test_clock_sums_only_the_resumed_stretches():
    import time

    from blitz.timing import Clock

    clock = Clock(torch.device("cpu"))
    clock.resume()
    time.sleep(0.05)
    clock.pause()
    time.sleep(0.3)  # paused: not counted
    clock.resume()
    time.sleep(0.05)
    assert 0.09 < clock.total() < 0.25


def test_warm_up_leaves_no_trace(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, batch_size=40, eval_batch_size=16))
    trainer.strategy = call_factory(trainer.components.strategy, "Strategy", device=None)
    model = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    model.fc1.register_buffer("seen", torch.zeros(1))  # a buffer each forward pass changes

    sizes = []

    def count(module, args):
        module.seen.add_(1)
        sizes.append(args[0].shape[0])

    model.fc1.register_forward_pre_hook(count)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random_before = torch.get_rng_state()
    data = batches(split(100), batch_size=40)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    steps = []
    step = optimizer.step
    optimizer.step = lambda *args, **kwargs: steps.append(1) or step(*args, **kwargs)
    trainer._warm_up(model, model, INFO, data, split(40), torch.nn.CrossEntropyLoss(), torch.contiguous_format, optimizer)
    assert sorted(sizes) == [8, 16, 20, 40]  # each batch shape of training and evaluation, once
    assert steps == [1]  # and one optimizer step
    assert model.fc1.seen.item() == 0  # and what they changed is undone
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert optimizer.state_dict()["state"] == {}  # no momentum yet, as before
    assert torch.equal(torch.get_rng_state(), random_before)


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw", "muon", "airbench_sgd"])
def test_warm_up_puts_back_the_optimizers_state(tmp_path, optimizer_name):
    """A resumed run warms up with a trained optimizer: its step there must leave no trace."""
    from blitz.plugins import airbench, muon, optimizers

    trainer = Trainer(tiny_config(tmp_path, batch_size=20, eval_batch_size=20))
    trainer.strategy = call_factory(trainer.components.strategy, "Strategy", device=None)
    torch.manual_seed(0)
    model = airbench.build_airbench(num_classes=10, input_shape=(3, 32, 32), widths=(8, 8, 8), tta_level=0)
    optimizer = {
        "sgd": lambda: optimizers.build_sgd(model, lr=0.1, momentum=0.9, weight_decay=1e-4),
        "adamw": lambda: optimizers.build_adamw(model, lr=0.01, momentum=0.9, weight_decay=0.01),
        "muon": lambda: muon.build_muon(model, lr=0.02, momentum=0.95),
        "airbench_sgd": lambda: airbench.build_airbench_sgd(model),
    }[optimizer_name]()
    if optimizer_name == "airbench_sgd":
        optimizer.set_total_steps(10)  # Lookahead on: its step count and averaged weights are state too
    images, labels = torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,))
    for _ in range(3):  # state to keep: momentum, moments, step counts
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state_before = copy.deepcopy(optimizer.state_dict())
    weights_before = copy.deepcopy(model.state_dict())
    groups = optimizer.param_groups
    first_group = groups[0]
    trainer._warm_up(model, model, INFO, batches(split(40), batch_size=20), split(20), torch.nn.CrossEntropyLoss(),
                     torch.contiguous_format, optimizer)
    assert_same(optimizer.state_dict(), state_before)
    assert_same(model.state_dict(), weights_before)
    # the same group objects: a schedule that kept them still sets the lr the optimizer reads
    assert optimizer.param_groups is groups and optimizer.param_groups[0] is first_group


def test_warm_up_takes_no_optimizer_step_when_a_step_hook_would_see_it(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, batch_size=20, eval_batch_size=20))
    trainer.strategy = call_factory(trainer.components.strategy, "Strategy", device=None)
    model = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = []
    optimizer.register_step_post_hook(lambda *args: seen.append(1))  # e.g. an EMA of the weights
    trainer._warm_up(model, model, INFO, batches(split(40), batch_size=20), split(20), torch.nn.CrossEntropyLoss(),
                     torch.contiguous_format, optimizer)
    assert seen == []


def assert_same(a, b):
    """Nested dicts, lists and tensors equal to the bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_best_checkpoint_follows_every_improvement_whatever_checkpoint_every(tmp_path):
    # Accuracies 0.5, 0.7, 0.4: the best model is epoch 2's, and checkpoint_every=0 only
    # checkpoints the last epoch; best.ckpt must still hold epoch 2's weights.
    trainer = Trainer(tiny_config(tmp_path, checkpoint_every=0, augment=AugmentConfig()))
    accuracies = iter([0.5, 0.7, 0.4])
    weights_at_eval = []
    real_evaluate = trainer._evaluate

    def evaluate_with_made_up_accuracy(session):
        result = real_evaluate(session)
        weights_at_eval.append({k: v.clone() for k, v in session.model.state_dict().items()})
        result.accuracy = next(accuracies)
        return result

    trainer._evaluate = evaluate_with_made_up_accuracy
    trainer.fit()
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert best.meta["best_accuracy"] == 0.7 and best.meta["epoch"] == 3  # saved after epoch 2
    assert all(torch.equal(best.model[k], weights_at_eval[1][k]) for k in best.model)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last.meta["best_accuracy"] == 0.7 and last.meta["epoch"] == 4


def test_loggers_are_closed_when_warm_up_fails(tmp_path):
    from tests.test_plugins import EveryKind

    plugin = EveryKind()
    host = PluginHost([*(s for s in discover() if s.builtin), local_source(plugin, "every")])
    trainer = Trainer(tiny_config(tmp_path, compile=True, loggers=["memory"]), host=host)

    def failing_warm_up(*args, **kwargs):
        raise RuntimeError("compiler exploded")

    trainer._warm_up = failing_warm_up
    with pytest.raises(RuntimeError, match="compiler exploded"):
        trainer.fit()
    (logger,) = plugin.loggers
    assert logger.closed


def test_summary_says_how_a_run_ended(tmp_path):
    from blitz.errors import TrainingDivergedError
    from blitz.runs import read_json

    stops: list[StopRequest] = []
    trainer = Trainer(tiny_config(tmp_path, out=tmp_path / "stopped"), host=host_with(StopAfterEpoch(1, stops)))
    stops.append(trainer.stop)
    with pytest.raises(Interrupted):
        trainer.fit()
    summary = read_json(tmp_path / "stopped" / "summary.json")
    assert summary["status"] == "stopped" and summary["epochs_done"] == 1
    assert summary["last_accuracy"] == summary["best_accuracy"] >= 0  # what epoch 1's evaluation gave

    with pytest.raises(TrainingDivergedError):
        Trainer(tiny_config(tmp_path, out=tmp_path / "failed", lr=1e4, augment=AugmentConfig())).fit()
    summary = read_json(tmp_path / "failed" / "summary.json")
    assert summary["status"] == "failed" and summary["epochs_done"] == 0


def test_a_finished_run_is_not_resumed_and_keeps_its_files(tmp_path):
    from blitz.errors import UsageError

    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=r"finished its 1 epoch\(s\): nothing to resume.*--epochs N with N above 1"):
        Trainer(tiny_config(tmp_path, epochs=1), resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == files


def stop_in_evaluation(trainer: Trainer, epoch: int, monkeypatch) -> list[int]:
    """Make ``trainer`` get a Ctrl-C three batches into the evaluation after ``epoch``; returns
    the list that counts the batches that evaluation started."""
    real_evaluate = engine.evaluate
    batches: list[int] = []

    def evaluate(*args, should_stop=None, **kwargs):
        if getattr(trainer, "_epoch_now", None) != epoch or batches:
            return real_evaluate(*args, should_stop=should_stop, **kwargs)

        def stop_at_batch_3():
            batches.append(1)
            if len(batches) == 3:
                trainer.stop(2)  # Ctrl-C
            return should_stop()

        return real_evaluate(*args, should_stop=stop_at_batch_3, **kwargs)

    class EpochNow:
        @hookimpl
        def on_train_start(self, run):
            original = trainer._train_epoch

            def train_epoch(session, loss_fn, e, *rest):
                trainer._epoch_now = e
                return original(session, loss_fn, e, *rest)

            trainer._train_epoch = train_epoch

    trainer.host = host_with(EpochNow())
    monkeypatch.setattr(engine, "evaluate", evaluate)
    return batches


def test_a_stop_during_an_evaluation_ends_it_and_the_run_resumes_after_it(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=2, eval_batch_size=8, augment=AugmentConfig())
    trainer = Trainer(config)
    batches = stop_in_evaluation(trainer, 1, monkeypatch)
    with pytest.raises(Interrupted, match="during the evaluation after epoch 1; its checkpoint is saved: resume with"):
        trainer.fit()
    assert len(batches) == 3  # it did not finish the 5 batches of 40 test images
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 0) and meta["evaluation_pending"]
    assert [(h["epoch"], h["test_accuracy"]) for h in meta["history"]] == [(1, None)]  # recorded, not scored yet
    monkeypatch.undo()  # the real evaluate again
    result = Trainer(config, resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert [h["epoch"] for h in result.history] == [1, 2] and result.final.count == 40
    # the abandoned evaluation was done first on resume, on epoch 1's weights, and recorded once
    assert result.history[0]["test_accuracy"] is not None
    epochs = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "epoch"]
    assert [(r["epoch"], r["test_accuracy"] is not None) for r in epochs] == [(1, True), (2, True)]


def test_a_stop_during_the_last_evaluation_is_resumed_to_evaluate(tmp_path, monkeypatch):
    from blitz.runs import read_json

    config = tiny_config(tmp_path, epochs=2, eval_batch_size=8, augment=AugmentConfig())
    trainer = Trainer(config)
    stop_in_evaluation(trainer, 2, monkeypatch)
    with pytest.raises(Interrupted, match="during the evaluation after epoch 2"):
        trainer.fit()
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"], meta["evaluation_pending"]) == (3, 0, True)
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "stopped"
    # not "finished, nothing to resume": the resume runs the evaluation that was stopped
    result = Trainer(config, resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert result.final.count == 40 and [h["epoch"] for h in result.history] == [1, 2]
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "finished"
    # done now: recorded in the epoch's history, last.ckpt no longer pending, so the run is finished
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta
    assert meta["evaluation_pending"] is False
    assert meta["history"][-1]["test_accuracy"] == pytest.approx(result.final.accuracy)
    with pytest.raises(UsageError, match="nothing to resume"):
        Trainer(config, resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()


def test_a_mid_epoch_stop_resumes_only_with_as_many_processes(tmp_path):
    """Saved at step 3 of 4 by one process; two processes have 2 steps per epoch, so the saved
    step is past their epoch's end: refused, not silently skipped to the next epoch."""

    class TwoRanks(Strategy):
        name = "tworanks"

        def __init__(self) -> None:
            super().__init__(torch.device("cpu"))
            self.world_size = 2

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register("tworanks", lambda *, device=None: TwoRanks(), description="pretends to be two processes")

    config = tiny_config(tmp_path, epochs=2, augment=AugmentConfig())
    trainer = Trainer(config)
    original = trainer._train_epoch

    def stop_in_epoch_two(session, *args, **kwargs):
        if session.run.epoch == 2:  # SIGTERM as the third batch arrives: it is trained, then the run stops
            batches = type(session.batches).epoch.__get__(session.batches)

            def epoch_with_stop(epoch, first_step=0):
                for i, batch in enumerate(batches(epoch, first_step)):
                    if i == 2:
                        trainer.stop(15)
                    yield batch

            session.batches.epoch = epoch_with_stop
        return original(session, *args, **kwargs)

    trainer._train_epoch = stop_in_epoch_two
    with pytest.raises(Interrupted):
        trainer.fit()
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta
    assert (meta["epoch"], meta["step_in_epoch"], meta["world_size"]) == (2, 3, 1)
    two = Trainer(config.model_copy(update={"strategy": "tworanks"}), host=host_with(Plugin()),
                  resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt")
    with pytest.raises(UsageError, match=r"stopped in the middle of epoch 2 with 1 process\(es\), and would resume with 2"):
        two.fit()


def test_small_cpu_batches_train_on_one_thread_unless_told(tmp_path, monkeypatch):
    class ThreadsSeen:
        """Records (training?, threads) at every forward pass of the run's model."""

        def __init__(self) -> None:
            self.seen: set[tuple[bool, int]] = set()

        @hookimpl
        def on_train_start(self, run):
            run.model.register_forward_pre_hook(lambda m, args: self.seen.add((m.training, torch.get_num_threads())))

    before = torch.get_num_threads()
    try:
        cases = (  # out, batch, --cpu-threads, OMP_NUM_THREADS, (train, eval) threads seen
            ("a", 8, None, None, {(True, 1), (False, 2)}),
            ("b", 32, None, None, {(True, 2), (False, 2)}),
            ("c", 8, 2, None, {(True, 2), (False, 2)}),
            ("d", 8, None, "2", {(True, 2), (False, 2)}),
            ("e", 8, "auto", None, {(True, 1), (False, 2)}),  # 4 steps an epoch: too few to try 2
        )
        for out, batch_size, threads, omp, expected in cases:
            if omp is None:
                monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
            else:
                monkeypatch.setenv("OMP_NUM_THREADS", omp)
            torch.set_num_threads(2)
            recorder = ThreadsSeen()
            config = tiny_config(tmp_path, out=tmp_path / out, batch_size=batch_size, epochs=1, cpu_threads=threads)
            Trainer(config, host=host_with(recorder)).fit()
            assert recorder.seen == expected, out
            assert torch.get_num_threads() == 2  # the caller's count, back after the run
    finally:
        torch.set_num_threads(before)

def test_a_run_being_trained_is_not_resumed_by_another_process(tmp_path):
    from blitz.runs import lock_run

    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    holder = lock_run(tmp_path / "run")  # as the process training it would hold it
    try:
        with pytest.raises(UsageError, match=rf"is being trained right now by another blitz process \(pid {os.getpid()}\)"):
            Trainer(tiny_config(tmp_path, epochs=2), resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    finally:
        holder.close()
    result = Trainer(tiny_config(tmp_path, epochs=2), resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    assert [h["epoch"] for h in result.history] == [1, 2]  # once the other process is done
    lock_run(tmp_path / "run").close()  # and the finished run holds no lock


def test_timed_seconds_add_up_across_a_resume(tmp_path):
    from blitz.runs import read_json

    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    first = read_json(tmp_path / "run" / "summary.json")["timed_seconds"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta["timed_seconds"] == pytest.approx(first, rel=0.2)
    result = Trainer(tiny_config(tmp_path, epochs=2), resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt").fit()
    total = read_json(tmp_path / "run" / "summary.json")["timed_seconds"]
    assert total == pytest.approx(result.timed_seconds) and total > first


def test_a_file_system_without_locks_does_not_block_runs(tmp_path, monkeypatch):
    import errno
    import fcntl

    from blitz.runs import lock_run

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    (tmp_path / "run").mkdir()
    assert lock_run(tmp_path / "run") is None  # no lock there, but no refusal either
    Trainer(tiny_config(tmp_path, epochs=1)).fit()


def test_a_lock_shared_with_a_forked_child_is_released_by_the_run(tmp_path):
    from blitz.runs import lock_run, release_run

    (tmp_path / "run").mkdir()
    held = lock_run(tmp_path / "run")
    child = os.fork()
    if child == 0:  # a DataLoader worker would be such a child: it shares the open lock file
        import time

        time.sleep(2)
        os._exit(0)
    try:
        release_run(held)
        release_run(lock_run(tmp_path / "run"))  # free at once, though the child still lives
    finally:
        os.waitpid(child, 0)


def test_out_with_only_blitz_files_left_is_accepted(tmp_path):
    from blitz.runs import LOCK_FILE, check_out_dir

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_FILE).write_text("123\n")  # left by a start that failed early
    check_out_dir(tmp_path / "out")


def test_lenets_direct_gradients_train_exactly_as_its_autograd_node(tmp_path, monkeypatch):
    from blitz.plugins import lenet_cpu_kernel
    from blitz.plugins.lenet import LeNet

    config = dict(batch_size=4, dataset_args={"length": 40, "test_length": 8}, epochs=2)
    calls = []
    real = lenet_cpu_kernel.cross_entropy_gradients
    monkeypatch.setattr(lenet_cpu_kernel, "cross_entropy_gradients", lambda *a: calls.append(1) or real(*a))
    Trainer(tiny_config(tmp_path, out=tmp_path / "direct", **config)).fit()
    assert len(calls) == 20  # every step of both epochs
    monkeypatch.setattr(LeNet, "direct_gradients", lambda self, inputs, labels, loss_fn: None)
    Trainer(tiny_config(tmp_path, out=tmp_path / "autograd", **config)).fit()
    assert len(calls) == 20
    a, b = final_weights(tmp_path / "direct"), final_weights(tmp_path / "autograd")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_direct_gradients_are_not_taken_through_a_wrapper():
    from blitz.components import direct_gradients_of

    class Forwarding(torch.nn.Module):  # as torch.compile's module: attribute reads reach the wrapped model
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    assert direct_gradients_of(net) == net.direct_gradients
    assert callable(Forwarding(net).direct_gradients)
    assert direct_gradients_of(Forwarding(net)) is None
    assert direct_gradients_of(torch.nn.DataParallel(net)) is None
    assert direct_gradients_of(torch.nn.Linear(2, 2)) is None


class AutocastWitness(torch.nn.Module):
    """Records, during each backward pass, whether autocast was on (it must not be)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], seen: list[bool]) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)
        self.seen = seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        if out.requires_grad:
            out.register_hook(lambda grad: self.seen.append(torch.is_autocast_enabled("cpu")))
        return out


def test_backward_runs_outside_autocast(tmp_path):
    seen: list[bool] = []

    class Models:
        @hookimpl
        def register_models(self, register):
            register("witness", lambda *, num_classes, input_shape: AutocastWitness(num_classes, input_shape, seen))

    config = tiny_config(tmp_path, model="witness", precision="bf16", epochs=1)
    Trainer(config, host=PluginHost([*discover(), local_source(Models(), "witness")])).fit()
    assert seen and not any(seen)


def test_run_lines_are_never_wrapped_mid_value_in_a_narrow_console(tmp_path):
    """A log or a pipe is read line by line: `input (3, 32,` / `32)` across two lines broke grep."""
    from io import StringIO

    from rich.console import Console

    console = Console(file=StringIO(), width=40)
    Trainer(tiny_config(tmp_path), console=console).fit()
    lines = console.file.getvalue().splitlines()
    assert any(line.startswith("Data: random, ") and line.endswith(")") for line in lines)
    assert any(line.startswith("epoch 1/") and line.endswith(")") for line in lines)
