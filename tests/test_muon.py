"""Muon (plugins/muon.py), the airbench_muon optimizer, schedule spans and the airbench94_muon recipe."""

from __future__ import annotations

import copy
import io
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blitz.plugins import airbench, muon, schedules


def singular_values(matrices: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(matrices.double())


@pytest.mark.parametrize("shape", [(16, 40), (40, 16), (3, 8, 24), (12, 12)])
def test_orthogonalize_sets_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    g = torch.randn(shape) * torch.logspace(-1, 0, shape[-1])  # columns of scales 0.1 to 1
    s = singular_values(muon.orthogonalize(g, steps=5))
    # The quintic iteration trades exact convergence for speed: values land in about (0.7, 1.2).
    assert s.min() > 0.5 and s.max() < 1.5, s


def test_orthogonalize_points_where_the_polar_factor_does():
    """The result is close to U V^T (the orthogonal matrix nearest to G), not just any matrix
    with unit singular values."""
    torch.manual_seed(1)
    g = torch.randn(20, 50)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh
    result = muon.orthogonalize(g, steps=5)
    cosine = (result * polar).sum() / (result.norm() * polar.norm())
    assert cosine > 0.95
    assert (muon.orthogonalize(g * 1000.0, steps=5) - result).abs().max() < 1e-4  # scale-invariant


def test_orthogonalize_keeps_dtype_and_zero_stays_zero():
    g = torch.randn(8, 8, dtype=torch.float64)
    assert muon.orthogonalize(g, steps=2, dtype=torch.float32).dtype == torch.float64
    assert torch.equal(muon.orthogonalize(torch.zeros(4, 6)), torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"matrices .* shape \(5,\)"):
        muon.orthogonalize(torch.ones(5))


def fake_gradients(params: list[torch.Tensor], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)


@pytest.mark.parametrize("nesterov,weight_decay", [(True, 0.0), (True, 0.01), (False, 0.003)])
def test_sgd_groups_match_torch_sgd_exactly(nesterov, weight_decay):
    torch.manual_seed(0)
    ours = [torch.randn(5, 3), torch.randn(7)]
    theirs = [p.clone() for p in ours]
    optimizer = muon.Muon(
        [{"params": ours, "use_muon": False, "momentum": 0.85, "nesterov": nesterov, "weight_decay": weight_decay}],
        lr=0.1,
    )
    reference = torch.optim.SGD(theirs, lr=0.1, momentum=0.85, nesterov=nesterov, weight_decay=weight_decay)
    for step in range(4):
        fake_gradients(ours, step)
        fake_gradients(theirs, step)
        optimizer.step()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_muon_step_is_an_orthogonalized_step_of_size_lr():
    torch.manual_seed(0)
    weight = torch.randn(16, 4, 3, 3)
    before = weight.clone()
    optimizer = muon.Muon([{"params": [weight]}], lr=0.02, momentum=0.0)
    fake_gradients([weight], 0)
    optimizer.step()
    step = ((before - weight) / 0.02).reshape(16, -1)
    s = singular_values(step)
    assert s.min() > 0.5 and s.max() < 1.5
    # And it goes downhill: against the gradient.
    assert (step * weight.grad.reshape(16, -1)).sum() > 0


def test_muon_momentum_is_nesterov_over_the_gradients():
    torch.manual_seed(0)
    weight = torch.randn(6, 10)
    start = weight.clone()
    optimizer = muon.Muon([{"params": [weight]}], lr=0.1, momentum=0.6, nesterov=True, ns_steps=4)
    grads = [torch.randn(6, 10) for _ in range(2)]
    for g in grads:
        weight.grad = g.clone()
        optimizer.step()
    buffer1 = grads[0]
    buffer2 = 0.6 * buffer1 + grads[1]
    expected = start - 0.1 * muon.orthogonalize(grads[0] + 0.6 * buffer1, 4)
    expected = expected - 0.1 * muon.orthogonalize(grads[1] + 0.6 * buffer2, 4)
    torch.testing.assert_close(weight, expected)
    torch.testing.assert_close(optimizer.state[weight]["momentum_buffer"], buffer2)


def test_same_shaped_matrices_are_orthogonalized_together_with_the_same_result():
    torch.manual_seed(0)
    together = [torch.randn(8, 3, 3, 3), torch.randn(8, 3, 3, 3), torch.randn(4, 8)]
    alone = [p.clone() for p in together]
    fake_gradients(together, 1)
    fake_gradients(alone, 1)
    muon.Muon([{"params": together}], lr=0.05).step()
    for p in alone:
        muon.Muon([{"params": [p]}], lr=0.05).step()
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b)


