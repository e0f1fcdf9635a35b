"""The benchmark scripts' own logic (the benchmarks themselves are not tests: `make bench`)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from strategies import RUNNING, measure_all, partial_figures, run_bounded  # noqa: E402


def test_run_bounded_stops_the_whole_process_group():
    start = time.perf_counter()
    code, message = run_bounded(["sh", "-c", "sleep 60 & sleep 60; wait"], timeout=1)
    assert time.perf_counter() - start < 15  # neither sleep kept it waiting
    assert code != 0 and "stopped after 1 s" in message


def test_a_cut_blitz_run_still_reports_its_speed(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "blitz", "run", "--dataset", "random", "--epochs", "10000",
               "--strategy", "cpu", "--log-every", "20", "--out", str(out)]
    code, _ = run_bounded(command, timeout=15)  # start-up alone can take seconds on a busy machine
    assert code == 143  # blitz's own SIGTERM exit: it checkpointed first
    assert (out / "checkpoints" / "last.ckpt").exists()
    figures = partial_figures(out)  # needs two step records: one past the start-up window
    assert figures.get("partial") and figures["images_per_s"] > 0 and figures["steps_done"] > 20


def test_partial_figures_skip_the_first_window_and_tolerate_missing_files(tmp_path):
    records = [{"event": "step", "step": 20 * i, "images_per_s": rate} for i, rate in enumerate([10, 500, 700, 600], 1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert partial_figures(tmp_path) == {"images_per_s": 600, "steps_done": 80, "partial": True}
    assert partial_figures(tmp_path / "nothing") == {}


def test_the_step_benchmark_runs_every_variant(capsys, monkeypatch):
    import lenet_step

    monkeypatch.setattr(sys, "argv", ["lenet_step.py", "--rounds", "1", "--steps", "12", "--threads", "2"])
    threads = lenet_step.torch.get_num_threads()
    try:
        lenet_step.main()
    finally:
        lenet_step.torch.set_num_threads(threads)  # the benchmark leaves the last variant's count
    assert lenet_step.torch.tensor([1e-39]).mul_(1.0).item() > 0  # denormals computed again, as by default
    rows = {line.split(" x")[0] + " x" + line.split(" x")[1].split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {f"{name} x{t}" for name in ("direct", "fused", "modules", "torch-sgd") for t in (1, 2)}
    for row in rows.values():  # median µs/step, min, max, images/s: positive, min <= median <= max
        median, low, high = (float(v) for v in row.split()[2:5])
        assert 0 < low <= median <= high
        assert float(row.split()[5].replace(",", "")) == pytest.approx(4e6 / median, rel=0.01, abs=1)  # printed rounded


def test_the_step_benchmark_splits_fixed_and_per_image_time(capsys, monkeypatch):
    import lenet_step

    monkeypatch.setattr(sys, "argv", ["lenet_step.py", "--batch-sizes", "1", "3", "--rounds", "1", "--steps", "8"])
    threads = lenet_step.torch.get_num_threads()
    try:
        lenet_step.main()
    finally:
        lenet_step.torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    rows = {int(line.split()[0]): float(line.split()[1]) for line in lines[1:3]}
    assert sorted(rows) == [1, 3] and all(t > 0 for t in rows.values())
    fixed, per_image = (float(v) for v in re.findall(r"(-?\d+) µs", lines[3]))
    # two points: the line through them
    assert per_image == pytest.approx((rows[3] - rows[1]) / 2, abs=1)
    assert fixed == pytest.approx(rows[1] - (rows[3] - rows[1]) / 2, abs=1)


def test_bench_runs_a_chosen_fast_recipe_and_writes_its_figures(tmp_path, monkeypatch, capsys):
    """`bench.py --fast-recipe` (how gpu_check.sh measures airbench94_muon), end to end on a
    recipe that needs no data: each repeat a fresh `blitz run` with its own seed, medians in JSON."""
    import bench

    monkeypatch.setattr(sys, "argv", [
        "bench.py", "--data-root", str(tmp_path), "--only", "blitz-fast", "--fast-recipe", "randomdemo",
        "--fast-repeat", "2", "--fast-args=--strategy cpu", "--out", str(tmp_path / "results"), "--first-seed", "5",
    ])
    bench.main()
    (written,) = (tmp_path / "results").glob("bench-*.json")
    assert json.loads(written.read_text())["machine"]["fast_first_seed"] == 5  # seeds 5 and 6, after an earlier 0-4
    fast = json.loads(written.read_text())["blitz-fast"]
    assert fast["name"] == "blitz randomdemo" and fast["runs"] == 2 and fast["images_per_s"] > 0
    assert len(fast["all_accuracies"]) == 2 and all(0 <= a <= 1 for a in fast["all_accuracies"])
    assert len(fast["all_timelines"]) == 2 and [len(e) for e in fast["all_epoch_seconds"]] == [fast["epochs"]] * 2
    seconds, lines = zip(*fast["all_timelines"][1])  # each output line with when it came
    assert list(seconds) == sorted(seconds) and 0 < seconds[-1] <= fast["all_wall_seconds"][1]
    assert any(line.startswith("Model: ") for line in lines) and lines[-1].startswith("Run saved in")

    assert "blitz randomdemo: mean accuracy" in (out := capsys.readouterr().out) and "(seeds 5-6)" in out

    import summarize  # the table for docs/benchmarks.md, from that JSON

    summarize.main([str(tmp_path / "results")])
    header, rule, row = capsys.readouterr().out.splitlines()[1:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["results", "2", f"{100 * sum(fast['all_accuracies']) / 2:.2f} %"]
    assert cells[6] == "–"  # no warm-up on a CPU without --compile
    assert float(cells[8]) < max(fast["all_wall_seconds"])  # when epoch 1 ended
    assert cells[11] == "0/2"  # runs that captured CUDA graphs
    (tmp_path / "failed").mkdir()  # a part whose every run failed: its JSON has no blitz-fast entry
    (tmp_path / "failed" / "bench-1.json").write_text('{"machine": {}}')
    with pytest.raises(SystemExit) as exit_info:
        summarize.main([str(tmp_path / "results"), str(tmp_path / "failed")])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and "| results | 2 |" in out  # the other parts' table stays
    assert "failed: no blitz-fast runs in it" in err


def test_bench_fails_when_an_entry_gives_no_result(tmp_path, monkeypatch):
    import bench

    monkeypatch.setattr(sys, "argv", [
        "bench.py", "--data-root", str(tmp_path), "--only", "blitz-fast", "--fast-recipe", "nosuch",
        "--out", str(tmp_path / "results"),
    ])
    with pytest.raises(SystemExit, match="no result from: blitz-fast"):
        bench.main()


def test_bench_takes_its_entries_in_rounds_and_pairs_them_by_round(capsys):
    """A busy spell of the shared machine falls on every entry of a round, not on one entry's
    back-to-back repeats; ratios pair the runs of one round, and a failed run leaves a gap."""
    import bench

    order: list[tuple[str, int]] = []
    speed = {("loop", 0): 100.0, ("loop", 1): 50.0, ("loop", 2): 80.0, ("blitz", 0): 500.0, ("blitz", 1): 260.0,
             ("fast", 0): 900.0}

    def run_one(key: str, i: int) -> dict:
        order.append((key, i))
        if (key, i) == ("blitz", 2):
            raise RuntimeError("blitz tutorial failed (exit 1)")
        return {"images_per_s": speed[key, i], "test_accuracy": 0.5, "timed_seconds": None, "wall_seconds": 1.0}

    runs: dict = {}
    done: list[int] = []
    bench.interleaved_runs({"loop": 3, "blitz": 3, "fast": 1}, run_one, runs, after_each=lambda: done.append(1))
    assert len(done) == 6  # after each run that worked: the bench rewrites its file then
    assert order == [("loop", 0), ("blitz", 0), ("fast", 0), ("loop", 1), ("blitz", 1), ("loop", 2), ("blitz", 2)]
    assert sorted(runs["blitz"]) == [0, 1] and sorted(runs["loop"]) == [0, 1, 2] and list(runs["fast"]) == [0]
    assert bench.paired_ratios(runs, "blitz", "loop", "images_per_s") == [5.0, 5.2]  # round 2 has no pair
    assert bench.paired_ratios(runs, "blitz", "nosuch", "images_per_s") == []
    assert "blitz tutorial failed (exit 1)" in capsys.readouterr().out


def test_the_strategy_matrix_runs_cells_at_once_and_keeps_their_order():
    import threading

    barrier = threading.Barrier(3, timeout=10)  # only passes if three cells run at the same time

    def measure(cell):
        barrier.wait()
        return {"cell": cell}

    assert measure_all(["a", "b", "c"], measure, jobs=3) == [{"cell": "a"}, {"cell": "b"}, {"cell": "c"}]
    seen = []
    assert measure_all([1, 2], lambda cell: seen.append(threading.get_ident()) or {"cell": cell}, jobs=1) == [
        {"cell": 1}, {"cell": 2}]
    assert len(set(seen)) == 1  # one at a time by default


def test_ctrl_c_drops_the_cells_not_started_and_stops_the_runs_in_flight():
    import os
    import signal

    codes = {}

    def measure(cell):
        if cell == "slow":
            codes[cell] = run_bounded([sys.executable, "-c", "import time; time.sleep(120)"], timeout=300)[0]
        elif cell == "ctrl-c":
            deadline = time.monotonic() + 30
            while not RUNNING and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Python raises it in the main thread
            time.sleep(2)  # this worker is still busy when the main thread reacts
        else:
            codes[cell] = 0
        return {"cell": cell}

    with pytest.raises(KeyboardInterrupt):
        measure_all(["slow", "ctrl-c", "never"], measure, jobs=2)
    assert codes == {"slow": -15}  # stopped by SIGTERM, not after its two minutes; "never" not run
    assert not RUNNING


def test_the_airbench_parts_benchmark_reports_both_figures(cifar_root, monkeypatch, capsys):
    import airbench_parts

    monkeypatch.setattr(sys, "argv", ["airbench_parts.py", "--data-root", str(cifar_root), "--images", "40",
                                      "--batch-size", "20", "--rounds", "2"])
    airbench_parts.main()
    bf16, fp32, step = capsys.readouterr().out.splitlines()
    assert bf16.startswith("whitening error, bf16 autocast: ") and len(bf16.split(": ")[1].split()) == 13  # 12 and "%"
    assert fp32.startswith("whitening error, bf16 autocast + whiten_in_fp32: ")
    assert step.startswith("step (batch 20, fp32, cpu): whitening bias training ") and "frozen" in step


def test_a_bench_stopped_by_its_time_limit_keeps_the_runs_it_finished(tmp_path):
    """gpu_check.sh runs each part under `timeout`: its SIGTERM must not lose the part's runs."""
    import signal
    import subprocess
    import time

    out = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parents[1] / "bench" / "bench.py"), "--data-root", str(tmp_path),
         "--only", "blitz-fast", "--fast-recipe", "randomdemo", "--fast-repeat", "50", "--fast-args=--strategy cpu",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("bench-*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the file appears after the first run, and again after each
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 124
    (written,) = out.glob("bench-*.json")
    result = json.loads(written.read_text())
    assert result["partial"] and 1 <= result["blitz-fast"]["runs"] < 50
    assert not list(out.glob("*.partial"))
    import summarize

    assert summarize.summarize("muon", result)["part"] == "muon (stopped at its limit)"


@pytest.mark.parametrize("threads", ["auto", "1"])
def test_the_handwritten_loop_trains_with_the_recipes_thread_setting(cifar_root, monkeypatch, tmp_path, threads):
    import handwritten_loop

    out = tmp_path / "hand.json"
    monkeypatch.setattr(sys, "argv", ["handwritten_loop.py", "--data-root", str(cifar_root), "--epochs", "1",
                                      "--cpu-threads", threads, "--json", str(out)])
    before = handwritten_loop.torch.get_num_threads()
    try:
        handwritten_loop.main()
    finally:
        handwritten_loop.torch.set_num_threads(before)
    result = json.loads(out.read_text())
    assert result["name"] == "handwritten-loop" and result["images_per_s"] > 0 and 0 <= result["test_accuracy"] <= 1


def test_the_summary_counts_the_runs_that_captured_cuda_graphs():
    """--cuda-graphs only warns where its capture fails, and trains as usual: the table says so."""
    import summarize

    def run(warm_up: str) -> list[list[object]]:
        return [[9.0, f"Warm-up ({warm_up}, not timed): 1.4 s"], [11.0, "epoch 1/8  train loss 1.7"]]

    fast = {"runs": 2, "all_accuracies": [0.94, 0.94], "all_timelines": [
        run("cuDNN autotuning and capturing CUDA graphs"), run("cuDNN autotuning"),
    ]}
    assert summarize.summarize("muon-graphs", {"blitz-fast": fast})["graphs"] == "1/2"


def test_same_weights_compares_every_tensor_of_two_runs(tmp_path, capsys):
    """bench/same_weights.py, the verdict of gpu_check.sh's graphs-check part."""
    import same_weights
    from blitz.config import RunConfig
    from blitz.engine import Trainer

    def run(name: str, seed: int) -> str:
        Trainer(RunConfig(model="linear", dataset="random", strategy="cpu", epochs=1, batch_size=25,
                          dataset_args={"length": 50, "test_length": 10, "shape": [5]}, seed=seed,
                          out=tmp_path / name)).fit()
        return str(tmp_path / name)

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert same_weights.main([a, b]) == 0
    assert "same weights: all 2 tensors equal" in capsys.readouterr().out
    assert same_weights.main([a, c]) == 1
    assert re.search(r"^2 of 2 tensors differ; the most: fc\.(weight|bias) by \S+$", capsys.readouterr().out.strip())
    assert same_weights.main([a]) == 2


def test_profile_run_lists_imports_and_functions_and_keeps_both_runs_apart(tmp_path, monkeypatch, capsys):
    """bench/profile_run.py runs blind on a lent GPU (gpu_check.sh's profile part): it must work."""
    import profile_run

    from blitz import cli

    monkeypatch.setattr(cli, "_exit_now", cli._exit_now)  # profile() replaces it: put it back after
    argv = ["run", "--dataset", "random", "--dataset-arg", "length=40", "--dataset-arg", "test_length=20",
            "--epochs", "1", "--batch-size", "10", "--out", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", ["profile_run.py", "--top", "6", "--", *argv])
    profile_run.main()
    out = capsys.readouterr().out
    imports = out.split("== the 6 slowest imports of: blitz run")[1].split("==")[1].strip().splitlines()[:6]
    assert len(imports) == 6 and all(re.match(r"^\s*\d+\.\d{3}\s+\d+\.\d{3}  \S+", line) for line in imports)
    assert "== cProfile by cumulative (wall" in out and "== cProfile by tottime (wall" in out
    assert "cli.py" in out.split("== cProfile by cumulative")[1]  # blitz's own functions, named
    assert (tmp_path / "run-imports" / "summary.json").is_file() and (tmp_path / "run-profile" / "summary.json").is_file()
    monkeypatch.setattr(sys, "argv", ["profile_run.py", "--top", "3", "--", "run", "--dataset", "nosuch"])
    with pytest.raises(SystemExit) as info:  # a failed command: said, and the script fails
        profile_run.main()
    assert info.value.code == 2 and "(the command exited 2: the imports are those of a failed run)" in capsys.readouterr().out
