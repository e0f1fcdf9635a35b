"""The optimizer plugins: LeanSGD's short path gives exactly what torch.optim.SGD gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from blitz.plugins.optimizers import LeanSGD, build_sgd


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, scaler: torch.amp.GradScaler | None = None) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 6, generator=generator)
        loss = model(x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


@pytest.mark.parametrize(
    "options",
    [
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"momentum": 0.8, "dampening": 0.1, "maximize": True},
        {"momentum": 0.0, "weight_decay": 1e-3},
    ],
)
def test_lean_sgd_equals_fused_sgd(options):
    ours, theirs = _model(), _model()
    lean = LeanSGD(ours.parameters(), lr=0.05, fused=True, **options)
    plain = torch.optim.SGD(theirs.parameters(), lr=0.05, fused=True, **options)
    _train(ours, lean, 6)
    _train(theirs, plain, 6)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(lean.state.values(), plain.state.values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lean_sgd_skips_parameters_without_a_gradient_on_its_short_path(monkeypatch):
    """Frozen or unused parameters (airbench's frozen BatchNorm scales): the fused kernel still
    serves the rest, from the first step, as SGD.step would."""
    ours, theirs = _model(), _model()
    for model in (ours, theirs):
        model[0].weight.requires_grad_(False)
    lean = LeanSGD(ours.parameters(), lr=0.1, momentum=0.9, nesterov=True, fused=True)
    plain = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, nesterov=True, fused=True)
    monkeypatch.setattr(lean, "_general_step", lambda closure: pytest.fail("the general path"))
    _train(ours, lean, 3)
    _train(theirs, plain, 3)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert ours[0].weight not in lean.state  # no buffer for a parameter that never had a gradient


def test_lean_sgd_equals_sgd_when_a_parameter_is_frozen_mid_run():
    ours, theirs = _model(), _model()
    lean = LeanSGD(ours.parameters(), lr=0.1, momentum=0.9, fused=True)
    plain = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, fused=True)
    _train(ours, lean, 2)
    _train(theirs, plain, 2)
    for model, optimizer in ((ours, lean), (theirs, plain)):
        model[0].weight.requires_grad_(False)  # frozen: no gradient, SGD skips it
        _train(model, optimizer, 2)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_lean_sgd_under_a_gradient_scaler_matches_sgd():
    ours, theirs = _model(), _model()
    lean = LeanSGD(ours.parameters(), lr=0.1, momentum=0.9, fused=True)
    plain = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, fused=True)
    _train(ours, lean, 4, torch.amp.GradScaler("cpu", init_scale=1024.0))
    _train(theirs, plain, 4, torch.amp.GradScaler("cpu", init_scale=1024.0))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def _train_with_an_overflow_first(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    """Under a gradient scaler, as fp16 runs are: the first step's gradients are inf, so it is skipped."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        loss = model(torch.randn(4, 6, generator=generator)).square().mean() * (float("inf") if step == 0 else 1.0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def test_fused_sgd_survives_a_skipped_first_step():
    """Regression: PyTorch's fused SGD makes its first momentum buffers with empty_like and fills
    them in the kernel that a skipped step never runs; they kept garbage, and training went to
    NaN (airbench94 under 16-mixed). LeanSGD and AirbenchSGD start them at zero."""
    from blitz.plugins import airbench

    def net():
        torch.manual_seed(0)
        return airbench.build_airbench(num_classes=3, input_shape=(3, 8, 8), widths=(4,), tta_level=0)

    builders = {
        "sgd": lambda model, fused: LeanSGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused),
        "airbench_sgd": lambda model, fused: airbench.build_airbench_sgd(model, fused=fused, lookahead=False),
    }
    for name, build in builders.items():
        results = []
        for fused in (True, False):
            model = _model() if name == "sgd" else nn.Sequential(nn.Unflatten(1, (3, 2, 1)), nn.Upsample((8, 8)), net())
            optimizer = build(model if name == "sgd" else model[2], fused)
            _train_with_an_overflow_first(model, optimizer, 4)
            results.append([p.detach().clone() for p in model.parameters()])
        assert all(torch.isfinite(p).all() for p in results[0]), name
        for fused, foreach in zip(*results):  # as the foreach path, to its rounding (Nesterov, decay)
            torch.testing.assert_close(fused, foreach, rtol=1e-4, atol=1e-5, msg=name)


def test_lean_sgd_checkpoints_load_into_sgd_and_back():
    model = _model()
    lean = build_sgd(model, lr=0.1, momentum=0.9)
    assert isinstance(lean, LeanSGD)
    _train(model, lean, 3)
    plain = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    plain.load_state_dict(lean.state_dict())
    again = LeanSGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    again.load_state_dict(plain.state_dict())
    for p in model.parameters():
        assert torch.equal(again.state[p]["momentum_buffer"], lean.state[p]["momentum_buffer"])


def test_lean_sgd_runs_step_hooks_and_zero_grad_keeps_zeros_on_request():
    model = _model()
    torch.optim.SGD(model.parameters(), lr=0.1)  # torch.optim wraps SGD.step in its hook runner on first use
    optimizer = LeanSGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    calls = []
    optimizer.register_step_post_hook(lambda *_: calls.append("post"))
    _train(model, optimizer, 3)
    assert calls == ["post"] * 3
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_lean_sgd_runs_global_and_pre_hooks_once_and_only_while_registered():
    model = _model()
    optimizer = LeanSGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    calls = []
    pre = optimizer.register_step_pre_hook(lambda *_: calls.append("pre"))
    everyone = register_optimizer_step_post_hook(lambda *_: calls.append("global"))
    try:
        _train(model, optimizer, 2)
    finally:
        everyone.remove()
    pre.remove()
    _train(model, optimizer, 2)  # no hooks left: the short path, and nothing is called
    assert calls == ["pre", "global"] * 2


def test_lean_sgd_step_shows_in_a_profile_under_torchs_name():
    model = _model()
    optimizer = LeanSGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    _train(model, optimizer, 1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        _train(model, optimizer, 1)
    assert "Optimizer.step#LeanSGD.step" in {event.name for event in profile.events()}


def test_a_lean_sgd_subclass_with_its_own_step_runs_step_hooks_once():
    """torch wraps the subclass's step in the hook runner; LeanSGD's step under it must not run them again."""

    class Clipping(LeanSGD):
        def step(self, closure=None):
            torch.nn.utils.clip_grad_norm_([p for g in self.param_groups for p in g["params"]], 1.0)
            return super().step(closure)

    model = _model()
    optimizer = Clipping(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    calls = []
    optimizer.register_step_pre_hook(lambda *_: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *_: calls.append("post"))
    _train(model, optimizer, 2)
    assert calls == ["pre", "post"] * 2


def test_a_warmup_as_long_as_the_run_is_warned_and_a_fractional_step_count_refused():
    from blitz.plugins.schedules import build_cosine_schedule, build_linear_schedule

    optimizer = torch.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.warns(UserWarning, match=r"warmup=1000 steps is at least the run's 4 steps: the learning rate never"):
        build_cosine_schedule(optimizer, total_steps=4, warmup=1000)
    with pytest.raises(ValueError, match="a whole number of steps, got 1.5"):
        build_linear_schedule(optimizer, total_steps=100, warmup=1.5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_linear_schedule(optimizer, total_steps=100, warmup=0.5)  # a fraction, and a count below the steps
        build_linear_schedule(optimizer, total_steps=100, warmup=10)