def test_normalized_weights_have_norm_sqrt_out_channels_before_the_step():
    weight = torch.randn(32, 8, 3, 3) * 7
    weight.grad = torch.randn_like(weight)
    muon.Muon([{"params": [weight]}], lr=0.0, normalize_weights=True).step()
    assert weight.norm().item() == pytest.approx(32**0.5, rel=1e-5)


def test_decoupled_weight_decay_on_muon_groups():
    weight = torch.randn(4, 4)
    before = weight.clone()
    weight.grad = torch.zeros(4, 4)  # a zero update: only the decay moves the weight
    muon.Muon([{"params": [weight]}], lr=0.5, weight_decay=0.1).step()
    torch.testing.assert_close(weight, before * (1 - 0.05))


def test_muon_refuses_vectors_and_bad_settings():
    with pytest.raises(ValueError, match=r"group 0 holds parameters of shape \[\(3,\)\]: .* use_muon=False"):
        muon.Muon([{"params": [torch.zeros(3)]}], lr=0.1)
    with pytest.raises(ValueError, match=r"group 0: .* got lr=0.1, momentum=1.0"):
        muon.Muon([{"params": [torch.zeros(3, 3)]}], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"group 1: .* got lr=-1"):  # a group's own settings are checked too
        muon.Muon([{"params": [torch.zeros(3, 3)]}, {"params": [torch.zeros(2, 2)], "lr": -1}], lr=0.1)


def test_orthogonalize_ignores_an_outer_autocast():
    g = torch.randn(8, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = muon.orthogonalize(g, steps=3)
    torch.testing.assert_close(inside, muon.orthogonalize(g, steps=3), rtol=0, atol=0)


def test_the_newton_schulz_dtype_is_the_runs_not_the_checkpoints():
    weight = nn.Parameter(torch.randn(4, 4))
    saved = muon.Muon([{"params": [weight]}], lr=0.1, ns_dtype=torch.bfloat16)
    weight.grad = torch.randn(4, 4)
    saved.step()
    resumed = muon.Muon([{"params": [weight]}], lr=0.1, ns_dtype=None)
    resumed.load_state_dict(saved.state_dict())
    assert resumed.ns_dtype is None and "ns_dtype" not in resumed.param_groups[0]


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.hidden = nn.Linear(8, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.norm(self.conv(x))), 1).flatten(1)
        return self.out(F.relu(self.hidden(x)))


def test_build_muon_gives_hidden_matrices_to_muon_and_the_rest_to_sgd():
    model = SmallNet()
    optimizer = muon.build_muon(model, lr=0.02, momentum=0.95, aux_lr=0.1, aux_momentum=0.9)
    muon_group, sgd_group = optimizer.param_groups
    assert muon_group["use_muon"] and {id(p) for p in muon_group["params"]} == {
        id(model.conv.weight), id(model.hidden.weight)
    }
    assert not sgd_group["use_muon"] and sgd_group["lr"] == 0.1 and sgd_group["nesterov"]
    assert id(model.out.weight) in {id(p) for p in sgd_group["params"]}  # the head is not Muon's


