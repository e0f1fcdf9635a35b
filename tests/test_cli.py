"""The CLI end to end on small data: runs, listings, unknown names and exit codes."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from blitz.checkpoint import load_checkpoint
from blitz.cli import app

runner = CliRunner()


def blitz(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_tutorial_recipe_on_a_cifar_fixture_prints_the_per_class_table(cifar_root, tmp_path):
    out = tmp_path / "run"
    result = blitz("run", "--recipe", "tutorial", "--data-root", cifar_root, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Accuracy of the network on the 40 test images" in result.output
    lines = re.findall(r"^Accuracy of (\w+)\s*: +(\d+) %$", result.output, re.M)
    assert [name for name, _ in lines] == ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert "epoch 1/1" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 1


def test_run_learns_the_fixture(cifar_root, tmp_path):
    out = tmp_path / "run"
    result = blitz(
        "run", "--model", "lenet", "--dataset", "cifar10", "--data-root", cifar_root, "--epochs", "15",
        "--batch-size", "10", "--optimizer", "adam", "--lr", "0.003", "--strategy", "cpu", "--out", out,
    )
    assert result.exit_code == 0, result.output
    best = json.loads((out / "summary.json").read_text())["best_accuracy"]
    assert best > 0.5  # classes differ by colour: chance is 0.1


def test_timm_resnet18_trains_on_random_data(tmp_path):
    result = blitz(
        "run", "--model", "timm/resnet18", "--dataset", "random", "--epochs", "1", "--batch-size", "50",
        "--dataset-arg", "length=100", "--dataset-arg", "test_length=20", "--out", tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    assert "Accuracy of the network on the 20 test images" in result.output


def test_catalog_short_name_with_defaults(tmp_path):
    # vit_tiny is timm's vit_tiny_patch16_224 with registry.toml's patch_size=4, and the timm
    # plugin sizes it for the data: built as it is, timm would refuse 32x32 images.
    result = blitz(
        "run", "--model", "vit_tiny", "--dataset", "random", "--dataset-arg", "length=8",
        "--dataset-arg", "test_length=4", "--epochs", "1", "--out", tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta
    assert meta["model_component"] == "timm/vit_tiny_patch16_224"
    assert meta["model_args"] == {"patch_size": 4}


def test_fixed_size_timm_models_are_sized_for_the_data(tmp_path):
    """A ViT is built for 224x224 images: blitz sizes it for the data's (here 3x48x40), and an
    img_size that does not match the data is refused naming the option, not with timm's assertion."""
    data = ["--dataset", "random", "--dataset-arg", "length=4", "--dataset-arg", "test_length=2",
            "--dataset-arg", "shape=[3, 48, 40]", "--epochs", "1", "--strategy", "cpu"]
    result = blitz("run", "--model", "vit_tiny", *data, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result = blitz("run", "--model", "vit_tiny", "--model-arg", "img_size=32", *data, "--out", tmp_path / "bad")
    assert result.exit_code == 2
    assert ("timm/vit_tiny_patch16_224: --model-arg img_size=32 does not match the data's 48x40 images; "
            "leave img_size out") in " ".join(result.output.split())
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_randomdemo_recipe_runs_the_linear_model(tmp_path):
    result = blitz("run", "--recipe", "randomdemo", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "on the 100 test images" in result.output


def test_print_config_shows_values_and_sources(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epochs = 7\n")
    result = blitz("run", "--recipe", "tutorial", "--config", config, "--lr", "0.02", "--print-config")
    assert result.exit_code == 0, result.output
    rows = {m[0]: m[1:] for m in re.findall(r"│ (\S+)\s+│ (\S+)\s+│ (.+?)\s+│", result.output)}
    assert rows["lr"] == ("0.02", "command line")
    assert rows["epochs"][0] == "7" and rows["epochs"][1].startswith("config")
    assert rows["batch_size"] == ("4", "recipe tutorial")
    assert rows["eval_batch_size"][1] == "default"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "resnt18"], "Unknown model 'resnt18'. Did you mean 'resnet18'? See 'blitz list models'."),
        (["--model", "resnet"], "Unknown model 'resnet'. Did you mean one of 'resnet18', 'resnet50'? See 'blitz list models'."),
        (["--dataset", "cifar11"], "Unknown dataset 'cifar11'. Did you mean 'cifar10'?"),
        (["--optimizer", "adamw2"], "Unknown optimizer 'adamw2'. Did you mean 'adamw'?"),
        (["--strategy", "dpp"], "Unknown strategy 'dpp'."),
        (["--schedule", "cosin"], "Unknown schedule 'cosin'. Did you mean 'cosine'?"),
        (["--model", "timm/resnet1800"], "Unknown model 'timm/resnet1800'."),
        (["--model", "vit_small_patch16_224"], "Unknown model 'vit_small_patch16_224'. Did you mean 'timm/vit_small_patch16_224'?"),
        (["--logger", "wandb"], "Unknown logger 'wandb'."),
    ],
)
def test_unknown_names_exit_2_with_a_suggestion(args, expected):
    result = blitz("run", *args)
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_bad_flag_value_exits_2_without_traceback():
    result = blitz("run", "--lr", "-1")
    assert result.exit_code == 2
    assert "Invalid value for 'lr' (from command line)" in result.output
    assert "Traceback" not in result.output


