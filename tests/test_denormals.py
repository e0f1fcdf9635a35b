"""Denormal floats are flushed to zero while a CPU run trains, and the mode is put back after."""

from __future__ import annotations

import torch

from blitz.denormals import denormals_flushed, flushing_denormals
from blitz.engine import Trainer
from blitz.hookspecs import hookimpl
from tests.test_engine import host_with, tiny_config

DENORMAL = 1e-39


def product_of_denormal() -> float:
    return torch.full((64,), DENORMAL).mul_(1.0)[0].item()


def test_flushing_sets_the_mode_inside_and_puts_it_back():
    assert not denormals_flushed() and product_of_denormal() > 0  # the CPU's default
    with flushing_denormals():
        assert denormals_flushed() and product_of_denormal() == 0.0
    assert not denormals_flushed() and product_of_denormal() > 0


def test_a_mode_set_before_is_kept_after():
    torch.set_flush_denormal(True)
    try:
        with flushing_denormals():
            assert denormals_flushed()
        assert denormals_flushed()  # the caller's choice, not the default, is what comes back
        with flushing_denormals(enabled=False):
            assert denormals_flushed()
    finally:
        torch.set_flush_denormal(False)


def test_disabled_it_changes_nothing():
    with flushing_denormals(enabled=False):
        assert not denormals_flushed()


def test_the_second_thread_of_a_cpu_step_flushes_too():
    # The step's products and copies run on PyTorch's thread pool: a worker that kept denormals
    # would keep the slow arithmetic the flush is for.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.ones(1 << 20).add_(1)  # the pool's threads exist before the mode is set
        with flushing_denormals():
            products = torch.full((1 << 22,), DENORMAL).mul_(1.0)
        assert int(products.count_nonzero()) == 0
    finally:
        torch.set_num_threads(before)


def test_a_cpu_run_trains_with_denormals_flushed_and_leaves_the_mode_as_found(tmp_path):
    class ModeSeen:
        def __init__(self) -> None:
            self.seen: set[bool] = set()

        @hookimpl
        def on_train_start(self, run):
            run.model.register_forward_pre_hook(lambda m, args: self.seen.add(denormals_flushed()))

    recorder = ModeSeen()
    Trainer(tiny_config(tmp_path, epochs=1), host=host_with(recorder)).fit()
    assert recorder.seen == {True}
    assert not denormals_flushed()
