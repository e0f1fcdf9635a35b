"""The airbench94 plugin: model, whitening, optimizer (units, groups, Lookahead), schedule."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blitz.plugins import airbench

SHAPE = (3, 32, 32)
SMALL = (8, 16, 16)  # conv-group widths for the tests that train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are small: one intra-op thread is faster, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(**options: Any) -> airbench.AirbenchNet:
    """The paper's network (about 2M parameters)."""
    torch.manual_seed(0)
    return airbench.build_airbench(num_classes=10, input_shape=SHAPE, **options)


def small_model(**options: Any) -> airbench.AirbenchNet:
    """The same design, narrow enough that CPU training steps take milliseconds."""
    return make_model(widths=SMALL, **options)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint gives back: torch.save, then the safe loader."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def fake_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, *SHAPE, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    images += labels.view(-1, 1, 1, 1) * 0.1  # something learnable
    return images, labels


def train_steps(model, optimizer, scheduler, images, labels, steps, batch=16, start=0):
    losses = []
    model.train()
    for i in range(start, start + steps):
        j = (i * batch) % len(images)
        loss = F.cross_entropy(model(images[j : j + batch]), labels[j : j + batch], label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


# --- model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tta_level", [0, 1, 2])
def test_shapes_in_train_and_eval(tta_level):
    model = make_model(tta_level=tta_level)
    x = torch.randn(4, *SHAPE)
    assert model(x).shape == (4, 10)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_channels_last_input_gives_the_same_logits():
    model = small_model().eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("compiling", [False, True], ids=["eager", "compiling"])
def test_tta_is_the_weighted_mean_of_the_views(compiling, monkeypatch):
    model = small_model(tta_level=2).eval()
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        one = model.logits
        mirror = lambda v: 0.5 * one(v) + 0.5 * one(v.flip(-1))  # noqa: E731
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = 0.5 * mirror(padded[:, :, :32, :32]) + 0.5 * mirror(padded[:, :, 2:, 2:])
        expected = 0.5 * mirror(x) + 0.5 * shifted
        sizes = []
        model.logits = lambda v: sizes.append(v.shape[0]) or one(v)  # noqa: E731
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)  # the branch torch.compile traces
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # eager: each view alone, at the batch's size (cuDNN's training choices serve); compiled: one pass
    assert sizes == ([18] if compiling else [3] * 6)
    model.tta_level = 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), one(x))


def test_architecture_matches_the_paper():
    model = make_model()
    assert model.whiten.out_channels == 24 and model.whiten.kernel_size == (2, 2)
    assert [g.conv2.out_channels for g in model.groups] == [64, 256, 256]
    assert model.head.bias is None and model.scaling_factor == pytest.approx(1 / 9)
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6
    for norm in norms:  # frozen scales at 1, trainable shifts, fast running statistics
        assert not norm.weight.requires_grad and torch.all(norm.weight == 1)
        assert norm.bias.requires_grad
        assert norm.momentum == pytest.approx(0.4) and norm.eps == 1e-12
    assert all(isinstance(g.activation, nn.GELU) for g in model.groups)
    # Identity init: the first in_channels filters of each 3x3 conv pass their input through.
    w = model.groups[1].conv1.weight  # 64 -> 256
    assert torch.all(w[:64, :, 1, 1] == torch.eye(64))
    assert w[:64].abs().sum() == 64


def test_model_rejects_inputs_it_cannot_take():
    with pytest.raises(ValueError):
        airbench.build_airbench(num_classes=10, input_shape=(784,))
    with pytest.raises(ValueError):
        airbench.build_airbench(num_classes=10, input_shape=(3, 8, 8))
    with pytest.raises(ValueError):
        airbench.build_airbench(num_classes=10, input_shape=SHAPE, tta_level=3)


