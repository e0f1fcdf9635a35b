"""Gradients a schedule ends early (blitz.freezing): when they stop, that training is unchanged,
and that the model leaves training as it came."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blitz.checkpoint import load_checkpoint
from blitz.config import RunConfig
from blitz.engine import Trainer
from blitz.stopping import StopRequest
from blitz.errors import Interrupted, PluginError
from blitz.freezing import GradientFreezer, can_freeze
from blitz.hookspecs import hookimpl
from blitz.plugin_host import PluginHost, discover, local_source
from blitz.plugins import airbench, schedules


def two_groups(**second: object) -> torch.optim.SGD:
    return torch.optim.SGD([
        {"params": [nn.Parameter(torch.ones(2, 2))], "lr": 1.0},
        {"params": [nn.Parameter(torch.ones(2))], "lr": 2.0, **second},
    ])


@pytest.mark.parametrize("build", [schedules.build_linear_schedule, schedules.build_cosine_schedule])
@pytest.mark.parametrize("warmup", [0.0, 0.5, 3, 4, 6])  # steps: 0, 2, 3, 4, 6 of the span's 4
def test_a_group_is_done_from_the_step_its_lr_stays_zero(build, warmup):
    optimizer = two_groups(schedule_span=0.25, freeze_when_done=True)
    scheduler = build(optimizer, total_steps=16, warmup=warmup, final=0.0)
    (step, params), = scheduler.parameters_done_at().items()
    assert params == optimizer.param_groups[1]["params"]
    lrs = []
    for _ in range(16):
        lrs.append(optimizer.param_groups[1]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[step - 1] > 0 and all(lr == 0 for lr in lrs[step:])  # the first step of lr 0 for good


@pytest.mark.parametrize("second", [{"schedule_span": 0.25}, {"schedule_span": 0.25, "freeze_when_done": True, "final": 0.1}])
def test_only_groups_that_ask_and_end_at_zero_are_done(second):
    final = second.pop("final", 0.0)
    scheduler = schedules.build_linear_schedule(two_groups(**second), total_steps=16, final=final)
    assert scheduler.parameters_done_at() == {}


def test_airbench_optimizers_say_when_the_whitening_bias_is_done():
    model = airbench.build_airbench(num_classes=10, input_shape=(3, 32, 32), widths=(8, 8, 8))
    muon = airbench.build_airbench_muon(model)
    done = schedules.build_linear_schedule(muon, total_steps=200, warmup=0.0, final=0.0).parameters_done_at()
    assert list(done) == [75] and done[75][0] is model.whiten.bias  # 3 of 8 epochs, as the reference
    kept = airbench.build_airbench_muon(model, freeze_whiten_bias=False)
    assert schedules.build_linear_schedule(kept, total_steps=200, final=0.0).parameters_done_at() == {}
    sgd = airbench.build_airbench_sgd(model)
    done = airbench.build_airbench_schedule(sgd, total_steps=100).parameters_done_at()
    assert list(done) == [30] and done[30][0] is model.whiten.bias


def test_the_freezer_freezes_at_its_steps_catches_up_and_restores():
    a, b, fixed = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    fixed.requires_grad_(False)
    freezer = GradientFreezer({2: [a, fixed], 5: [b]})
    freezer.after_step(1)
    assert a.requires_grad and b.requires_grad
    freezer.after_step(2)
    assert not a.requires_grad and b.requires_grad
    freezer.restore()
    assert a.requires_grad and not fixed.requires_grad  # only what it froze comes back
    freezer.catch_up(5)
    assert not a.requires_grad and not b.requires_grad
    freezer.restore()
    assert a.requires_grad and b.requires_grad


@pytest.mark.parametrize(("points", "message"), [
    ([1, 2], r"must return a dict of step counts to lists of parameters, got list"),
    ({"75": []}, r"gave '75': list; it must map step counts \(whole numbers >= 0\)"),
    ({-1: []}, r"gave -1: list"),
    ({3: nn.Parameter(torch.ones(1))}, r"gave 3: Parameter"),
    ({3: [nn.Parameter(torch.ones(1)) * 2]}, r"gave 3: list; .* \(leaf tensors\)"),
])
def test_a_schedule_that_returns_nonsense_is_named(points, message):
    class Odd:
        def parameters_done_at(self):
            return points

    with pytest.raises(PluginError, match=r"^Schedule 'odd': parameters_done_at\(\) " + message):
        GradientFreezer.for_schedule(Odd(), "odd")
    assert not GradientFreezer.for_schedule(Odd(), "odd", enabled=False)


def test_only_for_a_plain_or_dataparallel_model_uncompiled_and_unscaled():
    model = nn.Linear(2, 2)
    assert can_freeze(model, model, compiled=False, scaled=False)
    assert can_freeze(nn.DataParallel(model), model, compiled=False, scaled=False)  # replicas follow requires_grad
    assert not can_freeze(model, model, compiled=True, scaled=False)
    assert not can_freeze(model, model, compiled=False, scaled=True)
    assert not can_freeze(model, model, compiled=False, scaled=False, graphed=True)  # --cuda-graphs
    ddp = object.__new__(nn.parallel.DistributedDataParallel)  # isinstance is all that is asked
    assert not can_freeze(ddp, model, compiled=False, scaled=False)
    assert not can_freeze(nn.Sequential(model), model, compiled=False, scaled=False)  # an unknown wrapper


def test_a_freeze_point_at_step_zero_holds_from_the_start():
    a = nn.Parameter(torch.ones(1))
    freezer = GradientFreezer({0: [a]})
    freezer.catch_up(0)  # the engine's call before the first step
    assert not a.requires_grad


# ---- in the engine -------------------------------------------------------------------------


class CountStemGradients:
    """A plugin that counts the whitening bias's gradients and records requires_grad per epoch."""

    def __init__(self) -> None:
        self.gradients, self.requires_grad, self.hooked = 0, [], False

    @hookimpl
    def on_train_start(self, run):
        run.model.whiten.bias.register_hook(self._count)
        self.hooked = True

    def _count(self, grad):
        self.gradients += 1

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        self.requires_grad.append(run.model.whiten.bias.requires_grad)


