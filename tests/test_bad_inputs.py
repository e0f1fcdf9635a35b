"""Bad inputs found by a review: each is refused in one line with exit 2, and nothing is lost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blitz.cli import app
from blitz.runs import read_metrics

runner = CliRunner()
TINY = ("--dataset", "random", "--strategy", "cpu", "--epochs", "1", "--limit-steps", "2", "--log-every", "1")


def blitz(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    return " ".join(result.output.split())


def test_out_never_writes_into_a_folder_of_the_users_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md").write_text("my notes")
    result = blitz("run", *TINY, "--out", folder)
    assert result.exit_code == 2, result.output
    assert f"--out '{folder}' is a folder that is not empty and holds no blitz run" in one_line(result)
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"]
    assert (folder / "report.md").read_text() == "my notes"


def test_out_that_is_a_file_is_refused_and_an_empty_folder_is_used(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = blitz("run", *TINY, "--out", afile)
    assert result.exit_code == 2 and "is a file, not a folder" in one_line(result)
    assert afile.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert blitz("run", *TINY, "--out", empty).exit_code == 0
    assert (empty / "config.toml").is_file()


def test_resume_with_fewer_epochs_than_done_keeps_the_runs_record(tmp_path):
    run = tmp_path / "run"
    assert blitz("run", "--dataset", "random", "--strategy", "cpu", "--epochs", "2", "--limit-steps", "2",
                 "--out", run).exit_code == 0
    before = {name: (run / name).read_bytes() for name in ("config.toml", "summary.json")}
    result = blitz("run", "--resume", run, "--epochs", "1")
    assert result.exit_code == 2, result.output
    # the advice leads somewhere: --epochs 2 would be "nothing to resume" for this finished run
    assert "--epochs 1 would end this run before where it is (2 epoch(s) done); resume with --epochs 3 or more." in one_line(result)
    assert {name: (run / name).read_bytes() for name in before} == before
    assert blitz("run", "--resume", run, "--epochs", "3").exit_code == 0


@pytest.mark.parametrize("value", ["x", "0", "2000", "-1", "1.5", " "])
def test_a_cpu_thread_count_that_is_neither_a_number_nor_auto_is_refused(value):
    result = blitz("run", *TINY, "--cpu-threads", value, "--print-config")
    assert result.exit_code == 2, result.output
    assert f"--cpu-threads '{value}': give a whole number of threads from 1 to 1024, or auto." in one_line(result)


@pytest.mark.parametrize(("toml", "got"), [('cpu_threads = "fast"', "'fast'"), ("cpu_threads = 0", "0"),
                                           ("cpu_threads = true", "True"), ('cpu_threads = "2"', "'2'")])
def test_a_cpu_thread_count_in_a_config_file_is_a_number_or_auto(tmp_path, toml, got):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    result = blitz("run", "--config", path, "--print-config")
    assert result.exit_code == 2, result.output
    assert (f"Invalid value for 'cpu_threads' (from config {path}): give a whole number of threads from 1 to 1024, "
            f"or auto; got {got}.") in one_line(result)


@pytest.mark.parametrize(("given", "shown"), [("AUTO", '"auto"'), ("3", "3")])
def test_cpu_threads_auto_or_a_number_is_taken(given, shown):
    result = blitz("run", *TINY, "--cpu-threads", given, "--print-config")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " cpu_threads " in line)
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["cpu_threads", shown, "command line"]


def test_cpu_threads_auto_in_a_config_file_is_taken_as_on_the_command_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('cpu_threads = " Auto"\n')
    result = blitz("run", *TINY, "--config", path, "--print-config")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " cpu_threads " in line)
    assert row.split("│")[2].strip() == '"auto"'


@pytest.mark.parametrize(
    ("toml", "field", "got"),
    [("epochs = true", "epochs", "True"), ("shuffle = 1", "shuffle", "1"), ("lr = true", "lr", "True"),
     ("batch_size = 2.0", "batch_size", "2.0")],
)
def test_config_file_values_of_the_wrong_type_are_refused(tmp_path, toml, field, got):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    result = blitz("run", "--config", path, "--print-config")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{field}' (from config {path})" in one_line(result) and f"got {got}." in one_line(result)


@pytest.mark.parametrize(
    ("flags", "field"),
    [(["--lr", "nan"], "lr"), (["--weight-decay", "inf"], "weight_decay"), (["--mean", "nan,0,0"], "mean.0"),
     (["--std", "1,inf,1"], "std.1")],
)
def test_nan_and_infinity_are_refused_up_front(flags, field):
    result = blitz("run", "--dataset", "random", *flags, "--print-config")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{field}' (from command line): Input should be a finite number" in one_line(result)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--nproc-per-node", "0"], "--nproc-per-node and --nnodes must be at least 1."),
     (["--nnodes", "0"], "--nproc-per-node and --nnodes must be at least 1."),
     (["--node-rank", "3"], "--node-rank must be from 0 to --nnodes minus 1 (0), got 3.")],
)
def test_ddp_launch_numbers_out_of_range_are_refused(flags, message):
    result = blitz("run", *TINY, "--strategy", "ddp", *flags)
    assert result.exit_code == 2, result.output
    assert message in one_line(result)


def test_runs_root_that_is_not_a_folder_is_an_error(tmp_path, monkeypatch):
    result = blitz("runs", "--root", tmp_path / "nowhere")
    assert result.exit_code == 2 and "--root" in one_line(result) and "is not a folder" in one_line(result)
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(afile))
    listing = blitz("runs")
    assert listing.exit_code == 2 and "BLITZ_RUNS_DIR" in one_line(listing)
    run = blitz("run", *TINY)
    assert run.exit_code != 0 and "BLITZ_RUNS_DIR" in one_line(run)


def test_metrics_lines_that_are_not_records_are_skipped(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("[1, 2]\n" + json.dumps({"event": "step", "step": 1}) + "\n\"text\"\n{\"event\": \"ep")
    assert read_metrics(path) == [{"event": "step", "step": 1}]


@pytest.mark.parametrize("width", ["-1", "0", "abc", "true", "2.5"])
def test_a_bad_lenet_width_names_the_argument_not_the_data(width):
    result = blitz("run", *TINY, "--model-arg", f"width={width}")
    assert result.exit_code == 2, result.output
    assert "Model 'lenet': --model-arg width must be a whole number" in one_line(result)  # its type, or LeNet's own check
    assert "Traceback" not in result.output and "does not fit" not in result.output


def test_a_pretrained_file_that_is_not_weights_is_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    result = blitz("run", *TINY, "--model", "resnet18", "--model-arg", f"pretrained_file={junk}")
    assert result.exit_code == 2, result.output
    assert f"Pretrained weights file '{junk}' cannot be loaded into timm/resnet18" in one_line(result)
    assert "Traceback" not in result.output and "weights_only" not in result.output


def test_a_good_pretrained_file_still_loads(tmp_path):
    import timm
    import torch

    from blitz.plugins.timm_models import build_timm

    saved = timm.create_model("resnet18", num_classes=10)
    path = tmp_path / "r18.pth"
    torch.save(saved.state_dict(), path)
    model = build_timm(variant="resnet18", num_classes=10, input_shape=(3, 32, 32), pretrained_file=str(path))
    assert torch.equal(model.conv1.weight, saved.conv1.weight)


def test_the_list_of_accepted_arguments_includes_those_already_given():
    result = blitz("run", *TINY, "--dataset-arg", "length=64", "--dataset-arg", "test_length=32", "--dataset-arg", "foo=1")
    assert result.exit_code == 2
    assert "Dataset 'random' takes no argument 'foo'; it takes: length, num_classes, seed, shape, test_length." in one_line(result)


def test_predict_input_that_is_a_folder_is_named_as_such(tmp_path):
    from blitz.components import DataInfo
    from blitz.errors import UsageError
    from blitz.evaluation import read_image

    info = DataInfo(num_classes=2, input_shape=(3, 8, 8), class_names=("a", "b"))
    with pytest.raises(UsageError, match="is a folder; give image files"):
        read_image(tmp_path, info)
    with pytest.raises(UsageError, match="No image file"):
        read_image(tmp_path / "missing.png", info)


def test_ddp_refuses_a_device_other_than_cpu_before_starting_processes():
    result = blitz("run", *TINY, "--strategy", "ddp", "--device", "cuda:0")
    assert result.exit_code == 2, result.output
    assert "--strategy ddp takes no --device 'cuda:0'" in one_line(result) and "CUDA_VISIBLE_DEVICES" in one_line(result)


def test_an_unknown_recipe_in_a_config_file_says_where_it_came_from(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('recipe = "tutoral"\n')
    result = blitz("run", "--config", path, "--print-config")
    assert result.exit_code == 2
    assert f"Unknown recipe 'tutoral' (from config {path}). Did you mean 'tutorial'? See 'blitz list recipes'." in one_line(result)


@pytest.mark.parametrize("value", ["maybe", "1", "0"])
def test_a_lenet_fused_cpu_step_that_is_not_a_boolean_is_refused(value):
    result = blitz("run", *TINY, "--model-arg", f"fused_cpu_step={value}")
    assert result.exit_code == 2, result.output
    assert "Model 'lenet': --model-arg fused_cpu_step must be true or false" in one_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["run", "--lr", "abc"], "Error: Invalid value for '--lr': "),
     (["run", "--no-such-flag"], "Error: No such option: --no-such-flag"),
     (["show"], "Error: Missing argument 'RUN'. See 'blitz show --help'."),
     (["frobnicate"], "Error: No such command 'frobnicate'. See 'blitz --help'.")],
)
def test_command_line_parsing_errors_are_one_line_with_exit_code_2(args, message):
    result = blitz(*args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(message)


@pytest.mark.parametrize(("args", "message"), [
    (("--optimizer-arg", "nesterov=0"), "nesterov must be true or false, got 0"),  # was a traceback at step 1
    (("--optimizer-arg", "fused=1"), "fused must be true or false, got 1"),
    (("--schedule", "cosine", "--schedule-arg", "final=-2"), "final must be a number >= 0 and <= 1, got -2"),
    (("--schedule", "linear", "--schedule-arg", "warmup=-5"), "warmup must be a number >= 0, got -5"),
    (("--schedule", "cosine", "--schedule-arg", "warmup=abc"), "--schedule-arg warmup must be a number, got 'abc'"),
    (("--schedule", "onecycle", "--schedule-arg", "div_factor=x"), "--schedule-arg div_factor must be a number, got 'x'"),
])
def test_wrong_optimizer_and_schedule_options_are_refused_before_training(tmp_path, args, message):
    result = blitz("run", *TINY, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in one_line(result) and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_text_file_as_checkpoint_or_weights_is_named_as_such_not_by_a_bare_number(tmp_path):
    from blitz.checkpoint import describe_load_failure

    (tmp_path / "notes.txt").write_text("hello notes\n")
    try:
        import torch

        torch.load(tmp_path / "notes.txt", weights_only=True)
    except Exception as exc:  # noqa: BLE001  # whatever torch raises for it
        reason = describe_load_failure(exc)
    assert reason == "not a file saved by torch.save or safetensors (damaged, or another format)"
    result = blitz("run", *TINY, "--model", "resnet18", "--model-arg", f"pretrained_file={tmp_path / 'notes.txt'}",
                   "--out", tmp_path / "run")
    assert result.exit_code == 2 and f"({reason})" in one_line(result)


@pytest.mark.parametrize("option", [("--rdzv-backend", "static"), ("--rdzv-id", "job7")])
def test_ddp_launch_options_without_ddp_are_refused_like_the_others(tmp_path, option):
    result = blitz("run", *TINY, *option, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--rdzv-backend and --rdzv-id go with --strategy ddp" in one_line(result)


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"rdzv_endpoint": "node0:port"}, "--rdzv-endpoint 'node0:port': give HOST or HOST:PORT, such as node0:29500"),
     ({"rdzv_endpoint": "node0:99999", "nnodes": 2}, "--rdzv-endpoint 'node0:99999': give HOST or HOST:PORT"),
     ({"rdzv_endpoint": ":29500", "nnodes": 2}, "--rdzv-endpoint ':29500': give HOST or HOST:PORT"),
     ({"rdzv_endpoint": "node0:0", "nnodes": 2}, "--rdzv-endpoint 'node0:0': port 0 (any free one) serves one machine")],
)
def test_a_malformed_rendezvous_endpoint_is_refused_before_torchrun_retries_it(spec, message):
    """A bad endpoint made torchrun retry for minutes printing socket errors."""
    from blitz.errors import UsageError
    from blitz.launch import LaunchSpec, torchrun_args

    with pytest.raises(UsageError, match=re.escape(message)):
        torchrun_args(LaunchSpec(nproc_per_node=2, **spec), ["--dataset", "random"])
    for endpoint, nodes in (("node0:29500", 2), ("node0", 2), ("localhost:0", 1)):  # as torchrun takes them
        args = torchrun_args(LaunchSpec(nproc_per_node=2, nnodes=nodes, rdzv_endpoint=endpoint), [])
        assert f"--rdzv-endpoint={endpoint}" in args


def test_rendezvous_backend_and_id_on_one_machine_are_warned_as_ignored():
    """Job scripts pass --rdzv-id everywhere; on one machine (--standalone) torchrun ignores it."""
    from blitz.launch import LaunchSpec, torchrun_args

    with pytest.warns(UserWarning, match=r"--rdzv-backend and --rdzv-id apply with --rdzv-endpoint .* ignores them"):
        assert "--standalone" in torchrun_args(LaunchSpec(nproc_per_node=2, rdzv_backend="static", rdzv_id="x"), [])


def test_resuming_a_run_in_its_first_epoch_says_it_is_running_not_to_start_again(tmp_path):
    from blitz.runs import lock_run

    run = tmp_path / "run"
    assert blitz("run", *TINY, "--out", run).exit_code == 0
    (run / "checkpoints" / "last.ckpt").unlink()  # as in a run's first epoch, before its first checkpoint
    holder = lock_run(run)  # held by the process training it
    try:
        result = blitz("run", "--resume", run)
        assert result.exit_code == 2 and "is being trained right now by another blitz process" in one_line(result)
    finally:
        holder.close()
    result = blitz("run", "--resume", run)
    assert result.exit_code == 2 and "has no checkpoint to resume from" in one_line(result)


def test_augmentation_of_data_that_is_not_images_is_refused_not_skipped(tmp_path):
    result = blitz("run", "--recipe", "randomdemo", "--translate", "2", "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--flip/--translate/--cutout augment images, but dataset 'random' gives inputs of shape" in one_line(result)


def test_cuda_graphs_and_compile_together_are_refused(tmp_path):
    result = blitz("run", *TINY, "--cuda-graphs", "--compile", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--cuda-graphs and --compile do not go together" in one_line(result)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--flip-mode", "alternate"), "--flip-mode applies with --flip, which this run does not use"),
    (("--compile-mode", "max-autotune"), "--compile-mode applies with --compile, which this run does not use"),
])
def test_an_option_another_switches_off_is_refused_not_ignored(tmp_path, args, message):
    result = blitz("run", *TINY, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2 and message in one_line(result)
    printed = blitz("run", "--recipe", "airbench94", "--no-flip", "--print-config")  # its flip_mode: only a default
    assert printed.exit_code == 0 and "alternate" in printed.output


def test_a_family_is_suggested_as_a_name_to_complete_not_as_its_pattern():
    result = blitz("run", *TINY, "--model", "timm/")
    assert result.exit_code == 2
    assert "Unknown model 'timm/'. Did you mean 'timm/<name>'? 'blitz list models timm/' lists the names." in one_line(result)
    assert "timm/*" not in result.output


@pytest.mark.parametrize("strategy", ["cpu", "auto"])
def test_a_numbered_cpu_device_is_refused_alike_by_cpu_and_auto(tmp_path, strategy):
    args = [a for a in TINY if a not in ("--strategy", "cpu")]
    result = blitz("run", *args, "--strategy", strategy, "--device", "cpu:1", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--device 'cpu:1': give 'cpu' (PyTorch has one CPU device" in one_line(result)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("True", True), ("False", False), (".1", 0.1), ("-.5", -0.5), ("07", "07"), ("2024-01-01", "2024-01-01"),
     ("[1, 2]", [1, 2]), ('"x y"', "x y"), ("resnet", "resnet")],
)
def test_option_values_python_spellings_read_as_meant(raw, value):
    from blitz.cli import parse_value

    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


def test_an_option_key_given_twice_is_refused():
    result = blitz("run", *TINY, "--model-arg", "width=2", "--model-arg", "width=3")
    assert result.exit_code == 2 and "--model-arg width is given twice; give it once." in one_line(result)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("seed=1.5", "--dataset-arg seed must be a whole number, got 1.5"),  # the types checked by their hints
     ("length=1e3", "--dataset-arg length must be a whole number, got 1000.0"),
     ("shape=[3,32,32.7]", "shape must be a list of whole numbers >= 1"),  # the factory's own check
     ("shape=5", "--dataset-arg shape must be a list ([...]), got 5"),
     ("num_classes=1", "num_classes must be a whole number >= 2, got 1")],
)
def test_random_data_options_of_the_wrong_type_are_one_line(arg, expected):
    result = blitz("data", "verify", "random", "--dataset-arg", arg)
    assert result.exit_code == 2 and expected in one_line(result) and "Traceback" not in result.output


def test_batch_norm_on_batches_of_one_is_refused_before_training(tmp_path):
    result = blitz("run", "--dataset", "random", "--dataset-arg", "length=1", "--dataset-arg", "test_length=4",
                   "--model", "resnet18", "--strategy", "cpu", "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert ("Model 'resnet18' has BatchNorm layers, which cannot train on batches of one example (a training "
            "split of 1 example(s) per process)") in one_line(result)
    batch_one = blitz("run", *TINY, "--model", "resnet18", "--batch-size", "1", "--out", tmp_path / "run2")
    assert batch_one.exit_code == 2 and "(--batch-size 1)" in one_line(batch_one)
    assert blitz("run", *TINY, "--model", "lenet", "--batch-size", "1", "--out", tmp_path / "run3").exit_code == 0


def test_options_that_do_nothing_for_tensor_data_are_warned(tmp_path):
    result = blitz("run", "--recipe", "randomdemo", "--strategy", "cpu", "--limit-steps", "2", "--num-workers", "2",
                   "--channels-last", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    text = one_line(result)
    assert "Warning: --num-workers 2 is not used: 'random' is held in memory as tensors" in text
    assert "Warning: --channels-last is not used: dataset 'random' gives inputs of shape (5,), not images." in text


def test_empty_values_from_unset_variables_are_refused():
    for flag in ("--recipe", "--resume", "--device", "--precision", "--config", "--data-root", "--out"):
        result = blitz("run", *TINY, flag, "")
        assert result.exit_code == 2 and f"{flag} was given an empty value" in one_line(result), flag


def test_precision_written_as_a_number_in_a_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("precision = 32\n")
    result = blitz("run", *TINY, "--config", path, "--print-config")
    assert result.exit_code == 0 and "│ precision " in result.output and '"32"' in result.output, result.output
    path.write_text("precision = 16\n")
    result = blitz("run", *TINY, "--config", path, "--print-config")
    assert result.exit_code == 2 and "fp16 is '16-mixed' (fp16 autocast with a gradient scaler)" in one_line(result)


@pytest.mark.parametrize("key", ["out", "data_root", "device"])
def test_empty_values_in_a_config_file_are_refused_as_the_flags_are(tmp_path, key):
    """out = "" wrote the run into the current folder, data_root = "" read data from it, and
    device = "" failed later blaming a --device flag never given."""
    path = tmp_path / "c.toml"
    path.write_text(f'{key} = ""\n')
    result = blitz("run", *TINY, "--config", path, "--print-config")
    assert result.exit_code == 2
    assert f"Invalid value for '{key}' (from config {path}): an empty value; give one, or leave the key out" in one_line(result)


def test_an_empty_runs_dir_variable_means_the_default(monkeypatch):
    from blitz.runs import runs_root

    monkeypatch.setenv("BLITZ_RUNS_DIR", "")
    assert runs_root() == Path("runs")


def test_print_config_refuses_what_the_run_would_refuse():
    result = blitz("run", *TINY, "--nproc-per-node", "2", "--print-config")
    assert result.exit_code == 2 and "go with --strategy ddp" in one_line(result)


@pytest.mark.parametrize("value", ["10m", "-5", "nan", "inf", "1e14"])
def test_a_bad_ddp_timeout_is_one_line_before_launching(monkeypatch, value):
    monkeypatch.setenv("BLITZ_DDP_TIMEOUT", value)
    result = blitz("run", *TINY, "--strategy", "ddp", "--nproc-per-node", "1")
    assert result.exit_code == 2
    assert f"$BLITZ_DDP_TIMEOUT must be a number of seconds above 0 (at most 1e9), like 600, got '{value}'." in one_line(result)


def test_config_files_with_a_byte_order_mark_json_or_twice_the_same_logger(tmp_path):
    from blitz.config import read_toml, RunConfig

    bom = tmp_path / "windows.toml"
    bom.write_bytes("\ufeffepochs = 3\n".encode("utf-8"))
    assert read_toml(bom) == {"epochs": 3}
    as_json = tmp_path / "c.json"
    as_json.write_text('{"epochs": 3}')
    result = blitz("run", *TINY, "--config", as_json)
    assert result.exit_code == 2 and "is not valid TOML (JSON is not read: write the config file in TOML)" in one_line(result)
    assert RunConfig(loggers=["jsonl", "jsonl", "tensorboard"]).loggers == ["jsonl", "tensorboard"]


def test_a_home_relative_path_option_is_expanded(tmp_path, monkeypatch):
    from blitz.config import RunConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.pth").write_bytes(b"")
    config = RunConfig(model_args={"pretrained_file": "~/w.pth"}, dataset_args={"test_path": "~/missing"})
    assert config.model_args["pretrained_file"] == str(tmp_path / "w.pth")
    assert config.dataset_args["test_path"] == str(tmp_path / "missing")  # expanded, for its error message


def test_a_misspelt_option_key_gets_a_suggestion():
    result = blitz("run", *TINY, "--model", "lenet", "--model-arg", "widht=2")
    assert result.exit_code == 2
    assert "Model 'lenet' takes no argument 'widht' (did you mean 'width'?); it takes: fused_cpu_step, width." in one_line(result)


@pytest.mark.parametrize(("text", "meant"), [("flip = true", "flip"), ('flip_mode = "alternate"', "flip_mode"),
                                             ("cutout = 8", "cutout"), ("translat = 2", "translate")])
def test_augmentation_keys_at_the_top_of_a_config_file_point_at_the_augment_table(tmp_path, text, meant):
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    result = blitz("run", *TINY, "--config", path)
    assert result.exit_code == 2 and f"Augmentation keys go in an [augment] table: '{meant}' there." in one_line(result)


def test_blitz_debug_0_means_off(monkeypatch):
    from blitz.errors import debug_requested

    for value, on in (("", False), ("0", False), ("false", False), ("No", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("BLITZ_DEBUG", value)
        assert debug_requested() is on, value


def test_batch_norm_on_batches_of_one_trains_where_its_feature_maps_are_larger_than_one_pixel(tmp_path):
    result = blitz("run", "--dataset", "random", "--dataset-arg", "shape=[3,64,64]", "--dataset-arg", "length=3",
                   "--dataset-arg", "test_length=2", "--model", "resnet18", "--batch-size", "1", "--strategy", "cpu",
                   "--epochs", "1", "--limit-steps", "2", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("flag", "message"), [
    (("--model-arg", "widht=3"), "Model 'lenet' takes no argument 'widht' (did you mean 'width'?); it takes: fused_cpu_step, width."),
    (("--logger-arg", "jsonl.flsh=3"), "Logger 'jsonl' takes no argument 'flsh'; it takes no options."),
    (("--schedule-arg", "warmup=soon"), "Schedule 'cosine': --schedule-arg warmup must be a number, got 'soon'."),
])
def test_a_misspelt_or_mistyped_option_is_refused_before_the_data_loads(cifar_root, flag, message):
    """A data source that takes minutes to load is not loaded for a run that would stop at its
    first component: the options of every component are checked first."""
    result = blitz("run", "--model", "lenet", "--dataset", "cifar10", "--data-root", cifar_root / "nowhere",
                   "--schedule", "cosine", *flag)
    assert result.exit_code == 2
    assert one_line(result) == f"Error: {message}"  # not "Missing CIFAR file": the data was not read