def test_other_sizes_and_channels():
    model = airbench.build_airbench(num_classes=7, input_shape=(1, 28, 28), widths=[16, 32, 32])
    model.init_from_data(torch.randn(20, 1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


# --- whitening -----------------------------------------------------------------------------


def test_init_from_data_whitens_the_patches():
    g = torch.Generator().manual_seed(1)
    # Correlated channels and neighbouring pixels, like real images.
    images = torch.randn(200, 3, 32, 32, generator=g)
    images = images + images.roll(1, dims=-1) + 0.5 * images.mean(dim=1, keepdim=True)
    model = make_model(whiten_eps=0.0)
    before = model.whiten.weight.clone()
    model.init_from_data(images)
    weight = model.whiten.weight
    assert not weight.requires_grad and torch.isfinite(weight).all()
    assert not torch.equal(weight, before)
    torch.testing.assert_close(weight[12:], -weight[:12])  # each filter and its negation
    with torch.no_grad():
        out = F.conv2d(images.double(), weight[:12].double())  # the stem without bias
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / flat.shape[0]  # uncentered, as the whitening is fit
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-6)


def test_whiten_in_fp32_keeps_the_faint_directions_under_bf16():
    """bf16 rounding of the inputs and the large whitening weights costs the faintest directions
    several times the error of rounding the output once (on real CIFAR-10 images, 500 of them:
    up to 7 % against 0.17 %)."""
    g = torch.Generator().manual_seed(1)
    images = F.avg_pool2d(torch.randn(300, 3, 36, 36, generator=g), 5, 1)  # neighbours correlated
    images = images + images.mean(dim=1, keepdim=True)  # and channels
    images /= images.std()
    errors = {}
    for fp32 in (False, True):
        model = make_model(whiten_in_fp32=fp32)
        model.init_from_data(images)
        with torch.no_grad():
            exact = F.conv2d(images.double(), model.whiten.weight.double(), model.whiten.bias.double())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.whitened(images)
            assert out.dtype == torch.bfloat16  # what the next layer would get either way
            assert torch.equal(model.whitened(images), model.whiten(images))  # no autocast: as before
        rms = lambda t: t.pow(2).mean(dim=(0, 2, 3)).sqrt()  # noqa: E731
        errors[fp32] = (rms(out.double() - exact) / rms(exact)).max().item()
    assert errors[True] < 0.003  # bf16's output rounding only (2 ** -9 relative)
    assert errors[False] > 3 * errors[True]


def test_init_from_data_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        make_model().init_from_data(torch.randn(10, 1, 32, 32))


# --- optimizer -----------------------------------------------------------------------------


def test_parameter_groups_and_units():
    model = make_model()
    optimizer = airbench.build_airbench_sgd(model, lr=11.5, momentum=0.85, weight_decay=0.0153)
    main, norms, stem = optimizer.param_groups
    gain = 1 + 1 / (1 - 0.85)
    assert main["lr"] == pytest.approx(11.5 / gain) == pytest.approx(1.5)
    assert norms["lr"] == pytest.approx(64 * 1.5)
    assert stem["params"] == [model.whiten.bias] and stem["active_fraction"] == pytest.approx(0.3)
    for group in (main, norms, stem):  # the same decay strength everywhere, lr-independent
        assert group["lr"] * group["weight_decay"] == pytest.approx(0.0153 / gain)
        assert group["nesterov"] and group["momentum"] == 0.85
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in norms["params"]} == bn_biases
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters() if p.requires_grad}


def test_matches_the_papers_sum_loss_sgd():
    """At batch B with lr and wd scaled by B/1024, blitz's mean loss takes the paper's steps."""
    images, labels = fake_data(32)
    batch = 16
    ours = small_model(tta_level=0)
    ours.init_from_data(images)
    ref = copy.deepcopy(ours)
    scale = batch / 1024
    optimizer = airbench.build_airbench_sgd(ours, lr=11.5 * scale, weight_decay=0.0153 * scale, fused=False)
    # The paper's formulas, for a loss summed over the batch.
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    lr, wd = 11.5 / kilostep, 0.0153 * batch / kilostep
    norm_biases = [p for n, p in ref.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in ref.named_parameters() if "norm" not in n and p.requires_grad]
    reference = torch.optim.SGD(
        [dict(params=norm_biases, lr=64 * lr, weight_decay=wd / (64 * lr)),
         dict(params=others, lr=lr, weight_decay=wd / lr)],
        momentum=0.85, nesterov=True,
    )
    for step in range(3):
        x, y = images[step % 2 * batch :][:batch], labels[step % 2 * batch :][:batch]
        for model, opt, reduction in ((ours, optimizer, "mean"), (ref, reference, "sum")):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2, reduction=reduction)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_training_steps_lower_the_loss_without_nan():
    images, labels = fake_data(64)
    model = small_model()
    model.init_from_data(images)
    optimizer = airbench.build_airbench_sgd(model)
    scheduler = airbench.build_airbench_schedule(optimizer, total_steps=24)
    losses = train_steps(model, optimizer, scheduler, images, labels, 24)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