def test_missing_data_says_where_it_looked(tmp_path):
    result = blitz("run", "--recipe", "tutorial", "--data-root", tmp_path / "nowhere")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "CIFAR-10 not found" in text and "nowhere" in text and "--download" in text


def test_dataparallel_without_gpu_is_a_clear_error(cifar_root):
    result = blitz("run", "--strategy", "dataparallel", "--data-root", cifar_root, "--epochs", "1")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "dataparallel needs at least one CUDA GPU" in text and "--strategy cpu" in text


def test_cuda_without_gpu_is_a_clear_error(cifar_root):
    result = blitz("run", "--strategy", "cuda", "--data-root", cifar_root, "--epochs", "1")
    assert result.exit_code == 2
    assert "No CUDA GPU" in result.output


def test_model_that_does_not_fit_the_data_fails_before_training(tmp_path):
    result = blitz(
        "run", "--model", "lenet", "--dataset", "random", "--dataset-arg", "shape=[1, 12, 12]",
        "--out", tmp_path / "run",
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Model 'lenet' does not fit dataset 'random'" in text and "(1, 12, 12)" in text
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_model_argument_is_named(tmp_path):
    result = blitz("run", "--model", "lenet", "--dataset", "random", "--model-arg", "depth=3")
    assert result.exit_code == 2
    assert "takes no argument 'depth'" in result.output and "width" in result.output


def test_bad_assignment_syntax():
    result = blitz("run", "--model-arg", "novalue")
    assert result.exit_code == 2
    assert "--model-arg expects KEY=VALUE" in result.output


@pytest.mark.parametrize("kind", ["models", "datasets", "optimizers", "schedules", "strategies", "loggers", "recipes"])
def test_list_each_kind(kind):
    result = blitz("list", kind, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and all(r["description"] for r in rows)


def test_list_models_glob_filter():
    rows = json.loads(blitz("list", "models", "res*", "--json").output)
    names = {r["name"] for r in rows}
    assert {"resnet18", "resnet50"} <= names and "lenet" not in names
    assert blitz("list-models", "lenet").exit_code == 0


def test_list_plugins_json_lists_builtins():
    result = blitz("list-plugins", "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["lenet"]["distribution"] == "blitz-train" and plugins["lenet"]["registers"] == {"models": ["lenet"]}
    assert plugins["strategy_ddp"]["registers"] == {"strategies": ["ddp"]}
    assert all(not p["errors"] for p in plugins.values()), [p for p in plugins.values() if p["errors"]]


def test_version():
    result = blitz("--version")
    assert result.exit_code == 0 and result.output.split() == ["blitz", importlib.metadata.version("blitz-train")]


def test_runs_and_show(tmp_path, isolated_runs):
    assert "No runs yet" in blitz("runs").output
    blitz("run", "--recipe", "randomdemo")
    result = blitz("runs", "--json")
    rows = json.loads(result.output)
    assert len(rows) == 1 and rows[0]["model"] == "linear" and rows[0]["status"] == "finished"
    shown = blitz("show", rows[0]["run"])
    assert shown.exit_code == 0 and 'model = "linear"' in shown.output
    assert re.search(r"best_accuracy: \d+\.\d\d %", shown.output) and "More in " in shown.output and "report.md" in shown.output
    missing = blitz("show", "nope")
    assert missing.exit_code == 2 and "No run at 'nope'" in missing.output
    blitz("run", "--model", "linear", "--dataset", "random", "--epochs", "1")  # no recipe
    (plain,) = [r for r in json.loads(blitz("runs", "--json").output) if r["run"] != rows[0]["run"]]
    shown = blitz("show", plain["run"]).output
    assert "recipe: None" not in shown and "model: linear" in shown
    assert "  ran on: " in shown and "auto picked" in shown  # where it trained, from its manifest.json
    (isolated_runs / plain["run"] / "manifest.json").write_text("{")  # damaged: the rest is shown
    shown = blitz("show", plain["run"])
    assert shown.exit_code == 0 and "ran on" not in shown.output and "model: linear" in shown.output
    long_name = "20261127-214307-timm_mobilenetv3_small_050-random-a-long-name"
    blitz("run", "--model", "linear", "--dataset", "random", "--epochs", "1", "--limit-steps", "2",
          "--out", isolated_runs / long_name)
    # an 80-column terminal (or a pipe): names whole, figures and status not cut to "fin…"
    from blitz.cli import console

    width = console.width
    for columns in (80, 200, len(long_name) + 2 * 5 + len("epochs") + len("10.00 %") + len("99 s") + len("finished")
                    + len("linear / random") - 1):  # one column short of the table: the two-line form
        console.width = columns
        try:
            table = blitz("runs").output
        finally:
            console.width = width
        assert max(len(line) for line in table.splitlines()) <= columns
        assert plain["run"] in table and long_name in table and table.count("finished") == 3 and "…" not in table
        assert table.count("linear / random") == 3
        assert "1/1*" in table and "* epochs cut short by --limit-steps" in table  # not a full training
    assert "- epochs: 1 of 1 (each cut to 2 steps by --limit-steps: not a full training)" in (
        isolated_runs / long_name / "report.md").read_text()
    assert json.loads((isolated_runs / long_name / "summary.json").read_text())["limit_steps"] == 2


def test_the_manifest_says_the_device_used_apart_from_torchs_cuda_build(tmp_path, isolated_runs):
    out = tmp_path / "run"
    assert blitz("run", "--recipe", "randomdemo", "--epochs", "1", "--strategy", "cpu", "--out", out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"] == "cpu" and manifest["device_type"] == "cpu"  # the device trained on
    assert manifest["torch_built_for_cuda"] == torch.version.cuda and "cuda" not in manifest  # the build's, used or not
    assert f"  ran on: cpu; torch {torch.__version__}, Python " in blitz("show", out).output
    # a run from before: its manifest says "cuda" and no device_type; show, runs and --resume take it
    old = {k: v for k, v in manifest.items() if k not in ("torch_built_for_cuda", "device_type")} | {"cuda": "12.4"}
    (out / "manifest.json").write_text(json.dumps(old))
    shown = blitz("show", out)
    assert shown.exit_code == 0 and f"  ran on: cpu; torch {torch.__version__}" in shown.output
    listed = blitz("runs", "--root", tmp_path, "--json")
    assert listed.exit_code == 0 and [r["run"] for r in json.loads(listed.output)] == ["run"]
    assert blitz("run", "--resume", out, "--epochs", "2").exit_code == 0
    resumed = json.loads((out / "manifest.json").read_text())  # written anew, in the new words
    assert resumed["device_type"] == "cpu" and "cuda" not in resumed and resumed["started"] == manifest["started"]


def test_data_verify(cifar_root, tmp_path):
    ok = blitz("data", "verify", "cifar10", "--data-root", cifar_root)
    assert ok.exit_code == 0 and "100 train and 40 test" in ok.output
    bad = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:500])  # truncated
    broken = blitz("data", "verify", "cifar10", "--data-root", cifar_root)
    assert broken.exit_code == 1
    assert "data_batch_3" in broken.output


def test_compile_trains_and_evaluates_then_lets_the_compile_workers_go(tmp_path, monkeypatch):
    import threading

    import torch._inductor.async_compile as async_compile

    released = threading.Event()
    monkeypatch.setattr(async_compile, "shutdown_compile_workers", released.set)
    out = tmp_path / "run"
    result = blitz("run", "--recipe", "randomdemo", "--compile", "--epochs", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["epochs_done"] == 2
    assert released.wait(30)  # after the warm-up, in a thread of its own
    released.clear()
    assert blitz("run", "--recipe", "randomdemo", "--epochs", "1", "--out", tmp_path / "plain").exit_code == 0
    assert not released.is_set()  # nothing compiled, nothing to release


def test_bad_compile_mode_is_named():
    result = blitz("run", "--compile", "--compile-mode", "turbo")
    assert result.exit_code == 2 and "'compile_mode'" in result.output


def test_a_runs_saved_config_reruns_the_same_training(tmp_path):
    first = tmp_path / "first"
    assert blitz("run", "--recipe", "randomdemo", "--epochs", "2", "--deterministic", "--out", first).exit_code == 0
    again = blitz("run", "--config", first / "config.toml", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first, tmp_path / "again"))
    assert (a["last_accuracy"], a["epochs_done"], a["recipe"]) == (b["last_accuracy"], b["epochs_done"], "randomdemo")
    weights = [load_checkpoint(d / "checkpoints" / "last.ckpt").model for d in (first, tmp_path / "again")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the same training, exactly


@pytest.mark.parametrize("flags, field", [(["--flip-mode", "sideways"], "'augment.flip_mode'"),
                                          (["--checkpoint-every", "-1"], "'checkpoint_every'")])
def test_bad_flip_mode_and_checkpoint_interval_are_named(flags, field):
    result = blitz("run", *flags)
    assert result.exit_code == 2 and field in result.output


def test_list_shows_the_catalogs_description_for_a_plugins_own_name():
    rows = {r["name"]: r for r in json.loads(blitz("list", "models", "--json").output)}
    assert rows["lenet"]["description"].startswith("The tutorial's LeNet: conv 3-6-16 5x5")  # registry.toml's text
    assert rows["lenet"]["plugin"] == "lenet"


def test_runs_are_found_by_the_start_of_their_name_or_as_latest(tmp_path, monkeypatch):
    import os
    import shutil

    from blitz.errors import UsageError
    from blitz.runs import find_run

    root = tmp_path / "runs"
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(root))
    for age, name in enumerate(("alpha-1", "alpha-2", "beta")):
        (root / name).mkdir(parents=True)
        (root / name / "config.toml").write_text("")
        os.utime(root / name / "config.toml", (1_000_000 - age, 1_000_000 - age))  # alpha-1 newest
    assert find_run("beta") == find_run("be") == root / "beta"
    assert find_run("latest") == root / "alpha-1"
    with pytest.raises(UsageError, match=r"'alpha' starts 2 run names \(alpha-1, alpha-2\); give more of the name"):
        find_run("alpha")
    with pytest.raises(UsageError, match="No run at 'gamma'"):
        find_run("gamma")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_run("~/runs/beta") == root / "beta"
    shutil.rmtree(root / "alpha-1")
    shutil.rmtree(root / "alpha-2")
    for empty in ("", "  "):  # `blitz eval "$RUN"` with RUN unset took the only run there (or the folder one is in)
        with pytest.raises(UsageError, match="RUN was given an empty value; give a run"):
            find_run(empty)


def test_home_is_expanded_in_paths():
    from pathlib import Path

    from blitz.config import RunConfig

    config = RunConfig(data_root="~/data", out="~/runs/x")
    assert config.data_root == Path.home() / "data" and config.out == Path.home() / "runs" / "x"


def test_auto_with_a_cuda_device_and_no_gpu_is_refused(tmp_path):
    result = blitz("run", "--dataset", "random", "--device", "cuda", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--device cuda: no CUDA GPU is available here" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_the_command_line_starts_without_torch():
    from tests.fresh_process import printed_by

    assert printed_by("import sys, blitz.cli; print('torch' in sys.modules)") == "False"  # --help, runs and show start fast; Ctrl-C while torch loads is clean


def test_ctrl_c_before_training_is_one_line_and_exit_130(monkeypatch):
    from blitz import resolve

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(resolve, "resolve_config", interrupted)  # the run command imports it late
    result = blitz("run", "--dataset", "random")
    assert result.exit_code == 130
    assert "Interrupted by Ctrl-C. A run that had started keeps" in result.output and "Traceback" not in result.output


def test_ctrl_c_in_another_command_says_nothing_of_runs_checkpoints(monkeypatch):
    from blitz import runs

    def interrupted(root=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "list_runs", interrupted)
    result = blitz("runs")
    assert result.exit_code == 130 and result.output.strip() == "Interrupted by Ctrl-C."


def test_off_a_terminal_long_epochs_print_a_progress_line_now_and_then(monkeypatch):
    from io import StringIO

    from rich.console import Console

    from blitz import progress

    clock = iter([0.0, 10.0, 31.0, 40.0, 45.0, 50.0, 60.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = StringIO()
    bar = progress.EpochProgress(Console(file=out, width=200), enabled=True)  # a StringIO: no terminal
    bar.start(1, 2, 1000)  # t=0
    # at each tenth of the epoch (as the tutorial prints its running loss), and after 30 s without one
    for step, loss in ((50, 2.4), (60, 2.3), (70, 2.2), (100, 2.1), (150, 2.0), (1000, 1.9)):  # t=10 ... 60
        bar.update(step, loss, 1234.0)
    bar.stop()
    assert out.getvalue().splitlines() == [
        "epoch 1/2  step 60/1,000  loss 2.300  1,234 img/s",  # 31 s
        "epoch 1/2  step 100/1,000  loss 2.100  1,234 img/s",  # a tenth
    ]  # (the epoch's end has its own line)
    quiet = StringIO()
    other_rank = progress.EpochProgress(Console(file=quiet), enabled=False)
    clock = iter([0.0, 100.0])
    other_rank.start(1, 1, 10)
    other_rank.update(5, 1.0, 1.0)
    assert quiet.getvalue() == ""


def test_the_images_per_s_shown_is_smoothed_over_the_last_seconds(monkeypatch):
    from io import StringIO

    from rich.console import Console

    from blitz import progress

    # windows of 0.5 s whose rates swing 40x, as on a shared machine: a line at each (a tenth of 10 steps)
    clock = iter([0.5 * i for i in range(11)])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = StringIO()
    bar = progress.EpochProgress(Console(file=out, width=200), enabled=True)
    bar.start(1, 1, 10)
    for step in range(1, 10):
        bar.update(step, 1.0, 4000.0 if step % 2 else 100.0)
    shown = [float(line.split()[-2].replace(",", "")) for line in out.getvalue().splitlines()]
    assert shown[0] == 4000  # the epoch's first window: its own rate
    assert all(abs(now - before) < 0.2 * before for before, now in zip(shown, shown[1:])), shown  # not 4,000, 100, ...
    assert 2000 < shown[-1] < 3000  # on its way to 2,050, the mean of equally long windows


def test_smoothed_rate_weighs_windows_by_how_long_they_lasted():
    from blitz.progress import SmoothedRate

    rate = SmoothedRate(seconds=3.0)
    rate.start(0.0)
    assert rate.add(1000.0, 1.0) == 1000.0
    assert rate.add(1000.0, 2.0) == 1000.0  # a steady rate reads as it is
    assert rate.add(0.0, 2.01) > 990  # a short stall barely moves it
    assert rate.add(0.0, 11.01) < 60  # a stall of 3x the smoothing time shows
    rate.start(20.0)  # a new epoch starts afresh
    assert rate.add(500.0, 20.1) == 500.0


def test_the_epoch_line_gives_the_epochs_exact_images_per_s(tmp_path):
    from blitz.engine import Trainer
    from tests.test_engine import tiny_config

    lines: list[str] = []
    trainer = Trainer(tiny_config(tmp_path, epochs=1, log_every=1, dataset_args={"length": 100, "test_length": 8}))
    trainer.say = lines.append  # type: ignore[method-assign]
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r.get("event") == "epoch")
    assert epoch["images_per_s"] * epoch["seconds"] == pytest.approx(100)  # every image over the whole epoch
    assert any(line.startswith("epoch 1/1 ") and f"({epoch['images_per_s']:,.0f} img/s," in line for line in lines)


def test_list_takes_a_word_or_a_glob_and_lists_a_familys_own_names():
    names = lambda *args: [r["name"] for r in json.loads(blitz("list", "models", *args, "--json").output)]  # noqa: E731
    assert {"resnet18", "resnet50"} <= set(names("resnet")) and "lenet" not in names("resnet")
    assert names("ResNet") == names("resnet")  # a word: any case, anywhere in the name
    assert "timm/resnet18" in names("timm/*resnet18*") and "resnet18" not in names("timm/*resnet18*")
    assert names("TIMM/*RESNET18*") == names("timm/*resnet18*")
    result = blitz("list", "models", "zzz")
    assert result.exit_code == 0 and "No models match 'zzz'" in result.output


def test_emoji_codes_in_what_the_user_typed_are_kept_as_text():
    result = blitz("run", "--model", "net:x:", "--print-config")
    assert "Unknown model 'net:x:'" in result.output


def test_list_optimizers_shows_each_optimizers_own_hyperparameters():
    rows = {r["name"]: r for r in json.loads(blitz("list", "optimizers", "--json").output)}
    assert rows["muon"]["hyperparameters"] == {"lr": 0.02, "momentum": 0.95, "weight_decay": 0.0}
    assert rows["adamw"]["description"].endswith("(lr 0.001, momentum 0.9, weight_decay 0.01)")


@pytest.mark.parametrize(("status", "code", "stderr"), [("None", 0, ""), ("3", 3, ""), ("'boom'", 1, "boom\n")])
def test_the_process_ends_with_the_commands_status_and_skips_python_shutdown(status, code, stderr):
    import subprocess
    import sys

    script = ("import atexit, sys; from blitz.cli import _exit_now; atexit.register(print, 'atexit ran'); "
              f"print('last line', end=''); _exit_now(SystemExit({status}))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (code, "last line", stderr)


def test_a_run_through_the_console_entry_point_flushes_its_output_and_files(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    base = [sys.executable, "-m", "blitz", "run", "--model", "lenet", "--dataset", "random", "--dataset-arg", "length=40",
            "--dataset-arg", "test_length=8", "--batch-size", "8", "--strategy", "cpu", "--out", str(out)]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "test accuracy" in proc.stdout.lower()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["epochs_done"]) == ("finished", summary["epochs"])
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    bad = subprocess.run([*base[:-2], "--batch-size", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "batch" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_the_process_ends_its_daemonic_children_and_waits_for_the_others(tmp_path):
    import subprocess
    import sys
    import time

    done = tmp_path / "done"
    script = (
        "import multiprocessing, pathlib, time; from blitz.cli import _exit_now\n"
        "def finish(): time.sleep(1); pathlib.Path(%r).touch()\n"
        "if __name__ == '__main__':\n"
        "    child = multiprocessing.Process(target=time.sleep, args=(120,), daemon=True); child.start()\n"
        "    multiprocessing.Process(target=finish).start()\n"
        "    print(child.pid, flush=True); _exit_now(None)\n" % str(done)
    )
    (tmp_path / "script.py").write_text(script)
    with open(tmp_path / "out.txt", "w") as out:  # a file, not a pipe: run() returns when the parent exits
        proc = subprocess.run([sys.executable, str(tmp_path / "script.py")], stdout=out, timeout=60)
    assert proc.returncode == 0
    assert done.exists()  # the other child was waited for, as at a normal exit
    # A daemonic child (a DataLoader worker) left running would hold a caller's output pipe open.
    stat = Path(f"/proc/{int((tmp_path / 'out.txt').read_text())}/stat")
    for _ in range(100):  # gone, or a zombie waiting for whoever adopted it to reap it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the daemonic child is still running: {stat.read_text()}")


def test_list_plugins_works_both_ways():
    assert blitz("list", "plugins").output == blitz("list-plugins").output
    assert json.loads(blitz("list", "plugins", "--json").output) == json.loads(blitz("list-plugins", "--json").output)


def test_warnings_are_one_line_without_blitzs_source_lines(tmp_path):
    import subprocess
    import sys

    from tests.test_data_sources import with_a_broken_image

    with_a_broken_image(tmp_path / "imgs")
    done = subprocess.run(
        [sys.executable, "-m", "blitz", "data", "verify", "imagefolder", "--dataset-arg", f"path={tmp_path / 'imgs'}",
         "--dataset-arg", "skip_bad=true", "--dataset-arg", "image_size=8"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("Warning: Skipped 1 unreadable image(s); the first:")


def test_a_killed_run_is_shown_dead_not_running_and_show_hides_the_placeholder_accuracy(tmp_path, isolated_runs):
    from blitz.runs import lock_run, read_summary, write_summary

    out = tmp_path / "run"
    assert blitz("run", "--recipe", "randomdemo", "--epochs", "1", "--out", out).exit_code == 0
    write_summary(out, {**json.loads((out / "summary.json").read_text()), "status": "running", "best_accuracy": -1.0})
    held = lock_run(out)  # its process, alive
    try:
        assert read_summary(out)["status"] == "running"
    finally:
        held.close()
    assert read_summary(out)["status"] == "dead"  # as after kill -9: the file says running, nobody holds the lock
    assert "dead" in blitz("runs", "--root", tmp_path).output
    shown = blitz("show", out).output
    assert "status: dead" in shown and "best_accuracy" not in shown


def test_plugins_dir_after_the_command_says_where_it_goes(tmp_path):
    result = runner.invoke(app, ["run", "--plugins-dir", str(tmp_path), "--dataset", "random"])
    assert result.exit_code == 2
    assert "No such option: --plugins-dir. --plugins-dir goes before the command: 'blitz --plugins-dir ... run ...'." in " ".join(result.output.split())
    result = blitz("list", "models", "mlp", "--plugins-dir", "my_plugins")  # a subcommand's subcommand
    assert "goes before the command: 'blitz --plugins-dir ... list models ...'." in " ".join(result.output.split())


@pytest.mark.parametrize("command", [[], ["run"], ["list", "models"], ["data", "verify"], ["eval"], ["predict"], ["runs"]])
def test_help_takes_h_and_shows_no_value_type_after_flags(command):
    """typer 0.2x wrote `--flip --no-flip <bool>`, as if the flag took a value (`--flip true` fails)."""
    short, long = (runner.invoke(app, [*command, flag], env={"COLUMNS": "150"}) for flag in ("-h", "--help"))
    assert short.exit_code == long.exit_code == 0 and short.output == long.output
    assert "<bool>" not in long.output and "Show this message and exit." in long.output
    if command != ["run"]:  # Python's types are no help: <str>, <list[Path]>, <path> were shown
        assert not re.search(r"<(str|path|list\[|int range)", long.output), long.output
    if command == ["run"]:
        assert re.search(r"--epochs\s+<int>", long.output)  # options that take a value keep their type
        panels = ["Setup and output", "Model and data", "Training", "Hardware and speed", "Augmentation",
                  "Several processes (--strategy ddp)"]  # ~55 options, grouped as a user looks for them
        assert all(f"─ {panel} ─" in long.output for panel in panels)
        assert re.search(r"--model-arg\s+KEY=VALUE", long.output) and "list[str]" not in long.output


def test_list_shows_what_a_component_takes():
    """A plugin's options were found only by mistyping one: `blitz list KIND NAME` says them."""
    rows = json.loads(blitz("list", "schedules", "cosine", "--json").output)
    assert rows[0]["options"] == {"warmup": {"type": "float", "default": 0.0}, "final": {"type": "float", "default": 0.0}}
    table = blitz("list", "schedules", "cosine").output
    assert "cosine takes: warmup (float, default 0.0), final (float, default 0.0)" in " ".join(table.split())
    lenet = json.loads(blitz("list", "models", "lenet", "--json").output)[0]["options"]
    assert "num_classes" not in lenet and "input_shape" not in lenet  # blitz passes those, not the user
    assert lenet["width"]["type"] == "int"
    sgd = next(r for r in json.loads(blitz("list", "optimizers", "sgd", "--json").output) if r["name"] == "sgd")["options"]
    assert "model" not in sgd and "lr" not in sgd and sgd["nesterov"] == {"type": "bool", "default": False}
    vit = json.loads(blitz("list", "models", "vit_tiny", "--json").output)[0]["options"]  # a catalog name
    assert vit["patch_size"] == {"default": 4} and "**" in vit  # its entry's defaults, passed on to timm
    airbench = json.loads(blitz("list", "models", "airbench", "--json").output)[0]["options"]
    assert airbench["widths"]["default_text"].startswith("(")  # a tuple: shown as Python writes it


def test_factory_options_of_classes_positional_parameters_and_odd_defaults():
    from functools import partial

    from blitz.build import factory_options

    class Net:
        def __init__(self, num_classes, input_shape, width: int = 16) -> None:  # positional-or-keyword
            pass

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    def build(*, num_classes, input_shape, odd=Unprintable(), depth: int = 2):
        pass

    assert factory_options(Net, "Model") == {"width": {"type": "int", "default": 16}}
    assert factory_options(build, "Model")["odd"] == {"default_text": "<Unprintable>"}
    assert factory_options(partial(build, depth=3), "Model")["depth"]["default"] == 3


def test_runs_says_why_a_run_has_no_figures(tmp_path):
    """A run folder whose summary.json is missing or damaged: named, not a row of '?'."""
    for name, summary in (("never-started", None), ("damaged", "{not json"), ("a-list", "[1, 2]"),
                          ("a-bad-byte", '{"status": "fin\xffished"}'), ("nested", "[" * 100_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text('model = "lenet"\n')
        if summary is not None:
            (tmp_path / name / "summary.json").write_bytes(summary.encode("latin-1"))
    rows = {r["run"]: r for r in json.loads(blitz("runs", "--root", str(tmp_path), "--json").output)}
    assert rows["never-started"]["status"] == "no summary"
    assert {rows[name]["status"] for name in ("damaged", "a-list", "a-bad-byte", "nested")} == {"unreadable summary"}
    (tmp_path / "a-bad-byte" / "manifest.json").write_bytes(b"\xff\xfe{}")  # a damaged byte was a traceback
    shown = blitz("show", str(tmp_path / "a-bad-byte"))
    assert shown.exit_code == 0 and "unreadable summary" in shown.output, shown.output


def test_runs_and_show_list_a_summary_with_odd_values(tmp_path):
    """A summary edited by hand (null seconds, a text accuracy) stopped `blitz runs` for every run."""
    for name, summary in (("null-seconds", '{"status": "finished", "seconds": null}'), ("text", '{"best_accuracy": "x"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text('model = "lenet"\n')
        (tmp_path / name / "summary.json").write_text(summary)
        (tmp_path / name / "metrics.jsonl").write_text('{"event": "epoch", "epoch": 1, "train_loss": null}\n')
    listed = blitz("runs", "--root", str(tmp_path))
    assert listed.exit_code == 0 and "null-seconds" in listed.output and "text" in listed.output, listed.output
    shown = blitz("show", str(tmp_path / "text"))
    assert shown.exit_code == 0 and "epochs" in shown.output, shown.output


def test_show_lists_a_run_with_a_damaged_byte_or_odd_epoch(tmp_path):
    """A damaged byte in config.toml, or an epoch record whose epoch is a list: shown, not a traceback."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_bytes(b'model = "len\xffet"\n')
    (run / "metrics.jsonl").write_text('{"event": "epoch", "epoch": [1], "train_loss": 2.0}\n')
    shown = blitz("show", str(run))
    assert shown.exit_code == 0 and "len\ufffdet" in shown.output and "2.000" in shown.output, shown.output


def test_logger_options_from_the_command_line_and_their_mistakes(tmp_path):
    from blitz.cli import parse_logger_options
    from blitz.errors import ConfigError

    assert parse_logger_options(["tensorboard.flush_secs=10", "my.logger.project=cifar"]) == {
        "tensorboard": {"flush_secs": 10}, "my.logger": {"project": "cifar"}}  # a name may hold dots
    with pytest.raises(ConfigError, match=r"--logger-arg expects LOGGER.KEY=VALUE \(tensorboard.flush_secs=10\), got 'flush=1'"):
        parse_logger_options(["flush=1"])
    unused = blitz("run", "--dataset", "random", "--epochs", "1", "--logger-arg", "tensorboard.flush_secs=10",
                   "--out", str(tmp_path / "run"))
    assert unused.exit_code == 2
    assert ("logger_args gives options to 'tensorboard', which is not among this run's loggers (jsonl): add it with "
            "--logger tensorboard, or drop its options") in " ".join(unused.output.split())


def test_logger_options_merge_per_option_and_follow_the_loggers_list(tmp_path):
    """A file's [logger_args.x] and a --logger-arg x.key add up; a new --logger list (a resume's,
    or over a recipe's) drops the options of loggers it leaves out instead of refusing the run."""
    from blitz.cli import parse_logger_options
    from blitz.errors import ConfigError

    config = tmp_path / "c.toml"
    config.write_text('loggers = ["jsonl", "tensorboard"]\n[logger_args.tensorboard]\nflush_secs = 30\n')
    from blitz.resolve import CLIOverrides, resolve_config

    merged = resolve_config(config_file=config, overrides=CLIOverrides(
        values={"dataset": "random"}, logger_args={"tensorboard": {"max_queue": 5}})).config
    assert merged.logger_args == {"tensorboard": {"flush_secs": 30, "max_queue": 5}}
    run = tmp_path / "run"
    first = blitz("run", "--config", str(config), "--dataset", "random", "--epochs", "1", "--out", str(run))
    assert first.exit_code == 0, first.output
    resumed = blitz("run", "--resume", str(run), "--epochs", "2", "--logger", "jsonl")
    assert resumed.exit_code == 0, resumed.output
    misspelt = blitz("run", "--config", str(config), "--dataset", "random", "--logger-arg", "tensorbord.flush_secs=3")
    assert misspelt.exit_code == 2 and "logger_args gives options to 'tensorbord', which is not among this run's " \
        "loggers (jsonl, tensorboard): did you mean 'tensorboard'?" in " ".join(misspelt.output.split())
    with pytest.raises(ConfigError, match=r"^--logger-arg tb\.k is given twice; give it once\.$"):
        parse_logger_options([" tb . k = 1", "tb.k=2"])


def test_blitz_words_typer_errors_and_help_its_way_and_leaves_typer_as_found():
    """blitz swaps typer's error and type rendering only while its own commands run: another
    typer app in the same process (a user's script importing blitz) keeps typer's."""
    import typer
    import typer.core
    from typer import rich_utils

    before = (rich_utils.rich_format_error, typer.core.TyperOption.__dict__.get("display_type_rich"),
              typer.core.TyperArgument.__dict__.get("display_type_rich"))
    refused = blitz("runs", "--bogus")
    assert refused.exit_code == 2
    assert refused.output.strip() == "Error: No such option: --bogus. See 'blitz runs --help'."
    assert "--no-flip  " in blitz("run", "--help").output and "<bool>" not in blitz("run", "--help").output
    assert (rich_utils.rich_format_error, typer.core.TyperOption.__dict__.get("display_type_rich"),
            typer.core.TyperArgument.__dict__.get("display_type_rich")) == before

    other = typer.Typer()

    @other.command()
    def hello(loud: bool = False, times: int = 1) -> None:
        """Say hello."""

    theirs = runner.invoke(other, ["--bogus"])
    assert theirs.exit_code == 2 and "Usage:" in theirs.output and "Error: No such option" not in theirs.output
    assert "<bool>" in runner.invoke(other, ["--help"], terminal_width=120).output  # typer's own flag rendering


def test_eval_needs_only_the_test_files_and_lists_splits_as_no_option(cifar_root, tmp_path):
    """`blitz eval` asks the data source for the test split alone: CIFAR-10's training files
    are neither read nor needed (they were, ~0.3 s and 150 MB for the real ones)."""
    out = tmp_path / "run"
    trained = blitz("run", "--model", "lenet", "--data-root", cifar_root, "--epochs", "1", "--strategy", "cpu", "--out", out)
    assert trained.exit_code == 0, trained.output
    for batch in (cifar_root / "cifar-10-batches-py").glob("data_batch_*"):
        batch.unlink()
    evaluated = blitz("eval", out, "--strategy", "cpu", "--data-root", cifar_root)
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = json.loads((out / "results.json").read_text())["accuracy"]
    assert json.loads((out / "eval-cifar10-best.json").read_text())["accuracy"] == accuracy
    listed = blitz("list", "datasets", "--json")
    assert listed.exit_code == 0 and "splits" not in json.dumps(json.loads(listed.output))
