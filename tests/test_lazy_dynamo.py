"""blitz's optimizers leave torch._dynamo unimported (1.2-1.5 s of every run's start) until
something compiles, and go through torch's guard once it is loaded."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from blitz.lazy_dynamo import LazyDynamoOptimizer
from blitz.plugins.optimizers import LeanSGD
from tests.fresh_process import printed_by


def test_a_training_loop_on_blitz_optimizers_does_not_import_dynamo():
    """In a fresh process: build, step, zero, save and load every optimizer blitz registers."""
    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from blitz.plugins.optimizers import build_adam, build_adamw, build_sgd\n"
        "from blitz.plugins.muon import build_muon\n"
        "from blitz.plugins.airbench import AirbenchSGD\n"
        "model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))\n"
        "for optimizer in (build_sgd(model, lr=0.1, momentum=0.9, nesterov=True),\n"
        "                  build_sgd(model, lr=0.1, momentum=0.9, fused=False),  # SGD.step's own path\n"
        "                  build_muon(model, lr=0.02, momentum=0.9, weight_decay=0.0),\n"
        "                  build_adam(model, lr=0.01), build_adam(model, lr=0.01, fused=False),\n"
        "                  build_adamw(model, lr=0.01),\n"
        "                  AirbenchSGD(model.parameters(), module=None, lr=0.1, momentum=0.9)):\n"
        "    for _ in range(2):\n"
        "        optimizer.zero_grad()\n"
        "        model(torch.randn(5, 3, 6, 6)).square().mean().backward()\n"
        "        optimizer.step()\n"
        "    optimizer.load_state_dict(optimizer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    assert printed_by(code) == "False"


def test_once_dynamo_is_loaded_the_methods_go_through_torchs_guard(monkeypatch):
    calls = []
    method = getattr(torch.optim.Optimizer.state_dict, "__wrapped__", torch.optim.Optimizer.state_dict)

    def guard(self):  # a stand-in for torch's guard, wrapped as functools.wraps leaves it
        calls.append(self)
        return method(self)

    guard.__wrapped__ = method
    monkeypatch.setattr(torch.optim.Optimizer, "state_dict", guard)
    optimizer = LeanSGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    monkeypatch.delitem(sys.modules, "torch._dynamo", raising=False)
    optimizer.state_dict()
    assert calls == []  # not loaded: the method itself
    monkeypatch.setitem(sys.modules, "torch._dynamo", object())
    state = optimizer.state_dict()
    assert calls == [optimizer] and state["param_groups"][0]["lr"] == 0.1


def test_lazy_dynamo_methods_behave_as_torchs():
    """The same state dicts, loads and zeroing as a torch optimizer's."""
    class LazySGD(LazyDynamoOptimizer, torch.optim.SGD):
        pass

    ours, theirs = nn.Linear(3, 2), nn.Linear(3, 2)
    theirs.load_state_dict(ours.state_dict())
    lazy = LazySGD(ours.parameters(), lr=0.1, momentum=0.9)
    plain = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    lazy.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr": 0.5})
    plain.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr": 0.5})
    for model, optimizer in ((ours, lazy), (theirs, plain)):
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    a, b = lazy.state_dict(), plain.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert all(torch.equal(a["state"][k]["momentum_buffer"], b["state"][k]["momentum_buffer"]) for k in b["state"])
    lazy.load_state_dict(b)
    assert lazy.param_groups[1]["lr"] == 0.5
    with pytest.raises(ValueError, match="parameter group"):  # torch's own checks still run
        lazy.load_state_dict({"state": {}, "param_groups": b["param_groups"][:1]})


def test_lean_sgd_takes_its_first_step_on_the_fused_kernel(monkeypatch):
    """SGD.step, the general path, imports torch._dynamo: the first step no longer goes there."""
    model = nn.Linear(3, 2)
    optimizer = LeanSGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, fused=True)

    def general(closure):
        raise AssertionError("the general path")

    monkeypatch.setattr(optimizer, "_general_step", general)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], p.grad) for p in model.parameters())


def test_an_override_between_the_base_and_torchs_optimizer_is_kept():
    """LazyDynamoOptimizer before a torch optimizer subclass that overrides state_dict (Lookahead,
    say): that override runs, not torch.optim.Optimizer's."""
    class WithExtra(torch.optim.SGD):
        def state_dict(self):
            return {**super().state_dict(), "extra": 1}

    class Lazy(LazyDynamoOptimizer, WithExtra):
        pass

    assert Lazy(nn.Linear(2, 2).parameters(), lr=0.1).state_dict()["extra"] == 1


@pytest.mark.parametrize("dynamo_loaded", [False, True])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_lazy_adams_step_as_torchs_bit_for_bit_with_hooks_run_once(
    kind: str, fused: bool, dynamo_loaded: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from blitz import lazy_dynamo
    from blitz.plugins.optimizers import LazyAdam, LazyAdamW

    monkeypatch.setattr(lazy_dynamo, "dynamo_loaded", lambda: dynamo_loaded)

    lazy_class, torch_class = (LazyAdam, torch.optim.Adam) if kind == "adam" else (LazyAdamW, torch.optim.AdamW)
    torch.manual_seed(0)
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    # torch's own first: its class's step then carries torch's hook runner too, which must not
    # run the hooks a second time inside ours
    plain = torch_class(theirs.parameters(), lr=0.01, weight_decay=0.1, fused=fused)
    lazy = lazy_class(ours.parameters(), lr=0.01, weight_decay=0.1, fused=fused)
    calls = []
    lazy.register_step_pre_hook(lambda *args: calls.append("pre"))
    lazy.register_step_post_hook(lambda *args: calls.append("post"))
    for _ in range(3):
        x = torch.randn(8, 5)
        for model, optimizer in ((ours, lazy), (theirs, plain)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            with torch.enable_grad():  # the update is made without grad, whatever the caller's mode
                optimizer.step()
    assert calls == ["pre", "post"] * 3
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert all(p.is_leaf and p.grad_fn is None for p in ours.parameters())


def test_once_dynamo_is_loaded_a_step_goes_through_torchs_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo

    from blitz import lazy_dynamo
    from blitz.plugins.optimizers import build_adam

    breaks = []
    monkeypatch.setattr(torch._dynamo, "graph_break", lambda: breaks.append(1))
    model = nn.Linear(2, 2)
    optimizer = build_adam(model, lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    monkeypatch.setattr(lazy_dynamo, "dynamo_loaded", lambda: False)
    optimizer.step()
    assert breaks == []
    monkeypatch.setattr(lazy_dynamo, "dynamo_loaded", lambda: True)
    optimizer.step()
    assert breaks == [1, 1]  # torch's wrapper: a graph break before the step and one after