def test_fused_and_foreach_agree():
    images, labels = fake_data(32)
    results = []
    for fused in (True, False):
        model = small_model()
        model.init_from_data(images)
        optimizer = airbench.build_airbench_sgd(model, fused=fused)
        scheduler = airbench.build_airbench_schedule(optimizer, total_steps=6)
        train_steps(model, optimizer, scheduler, images, labels, 6)
        results.append(model.state_dict())
    for name, a in results[0].items():
        torch.testing.assert_close(a, results[1][name], rtol=1e-4, atol=1e-5, msg=name)


def test_whitening_bias_freezes_after_its_fraction():
    images, labels = fake_data(32)
    model = small_model()
    optimizer = airbench.build_airbench_sgd(model, whiten_bias_fraction=0.5, lookahead=False)
    scheduler = airbench.build_airbench_schedule(optimizer, total_steps=8)
    train_steps(model, optimizer, scheduler, images, labels, 4)
    frozen = model.whiten.bias.detach().clone()
    assert frozen.abs().sum() > 0  # it trained for the first half
    conv = model.groups[0].conv1.weight.detach().clone()
    train_steps(model, optimizer, scheduler, images, labels, 4, start=4)
    assert torch.equal(model.whiten.bias, frozen)
    assert not torch.equal(model.groups[0].conv1.weight, conv)


def test_lookahead_ends_on_the_average():
    images, labels = fake_data(32)
    model = small_model()
    optimizer = airbench.build_airbench_sgd(model)
    scheduler = airbench.build_airbench_schedule(optimizer, total_steps=7)
    train_steps(model, optimizer, scheduler, images, labels, 6)  # the last sync was at step 5
    assert optimizer.ema is not None
    average = [t.clone() for t in optimizer.ema]
    fast_at_end: list[torch.Tensor] = []
    sync = optimizer._sync

    def recording_sync(decay: float) -> None:
        fast_at_end[:] = [t.detach().clone() for t in optimizer._tracked()]
        sync(decay)

    optimizer._sync = recording_sync
    train_steps(model, optimizer, scheduler, images, labels, 1, start=6)
    assert optimizer.steps_taken == 7
    tracked = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    assert len(tracked) == len(average) == len(fast_at_end)
    # The model ends on the average as it was (the final sync has decay 1: it does not move the
    # average), not on the weights the last SGD step produced.
    assert all(torch.equal(final, slow) for final, slow in zip(tracked, average))
    assert any(not torch.equal(final, fast) for final, fast in zip(tracked, fast_at_end))


def test_without_the_schedule_it_is_plain_nesterov_sgd():
    images, labels = fake_data(32)
    model = small_model()
    optimizer = airbench.build_airbench_sgd(model)
    train_steps(model, optimizer, None, images, labels, 6)
    assert optimizer.ema is None and optimizer.total_steps is None


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), True, "0.3"])
def test_rejects_a_whitening_bias_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"whiten_bias_fraction must be a number >= 0 and <= 1, got"):
        airbench.build_airbench_sgd(small_model(), whiten_bias_fraction=fraction)


def test_rejects_momentum_of_one():
    with pytest.raises(ValueError):
        airbench.build_airbench_sgd(small_model(), momentum=1.0)