class TokenNet(nn.Module):
    """A ViT's parameter shapes in miniature: a class token, an embedding table, a patch conv."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.embed = nn.Embedding(5, 8)
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.head = nn.Linear(8, 10)


def test_build_muon_leaves_tokens_embeddings_and_the_head_to_sgd():
    model = TokenNet()
    muon_group, sgd_group = muon.build_muon(model, lr=0.02).param_groups
    assert [p is model.patch.weight for p in muon_group["params"]] == [True]
    assert {id(model.cls_token), id(model.embed.weight), id(model.head.weight)} <= {id(p) for p in sgd_group["params"]}


def test_build_muon_without_matrices_says_what_to_use():
    with pytest.raises(ValueError, match="no hidden weight matrices .* --optimizer sgd"):
        muon.build_muon(nn.Linear(4, 2), lr=0.02)


def test_muon_trains_a_small_net():
    torch.manual_seed(0)
    model = SmallNet()
    images = torch.randn(64, 3, 8, 8) + torch.randn(64, 3, 1, 1)
    labels = images.mean((2, 3)).argmax(1)  # which channel is brightest: learnable by this net
    optimizer = muon.build_muon(model, lr=0.05, aux_lr=0.05)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(images), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_state_dict_round_trip_continues_identically():
    """A checkpoint (loaded weights_only, as blitz loads them) resumes Muon exactly."""
    torch.manual_seed(0)
    model = SmallNet()
    images, labels = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))

    def train(m: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(images), labels).backward()
            opt.step()

    optimizer = muon.build_muon(model, lr=0.05)
    optimizer.param_groups[0]["ns_dtype"] = torch.bfloat16  # as on a GPU: a dtype in the state
    train(model, optimizer, 2)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    train(model, optimizer, 2)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored = SmallNet()
    restored.load_state_dict(saved["model"])
    restored_optimizer = muon.build_muon(restored, lr=0.05)
    restored_optimizer.load_state_dict(saved["optimizer"])
    train(restored, restored_optimizer, 2)
    for a, b in zip(model.parameters(), restored.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- airbench94_muon ------------------------------------------------------------------------


def small_airbench(**options) -> airbench.AirbenchNet:
    torch.manual_seed(0)
    return airbench.build_airbench(num_classes=10, input_shape=(3, 32, 32), widths=[8, 16, 16], **options)


def test_airbench_muon_groups_and_units():
    model = small_airbench()
    optimizer = airbench.build_airbench_muon(model, lr=0.24, weight_decay=0.004, bias_lr=106.0, head_lr=1340.0)
    filters, stem, norms, head = optimizer.param_groups
    trainable_4d = [p for p in model.parameters() if p.requires_grad and p.dim() == 4]
    assert filters["use_muon"] and filters["normalize_weights"] and len(filters["params"]) == len(trainable_4d) == 6
    assert all(p is not model.whiten.weight for p in filters["params"])  # frozen: not trained at all
    assert stem["params"] == [model.whiten.bias] and stem["schedule_span"] == 0.375 and stem["lr"] == 106.0
    assert len(norms["params"]) == 6 and norms["lr"] == 106.0  # the BatchNorm biases (scales are frozen)
    assert head["params"] == [model.head.weight] and head["lr"] == 1340.0
    for group in (stem, norms, head):  # the same per-step decay, whatever the lr
        assert group["lr"] * group["weight_decay"] == pytest.approx(0.004)
        assert group["momentum"] == 0.85 and group["nesterov"]


@pytest.mark.parametrize("options,message", [
    ({"whiten_bias_fraction": 0}, "whiten_bias_fraction must be a number > 0 and <= 1, got 0"),
    ({"whiten_bias_fraction": 2}, "whiten_bias_fraction must be a number > 0 and <= 1, got 2"),
    ({"sgd_momentum": 1.0}, "sgd_momentum must be a number >= 0 and < 1, got 1.0"),
    ({"bias_lr": -1}, "bias_lr must be a number >= 0, got -1"),
    ({"head_lr": float("nan")}, "head_lr must be a number >= 0, got nan"),
    ({"ns_steps": 2.5}, "ns_steps must be a whole number >= 1, got 2.5"),
    ({"ns_steps": True}, "ns_steps must be a whole number >= 1, got True"),
    ({"bias_lr": "abc"}, "bias_lr must be a number >= 0, got 'abc'"),
])
def test_airbench_muon_refuses_bad_options_by_name(options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        airbench.build_airbench_muon(small_airbench(), **options)


@pytest.mark.parametrize("options,message", [
    ({"ns_steps": 3.0}, "ns_steps must be a whole number >= 1, got 3.0"),
    ({"aux_lr": -1}, "aux_lr must be a number >= 0, got -1"),
    ({"aux_momentum": 1}, "aux_momentum must be a number >= 0 and < 1, got 1"),
    ({"aux_weight_decay": "x"}, "aux_weight_decay must be a number >= 0, got 'x'"),
])
def test_build_muon_refuses_bad_options_by_name(options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        muon.build_muon(SmallNet(), lr=0.02, **options)


def test_the_airbench_model_checks_its_new_options():
    with pytest.raises(ValueError, match="zero_whiten_bias must be true or false, got 'no'"):
        small_airbench(zero_whiten_bias="no")
    with pytest.raises(ValueError, match="whiten_in_fp32 must be true or false, got 1"):
        small_airbench(whiten_in_fp32=1)
    with pytest.raises(ValueError, match="freeze_whiten_bias must be true or false, got 'no'"):
        airbench.build_airbench_muon(small_airbench(), freeze_whiten_bias="no")
    with pytest.raises(ValueError, match="head_std must be a number >= 0, got inf"):
        small_airbench(head_std=float("inf"))


def test_head_std_rescales_the_initial_head():
    model = small_airbench(head_std=1.0)
    assert model.head.weight.std().item() == pytest.approx(1.0, rel=1e-5)
    default = small_airbench()
    assert default.head.weight.std().item() < 0.5  # PyTorch's init: about 1/sqrt(3 * 16)
    with pytest.raises(ValueError, match="head_std must be positive"):
        small_airbench(head_std=0.0)


def reference_muon_step(weight: torch.Tensor, grad: torch.Tensor, buffer: torch.Tensor, lr: float, momentum: float, steps: int) -> None:
    """airbench94_muon's filter update as published, written out plainly: the momentum buffer,
    Nesterov's look-ahead, the weight rescaled to norm sqrt(rows), then the quintic
    Newton-Schulz iteration on the flattened update (transposed when tall)."""
    buffer.mul_(momentum).add_(grad)
    update = grad + momentum * buffer
    weight.mul_(len(weight) ** 0.5 / weight.norm())
    x = update.reshape(len(update), -1)
    x = x / (x.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
    if tall:
        x = x.T
    weight.add_(x.reshape(weight.shape), alpha=-lr)


def test_airbench_muon_filters_follow_the_published_update():
    model = small_airbench()
    optimizer = airbench.build_airbench_muon(model)
    filters = optimizer.param_groups[0]["params"]
    copies = [p.detach().clone() for p in filters]
    buffers = [torch.zeros_like(p) for p in filters]
    for step in range(3):
        generator = torch.Generator().manual_seed(step)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator) if p.requires_grad else None
        for weight, p, buffer in zip(copies, filters, buffers):
            reference_muon_step(weight, p.grad, buffer, lr=0.24, momentum=0.6, steps=3)
        optimizer.step()
    for weight, p in zip(copies, filters):
        torch.testing.assert_close(p.detach(), weight, rtol=1e-4, atol=1e-5)


def test_mean_loss_rates_reproduce_the_summed_loss_updates():
    """The recipe's rates (x2000, wd / lr) on blitz's mean loss give the reference's steps on its
    summed loss: the same parameters after a few steps, for biases and the head."""
    torch.manual_seed(0)
    batch = 2000
    # float64: with rates ~1000x apart, float32 rounding alone would differ by 1e-4
    features, targets = torch.randn(batch, 6, dtype=torch.float64), torch.randint(0, 3, (batch,))
    ours, theirs = nn.Linear(6, 3).double(), nn.Linear(6, 3).double()
    theirs.load_state_dict(ours.state_dict())
    optimizer = muon.Muon([{"params": list(ours.parameters()), "use_muon": False, "lr": 0.67 * batch,
                            "momentum": 0.85, "weight_decay": 2e-6 * batch / (0.67 * batch)}], lr=0.0)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.67, momentum=0.85, nesterov=True,
                                weight_decay=2e-6 * batch / 0.67)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(ours(features), targets, label_smoothing=0.2).backward()
        optimizer.step()
        reference.zero_grad()
        F.cross_entropy(theirs(features), targets, label_smoothing=0.2, reduction="sum").backward()
        reference.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_recipe_carries_the_reference_hyperparameters():
    from blitz.catalog import load_catalog

    recipe = load_catalog().recipe_values("airbench94_muon")
    options = recipe["optimizer_args"]
    assert options["bias_lr"] == pytest.approx(airbench.MUON_BIAS_LR)
    assert options["head_lr"] == pytest.approx(airbench.MUON_HEAD_LR)
    assert options["whiten_bias_fraction"] == airbench.MUON_WHITEN_BIAS_FRACTION
    assert options["ns_steps"] == airbench.MUON_NS_STEPS and options["sgd_momentum"] == airbench.MUON_SGD_MOMENTUM
    assert (recipe["lr"], recipe["momentum"], recipe["batch_size"]) == (
        airbench.MUON_LR, airbench.MUON_MOMENTUM, airbench.MUON_BATCH_SIZE
    )
    assert recipe["weight_decay"] == pytest.approx(airbench.MUON_WEIGHT_DECAY)
    assert recipe["model_args"]["scaling_factor"] == 1 / 256 and recipe["model_args"]["zero_whiten_bias"] is False


@pytest.mark.parametrize("build", [
    lambda opt: schedules.build_constant_schedule(opt, total_steps=10),
    lambda opt: schedules.build_onecycle_schedule(opt, total_steps=10),
    lambda opt: airbench.build_airbench_schedule(opt, total_steps=10),
], ids=["constant", "onecycle", "airbench"])
def test_schedules_without_spans_refuse_a_group_that_asks_for_one(build):
    optimizer = airbench.build_airbench_muon(small_airbench())
    with pytest.raises(ValueError, match=r"'whitening bias' group is to finish within 0.375 of it \(schedule_span\); use --schedule linear or cosine"):
        build(optimizer)


def test_linear_schedule_runs_each_group_over_its_span():
    weights = [nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD([
        {"params": [weights[0]], "lr": 1.0},
        {"params": [weights[1]], "lr": 2.0, "schedule_span": 0.25},
    ])
    scheduler = schedules.build_linear_schedule(optimizer, total_steps=8, warmup=0.0, final=0.0)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert [round(a, 6) for a, _ in seen] == [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert [round(b, 6) for _, b in seen] == [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_a_bad_schedule_span_is_refused_with_its_group():
    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0, "schedule_span": 1.5}])
    with pytest.raises(ValueError, match=r"parameter group 0: schedule_span must be in \(0, 1\], got 1.5"):
        schedules.build_cosine_schedule(optimizer, total_steps=10)


def test_airbench_muon_trains_the_network():
    torch.manual_seed(0)
    model = small_airbench(head_std=1.0, scaling_factor=1 / 16, tta_level=0)
    images, labels = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    model.init_from_data(images)
    optimizer = airbench.build_airbench_muon(model, bias_lr=0.053 * 128, head_lr=0.67 * 128, weight_decay=2e-6 * 128)
    scheduler = schedules.build_linear_schedule(optimizer, total_steps=20, warmup=0.0, final=0.0)
    before = copy.deepcopy(model.whiten.bias.detach())
    losses, at_span_end = [], None
    for step in range(20):
        if step == round(0.375 * 20):  # the whitening bias's span is over: its lr is 0 from here
            at_span_end = model.whiten.bias.detach().clone()
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.2)
        losses.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert losses[-1] < 0.7 * losses[0]
    assert not torch.equal(before, at_span_end)  # trained in its span ...
    assert torch.equal(at_span_end, model.whiten.bias)  # ... then held
    assert optimizer.param_groups[1]["lr"] == 0.0


def test_the_airbench94_muon_recipe_runs_end_to_end_on_the_cpu(cifar_root, tmp_path):
    """The recipe through the CLI on a few batches of a CIFAR-format fixture, in its own bf16 and
    channels-last (autocast on the CPU)."""
    from typer.testing import CliRunner

    from blitz.cli import app

    out = tmp_path / "run"
    common = ["--data-root", str(cifar_root), "--batch-size", "25", "--limit-steps", "2"]  # bf16, channels-last
    result = CliRunner().invoke(app, ["run", "--recipe", "airbench94_muon", *common, "--epochs", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Model: airbench" in result.output and "on the 40 test images" in result.output
    assert '"status": "finished"' in (out / "summary.json").read_text()
    config = (out / "config.toml").read_text()
    assert 'optimizer = "airbench_muon"' in config and 'schedule = "linear"' in config


def test_registration():
    found = {}
    muon.register_optimizers(register=lambda name, factory, **_: found.setdefault(name, factory))
    assert found == {"muon": muon.build_muon}


def test_the_lenet_fast_recipe_trains_lenet_with_muon(cifar_root, tmp_path):
    from typer.testing import CliRunner

    from blitz.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--recipe", "lenet_fast", "--data-root", str(cifar_root),
                                      "--batch-size", "10", "--limit-steps", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = (out / "config.toml").read_text()
    assert 'optimizer = "muon"' in config and "ns_steps = 3" in config
    assert '"status": "finished"' in (out / "summary.json").read_text()
