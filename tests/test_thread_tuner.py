"""--cpu-threads auto: the tuner's choices on simulated step times, and its wiring in the engine."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import torch

from blitz.thread_tuner import MAX_HOLD_WINDOWS, TRY_CHECK_STEPS, WINDOW_STEPS, ThreadTuner


@pytest.fixture(autouse=True)
def _threads_put_back():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class SimulatedSteps:
    """A clock that advances by each step's cost at the tuner's current thread count."""

    def __init__(self, cost: Callable[[int, int], float]) -> None:
        self.cost = cost  # (threads, step number) -> seconds
        self.now = 0.0
        self.step = 0

    def clock(self) -> float:
        return self.now

    def run(self, tuner: ThreadTuner, steps: int) -> None:
        tuner.start()
        for _ in range(steps):
            self.now += self.cost(tuner.current, self.step)
            self.step += 1
            tuner.after_step(4)


def test_two_threads_are_chosen_where_they_are_faster():
    work = SimulatedSteps(lambda threads, step: 0.4e-3 if threads == 2 else 0.5e-3)
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, 5000)
    used = tuner.take_steps_at()
    assert tuner.chosen == 2 and used[2] > 0.95 * 5000
    assert torch.get_num_threads() == 2  # the count it chose is the one set
    assert tuner.take_steps_at() == {1: 0, 2: 0}  # counted since the last call


def test_long_steps_are_timed_in_short_windows():
    # lenet_fast's steps at batch 128: ~12 ms on two threads, ~20 ms on one. Windows of 32 steps
    # kept its first ~100 steps on one thread; windows of ~50 ms choose two threads in ~10.
    work = SimulatedSteps(lambda threads, step: 0.012 if threads == 2 else 0.020)
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, 391)  # one epoch
    used = tuner.take_steps_at()
    assert tuner.chosen == 2
    assert used[1] <= 30, used  # the first windows, then a few short tries


def test_a_window_times_at_least_two_steps_however_long():
    # untimed warm-up (2 steps), two timed windows (4), the try's untimed first step, its window (2)
    for steps, chosen in ((8, 1), (9, 2)):
        work = SimulatedSteps(lambda threads, step: 1.0 if threads == 2 else 2.0)  # a second a step
        tuner = ThreadTuner(clock=work.clock)
        work.run(tuner, steps)
        assert (tuner.current, tuner.chosen) == (2, chosen)


def test_a_slow_second_thread_is_tried_rarely_and_briefly():
    work = SimulatedSteps(lambda threads, step: 1.5e-3 if threads == 2 else 0.5e-3)  # the other core busy
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, 25_000)  # two epochs of the tutorial
    used = tuner.take_steps_at()
    assert tuner.chosen == 1 and torch.get_num_threads() == 1
    assert used[2] <= 40  # a handful of tries, each stopped after its first few steps (17 steps if run in full)


def test_the_choice_follows_the_machines_load_both_ways():
    busy_from, quiet_from = 4000, 8000

    def cost(threads: int, step: int) -> float:
        busy = busy_from <= step < quiet_from
        return (1.5e-3 if busy else 0.4e-3) if threads == 2 else 0.5e-3

    work = SimulatedSteps(cost)
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, busy_from)
    assert tuner.chosen == 2
    tuner.take_steps_at()
    # the other core got busy: noticed after two slow windows (the epoch's first is warm-up), and
    # the try of 1 thread judged against them, not the fast ones before
    work.run(tuner, 200)
    # on 2 threads: the warm-up window, the two slow ones, then one try cut short (1 + 4 steps)
    assert tuner.chosen == 1 and tuner.take_steps_at()[2] == 3 * WINDOW_STEPS + 1 + TRY_CHECK_STEPS
    work.run(tuner, quiet_from - busy_from - 200)
    work.run(tuner, (MAX_HOLD_WINDOWS + 4) * WINDOW_STEPS)  # quiet again: found at the next try at the latest
    assert tuner.chosen == 2


def test_waking_the_thread_pool_does_not_count_against_a_try():
    last = {"threads": 1}

    def cost(threads: int, step: int) -> float:
        woken, last["threads"] = threads != last["threads"], threads
        return 4e-3 if woken and threads == 2 else (0.4e-3 if threads == 2 else 0.5e-3)

    work = SimulatedSteps(cost)
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, 3000)
    assert tuner.chosen == 2


def test_a_lone_slow_window_is_a_hiccup_not_a_reason_to_switch():
    hiccups = {3000, 6000, 9000}  # a preemption or a collection: one step of 10 ms now and then
    work = SimulatedSteps(lambda threads, step: (0.4e-3 if threads == 2 else 0.5e-3) + (10e-3 if step in hiccups else 0.0))
    tuner = ThreadTuner(clock=work.clock)
    work.run(tuner, 12_000)
    assert tuner.chosen == 2 and tuner.take_steps_at()[1] < 200  # the first windows, and rare tries


def test_epochs_shorter_than_a_window_train_on_one_thread_without_trying():
    work = SimulatedSteps(lambda threads, step: 0.4e-3 if threads == 2 else 0.5e-3)
    tuner = ThreadTuner(clock=work.clock)
    for _ in range(5):
        work.run(tuner, WINDOW_STEPS - 1)  # every epoch's first window is warm-up, untimed
    assert tuner.take_steps_at() == {1: 5 * (WINDOW_STEPS - 1), 2: 0}


def test_auto_threads_in_a_cpu_run_are_recorded_and_put_back(tmp_path, monkeypatch):
    from blitz.engine import Trainer
    from tests.test_engine import tiny_config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto picks cpu, as on this machine
    torch.set_num_threads(2)
    lines: list[str] = []
    config = tiny_config(tmp_path, batch_size=2, epochs=2, strategy="auto", cpu_threads="auto",
                         dataset_args={"length": 200, "test_length": 8})
    trainer = Trainer(config)
    trainer.say = lines.append  # type: ignore[method-assign]
    trainer.fit()
    # every fact (strategy, why, threads) on one line that fits a terminal: it was 125 characters
    assert lines[0] == "Strategy: auto picked cpu: no GPU found; 1 or 2 CPU threads to train (the faster as timed), 2 to evaluate"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("event") == "epoch"]
    assert [sum(r["cpu_threads_steps"].values()) for r in epochs] == [100, 100]
    assert any(re.search(r"\d CPU threads? for", line) and "% of steps" in line for line in lines)
    assert torch.get_num_threads() == 2


def test_auto_with_one_thread_available_trains_on_it(tmp_path, monkeypatch):
    from blitz.engine import Trainer
    from tests.test_engine import tiny_config

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    lines: list[str] = []
    trainer = Trainer(tiny_config(tmp_path, epochs=1, cpu_threads="auto"))
    trainer.say = lines.append  # type: ignore[method-assign]
    trainer.fit()
    assert trainer.thread_tuner is None and any(line.endswith("; 1 CPU thread") for line in lines)


@pytest.mark.parametrize(("world_size", "compile_", "batch_size", "expected"), [
    (2, False, 4, "; 1 CPU thread to train, 2 to evaluate"),  # ddp: ranks wait on each other
    (1, True, 4, "; 1 CPU thread to train, 2 to evaluate"),  # compiled kernels keep their count
    (1, True, 32, "; 2 CPU threads"),
    (1, False, 4, "; 1 or 2 CPU threads to train (the faster as timed), 2 to evaluate"),
])
def test_auto_trains_as_unset_where_timing_cannot_choose(tmp_path, monkeypatch, world_size, compile_, batch_size, expected):
    from types import SimpleNamespace

    from blitz.engine import Trainer
    from tests.test_engine import tiny_config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    config = tiny_config(tmp_path, epochs=1, cpu_threads="auto", compile=compile_, batch_size=batch_size)
    trainer = Trainer(config)
    strategy = SimpleNamespace(device=torch.device("cpu"), world_size=world_size)
    assert trainer._choose_threads(strategy) == expected  # type: ignore[arg-type]
    assert (trainer.thread_tuner is not None) == expected.startswith("; 1 or 2")