def test_state_dicts_roundtrip_through_the_safe_loader_and_resume_exactly():
    """Train 10 steps straight, or 6 then save, rebuild, load and train 4: the same weights."""
    images, labels = fake_data(64)
    total = 10

    def build():
        model = small_model()
        model.init_from_data(images)
        optimizer = airbench.build_airbench_sgd(model)
        return model, optimizer, airbench.build_airbench_schedule(optimizer, total_steps=total)

    model, optimizer, scheduler = build()
    train_steps(model, optimizer, scheduler, images, labels, total)
    straight = model.state_dict()

    model, optimizer, scheduler = build()
    train_steps(model, optimizer, scheduler, images, labels, 6)
    saved = roundtrip({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    assert len(saved["optimizer"]["airbench"]["ema"]) > 0 and saved["optimizer"]["airbench"]["steps_taken"] == 6

    model, optimizer, scheduler = build()
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert optimizer.steps_taken == 6 and scheduler.last_epoch == 6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(saved["scheduler"]["_last_lr"][0])
    train_steps(model, optimizer, scheduler, images, labels, total - 6, start=6)
    for name, value in straight.items():
        torch.testing.assert_close(model.state_dict()[name], value, msg=name)


def test_fresh_optimizer_state_roundtrips():
    model = small_model()
    optimizer = airbench.build_airbench_sgd(model)
    scheduler = airbench.build_airbench_schedule(optimizer, total_steps=5)
    optimizer.load_state_dict(roundtrip(optimizer.state_dict()))
    scheduler.load_state_dict(roundtrip(scheduler.state_dict()))
    assert optimizer.ema is None and optimizer.steps_taken == 0


# --- schedule ------------------------------------------------------------------------------


def test_schedule_shape():
    shape = airbench.AirbenchShape(100)
    assert shape(0) == pytest.approx(0.2)
    assert shape(23) == pytest.approx(1.0)
    assert shape(11) == pytest.approx(0.2 + 0.8 * 11 / 23)
    assert shape(100) == pytest.approx(0.07)
    assert shape(200) == pytest.approx(0.07)
    assert shape(23 + 77 // 2) < 1 and shape(23 + 77 // 2) > 0.07


def test_schedule_works_with_other_optimizers():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = airbench.build_airbench_schedule(optimizer, total_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    lr = optimizer.param_groups[0]["lr"]
    restored = airbench.build_airbench_schedule(optimizer, total_steps=10)
    restored.load_state_dict(roundtrip(scheduler.state_dict()))
    assert restored.last_epoch == 3 and restored.get_last_lr() == [pytest.approx(lr)]


# --- registration --------------------------------------------------------------------------


def test_registration():
    found: dict[str, dict[str, Any]] = {"models": {}, "optimizers": {}, "schedules": {}}

    def collector(kind):
        def register(name, factory, *, description="", **metadata):
            assert description
            found[kind][name] = factory
        return register

    airbench.register_models(register=collector("models"))
    airbench.register_optimizers(register=collector("optimizers"))
    airbench.register_schedules(register=collector("schedules"))
    assert found["models"] == {"airbench": airbench.build_airbench}
    assert found["optimizers"] == {
        "airbench_sgd": airbench.build_airbench_sgd, "airbench_muon": airbench.build_airbench_muon
    }
    assert found["schedules"] == {"airbench": airbench.build_airbench_schedule}


def test_the_airbench94_recipe_runs_end_to_end_on_the_cpu(cifar_root, tmp_path):
    """The speed recipe through the CLI on a few batches of a CIFAR-format fixture (fp32 here)."""
    from typer.testing import CliRunner

    from blitz.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--recipe", "airbench94", "--data-root", str(cifar_root), "--precision", "32",
        "--no-channels-last", "--batch-size", "25", "--epochs", "2", "--limit-steps", "2", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "Model: airbench" in result.output and "on the 40 test images" in result.output
    summary = (out / "summary.json").read_text()
    assert '"status": "finished"' in summary


def test_compiled_bf16_backward_stays_finite():
    """Regression: with amax as the global pool, torch.compile + bf16 autocast gave NaN gradients
    (its backward found no position equal to the differently rounded max); the H100 run of
    `--compile` diverged in its first epoch."""
    images, labels = fake_data(32)
    model = small_model(tta_level=0)
    model.init_from_data(images)
    compiled = torch.compile(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(compiled(images), labels, label_smoothing=0.2)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