def muon_config(cifar_root, out, **kwargs) -> RunConfig:
    """airbench94_muon's components on the fixture: 4 steps an epoch, the bias done after 3 of 8."""
    values = dict(
        model="airbench", dataset="cifar10", data_root=cifar_root, optimizer="airbench_muon", schedule="linear",
        strategy="cpu", epochs=2, batch_size=25, lr=0.24, momentum=0.6, weight_decay=0.004, label_smoothing=0.2,
        model_args={"widths": [8, 8, 8], "tta_level": 0, "scaling_factor": 1 / 8, "head_std": 1.0, "zero_whiten_bias": False},
        optimizer_args={"bias_lr": 1.3, "head_lr": 17.0, "whiten_bias_fraction": 0.375},
        schedule_args={"warmup": 0.0, "final": 0.0}, deterministic=True, log_every=1, out=out,
    )
    values.update(kwargs)
    return RunConfig(**values)


def test_training_is_bit_identical_with_the_stopped_gradients(cifar_root, tmp_path):
    counted = CountStemGradients()
    result = Trainer(muon_config(cifar_root, tmp_path / "frozen"), host=PluginHost([*discover(), local_source(counted, "count")])).fit()
    assert counted.gradients == 3  # 8 steps, the bias's gradient only in its 3
    assert counted.requires_grad == [False, False]
    assert result.model.whiten.bias.requires_grad  # put back at the end

    plain = CountStemGradients()
    config = muon_config(cifar_root, tmp_path / "plain")
    config.optimizer_args["freeze_whiten_bias"] = False
    Trainer(config, host=PluginHost([*discover(), local_source(plain, "count")])).fit()
    assert plain.gradients == 8
    frozen = load_checkpoint(tmp_path / "frozen" / "checkpoints" / "last.ckpt").model
    trained = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.ckpt").model
    assert all(torch.equal(frozen[k], trained[k]) for k in frozen)


def test_a_resumed_run_stops_the_gradients_it_had_stopped(cifar_root, tmp_path):
    class StopAfterFirstEpoch:
        def __init__(self, stop: list[StopRequest]) -> None:
            self.stop = stop

        @hookimpl
        def on_epoch_end(self, run, epoch, metrics):
            self.stop[0](15)

    stops: list[StopRequest] = []
    trainer = Trainer(muon_config(cifar_root, tmp_path / "run"),
                      host=PluginHost([*discover(), local_source(StopAfterFirstEpoch(stops), "stopper")]))
    stops.append(trainer.stop)
    with pytest.raises(Interrupted):
        trainer.fit()
    counted = CountStemGradients()
    resumed = Trainer(muon_config(cifar_root, tmp_path / "run"), resume_from=tmp_path / "run" / "checkpoints" / "last.ckpt",
                      host=PluginHost([*discover(), local_source(counted, "count")]))
    warnings: list[str] = []
    resumed.warn_all = warnings.extend  # a hook that fails is a warning: there must be none
    resumed.fit()
    assert warnings == [] and counted.hooked  # the hooks saw the model as built ...
    assert counted.gradients == 0 and counted.requires_grad == [False]  # ... and steps 5-8, past the bias's 3, froze it


def test_not_with_a_gradient_scaler(cifar_root, tmp_path):
    """16-mixed: the scaler's skipped steps are not optimizer steps, and its overflow check reads
    every gradient, so nothing is frozen there."""
    counted = CountStemGradients()
    Trainer(muon_config(cifar_root, tmp_path / "run", precision="16-mixed"),
            host=PluginHost([*discover(), local_source(counted, "count")])).fit()
    assert counted.gradients == 8 and counted.requires_grad == [True, True]
