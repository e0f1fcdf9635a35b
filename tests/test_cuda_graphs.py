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


def graph_config(tmp_path, name: str, **values) -> RunConfig:
    # 100 examples in batches of 30: three full batches an epoch and a last one of 10
    return RunConfig(
        model="linear", dataset="random", strategy="cpu", epochs=2, batch_size=30, lr=0.1,
        dataset_args={"length": 100, "test_length": 40}, augment=AugmentConfig(), deterministic=True,
        out=tmp_path / name, log_every=2, **values,
    )


def test_a_run_replays_each_full_batch_and_trains_as_without(tmp_path, monkeypatch):
    """The engine's side, on the CPU: the stand-in 'captures' in the warm-up, the full batches
    replay, the last batch and the evaluations do not, and the forward is put back at the end."""
    replayed: list[tuple[int, ...]] = []
    monkeypatch.setattr(engine, "cuda_graphs_problem", lambda *args, **kwargs: None)  # as on one GPU
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", stand_in_capture(replayed))
    said: list[str] = []
    trainer = Trainer(graph_config(tmp_path, "graphs", cuda_graphs=True))
    monkeypatch.setattr(trainer, "say", said.append)
    result = trainer.fit()
    assert replayed == [(30, 3, 32, 32)] * 6  # 3 full batches x 2 epochs
    assert any(line.startswith("Warm-up (capturing CUDA graphs, not timed)") for line in said)
    assert "forward" not in result.model.__dict__
    Trainer(graph_config(tmp_path, "plain")).fit()
    graphed = load_checkpoint(tmp_path / "graphs" / "checkpoints" / "last.ckpt").model
    plain = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.ckpt").model
    assert all(torch.equal(graphed[k], plain[k]) for k in plain)  # the warm-up left nothing behind


def test_a_failed_capture_warns_and_trains_as_usual(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "cuda_graphs_problem", lambda *args, **kwargs: None)

    def failing(module, sample_args, **options):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", failing)
    warned: list[str] = []
    trainer = Trainer(graph_config(tmp_path, "run", cuda_graphs=True))
    monkeypatch.setattr(trainer, "warn_all", warned.extend)
    result = trainer.fit()
    assert warned == ["--cuda-graphs is not used: capturing the training step failed "
                      "(RuntimeError: CUDA error: operation not permitted when stream is capturing)."]
    assert result.history[-1]["epoch"] == 2


def test_on_the_cpu_it_says_it_is_not_used_and_trains(tmp_path, monkeypatch):
    warned: list[str] = []
    trainer = Trainer(graph_config(tmp_path, "run", cuda_graphs=True))
    monkeypatch.setattr(trainer, "warn_all", warned.extend)
    trainer.fit()
    assert warned == ["--cuda-graphs is not used: the run is on cpu, and CUDA graphs need a CUDA GPU."]
