"""--cuda-graphs (core/cuda_graphs.py): which calls replay the captured step, what the run does
around the capture, and where it cannot be used.

The capture itself needs a CUDA GPU (bench/gpu_check.sh, part muon-graphs); here a stand-in for
``torch.cuda.make_graphed_callables`` sets ``module.forward`` as torch does, to a function that
records each call it replays and then runs the module's own forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blitz import engine
from blitz.checkpoint import load_checkpoint
from blitz.config import AugmentConfig, RunConfig
from blitz.cuda_graphs import TrainingGraphs, cuda_graphs_problem
from blitz.engine import Trainer
from blitz.hookspecs import hookimpl
from blitz.plugin_host import PluginHost, discover, local_source


def stand_in_capture(replayed: list[tuple[int, ...]]):
    def capture(module: nn.Module, sample_args: tuple[torch.Tensor, ...], **options):
        assert options == {"num_warmup_iters": 3, "allow_unused_input": True}
        own = module.forward

        def replay(x: torch.Tensor) -> torch.Tensor:
            replayed.append(tuple(x.shape))
            return own(x)

        module.forward = replay
        return module

    return capture


def test_replays_training_calls_of_the_captured_batch_only():
    replayed: list[tuple[int, ...]] = []
    model = nn.Linear(3, 2)
    graphs = TrainingGraphs(model, torch.zeros(4, 3), capture=stand_in_capture(replayed))
    x = torch.randn(4, 3)
    assert torch.equal(model(x), x @ model.weight.T + model.bias)  # what a replay computes
    assert replayed == [(4, 3)]
    model(torch.randn(2, 3))  # a last, smaller batch: as usual
    model(torch.randn(4, 3))  # the next full batch: replayed
    assert replayed == [(4, 3)] * 2
    model.double()(torch.randn(4, 3, dtype=torch.float64))  # another dtype: as usual
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)  # under another autocast than the capture's: as usual (the graphs hold its casts)
    model(x.clone().requires_grad_())  # an input wanting its gradient: as usual
    with torch.no_grad():
        model(x)  # no gradients wanted: as usual
    model.eval()
    model(x)  # evaluation: as usual
    model.train()
    model(x)  # training again: replayed
    assert replayed == [(4, 3)] * 3
    graphs.remove()
    assert "forward" not in model.__dict__  # the class's forward again
    model(x)
    assert replayed == [(4, 3)] * 3


def test_remove_keeps_a_forward_set_on_the_instance():
    model = nn.Linear(3, 2)
    own = lambda x: torch.zeros(len(x), 2)  # noqa: E731 (as a wrapper might set one)
    model.forward = own
    graphs = TrainingGraphs(model, torch.zeros(4, 3), capture=stand_in_capture([]))
    assert model.forward is not own
    graphs.remove()
    assert model.forward is own


def test_a_failed_capture_leaves_the_module_as_it_was():
    model = nn.Linear(3, 2)

    def failing(module, sample_args, **options):
        module.forward = lambda x: x  # half done
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="stream is capturing"):
        TrainingGraphs(model, torch.zeros(4, 3), capture=failing)
    assert "forward" not in model.__dict__


@pytest.mark.parametrize(("device", "compiled", "wrapper", "problem"), [
    ("cuda", False, None, None),
    ("cpu", False, None, "the run is on cpu, and CUDA graphs need a CUDA GPU"),
    ("cuda", True, None, "--compile compiles the model; --compile-mode reduce-overhead captures CUDA graphs of it"),
    ("cuda", False, "DistributedDataParallel",
     "the strategy wraps the model in DistributedDataParallel, whose work across GPUs or processes a graph cannot replay"),
])
def test_where_cuda_graphs_cannot_be_used(device, compiled, wrapper, problem):
    assert cuda_graphs_problem(torch.device(device), compiled=compiled, wrapper=wrapper) == problem


def torchlike_capture(replayed: list[tuple[int, ...]]):
    """A stand-in that does what torch's capture does to the engine's tensors: three training
    passes on the sample (batch-norm statistics move), the sample kept as the graphs' input
    buffer (each replay copies its batch into it and computes from there), and autocast's weight
    cache refused."""

    def capture(module: nn.Module, sample_args: tuple[torch.Tensor, ...], **options):
        assert not (torch.is_autocast_enabled("cpu") and torch.is_autocast_cache_enabled())
        (static,) = sample_args
        own = module.forward
        for _ in range(options["num_warmup_iters"]):
            own(static).sum().backward()
        for p in module.parameters():
            p.grad = None

        def replay(x: torch.Tensor) -> torch.Tensor:
            replayed.append(tuple(x.shape))
            static.copy_(x)
            return own(static)

        module.forward = replay
        return module

    return capture


def batch_norm_net(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    features = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, num_classes))


class BatchNormNet:
    @hookimpl
    def register_models(self, register):
        register("bn_net", batch_norm_net, description="a small net with batch norm")


def graph_config(tmp_path, name: str, **values) -> RunConfig:
    # 100 examples in batches of 30: three full batches an epoch and a last one of 10; the
    # evaluation's batches are as large as the captured one, and in eval mode must not replay
    options = dict(
        model="bn_net", dataset="random", strategy="cpu", epochs=2, batch_size=30, eval_batch_size=30, lr=0.1,
        dataset_args={"length": 100, "test_length": 60}, augment=AugmentConfig(), deterministic=True,
        out=tmp_path / name, log_every=2,
    )
    return RunConfig(**{**options, **values})


def graph_run(tmp_path, monkeypatch, name: str, capture, **values) -> tuple[Trainer, list[str]]:
    monkeypatch.setattr(engine, "cuda_graphs_problem", lambda *args, **kwargs: None)  # as on one GPU
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", capture)
    trainer = Trainer(graph_config(tmp_path, name, cuda_graphs=True, **values),
                      host=PluginHost([*discover(), local_source(BatchNormNet(), "bn_net")]))
    said: list[str] = []
    monkeypatch.setattr(trainer, "say", said.append)
    return trainer, said


def plain_weights(tmp_path, name: str, **values) -> dict[str, torch.Tensor]:
    host = PluginHost([*discover(), local_source(BatchNormNet(), "bn_net")])
    Trainer(graph_config(tmp_path, name, **values), host=host).fit()
    return load_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt").model


@pytest.mark.parametrize("data", [
    {},  # uint8 images: normalize() makes new tensors
    {"dataset_args": {"length": 100, "test_length": 60, "shape": [5]}},  # float features: stored as they train
])
@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_a_run_replays_each_full_batch_and_trains_as_without(tmp_path, monkeypatch, data, precision):
    """The engine's side, on the CPU: the stand-in captures in the warm-up, before the model's
    state is put back; the full training batches replay, the last one and the evaluations (of
    the captured size) do not; the data are not overwritten; the forward is put back at the end;
    and the weights and batch-norm statistics come out as without --cuda-graphs."""
    replayed: list[tuple[int, ...]] = []
    trainer, said = graph_run(tmp_path, monkeypatch, "graphs", torchlike_capture(replayed), precision=precision, **data)
    frozen_when: list[bool] = []
    real_can_freeze = engine.can_freeze
    monkeypatch.setattr(engine, "can_freeze", lambda *a, **k: frozen_when.append(k["graphed"]) or real_can_freeze(*a, **k))
    result = trainer.fit()
    assert len(replayed) == 6 and all(shape[0] == 30 for shape in replayed)  # 3 full batches x 2 epochs
    assert any(line.startswith("Warm-up (capturing CUDA graphs, not timed)") for line in said)
    assert frozen_when == [True]  # a graph computes the gradients it was captured with
    assert "forward" not in result.model.__dict__
    assert all(p.grad is None for p in result.model.parameters())  # no views of the graphs' buffers left
    graphed = load_checkpoint(tmp_path / "graphs" / "checkpoints" / "last.ckpt").model
    plain = plain_weights(tmp_path, "plain", precision=precision, **data)
    assert graphed.keys() == plain.keys()
    if data:  # a replay reads its input buffer, not the batch's view of the data: on the CPU the
        # address's alignment can change MKL's rounding (~1e-8 here); overwritten data moved 1e-2
        torch.testing.assert_close(graphed, plain, rtol=0, atol=1e-6)
    else:
        assert all(torch.equal(graphed[k], plain[k]) for k in plain)


def test_a_failed_capture_warns_and_trains_as_usual(tmp_path, monkeypatch):
    def failing(module, sample_args, **options):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    trainer, _ = graph_run(tmp_path, monkeypatch, "run", failing)
    warned: list[str] = []
    monkeypatch.setattr(trainer, "warn_all", warned.extend)
    result = trainer.fit()
    assert warned == ["--cuda-graphs is not used: capturing the training step failed "
                      "(RuntimeError: CUDA error: operation not permitted when stream is capturing)."]
    assert result.history[-1]["epoch"] == 2


def test_a_warm_up_that_fails_after_the_capture_leaves_the_model_as_it_came(tmp_path, monkeypatch):
    trainer, _ = graph_run(tmp_path, monkeypatch, "run", torchlike_capture([]))
    models: list[nn.Module] = []
    real_capture = trainer._capture_graphs

    def capture_then_fail(train_model, *args):
        models.append(train_model)
        graphs = real_capture(train_model, *args)
        monkeypatch.setattr(engine, "set_rng_state", lambda state: (_ for _ in ()).throw(RuntimeError("late failure")))
        return graphs

    monkeypatch.setattr(trainer, "_capture_graphs", capture_then_fail)
    with pytest.raises(RuntimeError, match="late failure"):
        trainer.fit()
    assert "forward" not in models[0].__dict__


def test_on_the_cpu_it_says_it_is_not_used_and_trains(tmp_path, monkeypatch):
    warned: list[str] = []
    trainer = Trainer(graph_config(tmp_path, "run", model="linear", cuda_graphs=True))
    monkeypatch.setattr(trainer, "warn_all", warned.extend)
    trainer.fit()
    assert warned == ["--cuda-graphs is not used: the run is on cpu, and CUDA graphs need a CUDA GPU."]
