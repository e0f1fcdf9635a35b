"""End of a run and after it: report files and pictures, `blitz eval`, `blitz predict`.

One tiny LeNet run on random 3x32x32 images is trained once per module (a few seconds on a
CPU) and shared; tests that damage a run work on a copy.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from blitz import pictures
from blitz.cli import app
from blitz.components import DataInfo
from blitz.errors import UsageError
from blitz.evaluation import LoadedRun, check_data_fits

TEST_LENGTH = 120
NUM_CLASSES = 10
TRAIN_ARGS = [
    "run", "--model", "lenet", "--dataset", "random", "--epochs", "1", "--batch-size", "50",
    "--strategy", "cpu", "--dataset-arg", "length=200", "--dataset-arg", f"test_length={TEST_LENGTH}",
    "--dataset-arg", f"num_classes={NUM_CLASSES}",
]

runner = CliRunner()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(autouse=True)
def _isolated_runs(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written into the repository: runs/ is a temporary folder."""
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(runs_dir))


@pytest.fixture(scope="module")
def trained(runs_dir: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLITZ_RUNS_DIR", str(runs_dir))
        result = runner.invoke(app, [*TRAIN_ARGS, "--out", str(runs_dir / "tiny")])
    assert result.exit_code == 0, result.output
    return runs_dir / "tiny"


def damaged_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


# ---- report files ----------------------------------------------------------------------------


def test_report_files_are_consistent(trained: Path) -> None:
    for name in ("report.md", "results.json", "confusion.csv"):
        assert (trained / name).is_file(), name
    results = json.loads((trained / "results.json").read_text())
    confusion = results["confusion"]
    assert len(confusion) == NUM_CLASSES and all(len(row) == NUM_CLASSES for row in confusion)
    assert sum(map(sum, confusion)) == TEST_LENGTH == results["count"]
    assert results["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(NUM_CLASSES)) / TEST_LENGTH)
    assert list(results["per_class_accuracy"]) == results["class_names"]
    assert all(0.0 <= v <= 1.0 for v in results["per_class_accuracy"].values())

    rows = list(csv.reader((trained / "confusion.csv").read_text().splitlines()))
    assert rows[0][1:] == results["class_names"]
    assert [row[0] for row in rows[1:]] == results["class_names"]
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == confusion

    report = (trained / "report.md").read_text()
    assert "lenet" in report and "random" in report
    assert f"{100 * results['accuracy']:.2f} %" in report
    for picture in ("predictions.png", "curves.png", "confusion.png"):
        assert f"]({picture})" in report  # relative links


@pytest.mark.parametrize(
    ("name", "inches"),
    [
        ("predictions.png", pictures.PREDICTIONS_SIZE),
        ("curves.png", pictures.CURVES_SIZE),
        ("confusion.png", pictures.CONFUSION_SIZE),
    ],
)
def test_pictures_are_pngs_of_the_configured_size(trained: Path, name: str, inches: tuple[float, float]) -> None:
    with Image.open(trained / name) as image:
        assert image.format == "PNG"
        assert image.size == (round(inches[0] * pictures.DPI), round(inches[1] * pictures.DPI))
        image.verify()


def test_a_failing_picture_never_loses_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("no ink")

    monkeypatch.setattr(pictures, "curves_figure", broken)
    out = tmp_path / "run"
    result = runner.invoke(app, [*TRAIN_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "could not draw curves.png" in result.output and "no ink" in result.output
    assert not (out / "curves.png").exists()
    assert (out / "predictions.png").is_file() and (out / "confusion.png").is_file()
    assert "curves.png" not in (out / "report.md").read_text()
    assert (out / "checkpoints" / "last.ckpt").is_file()


# ---- eval ------------------------------------------------------------------------------------


def test_eval_reproduces_the_final_accuracy(trained: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(runs_dir))  # explicit: whichever autouse fixture ran last
    result = runner.invoke(app, ["eval", "tiny", "--strategy", "cpu"])  # by name, under BLITZ_RUNS_DIR
    assert result.exit_code == 0, result.output
    final = json.loads((trained / "results.json").read_text())
    assert f"Accuracy of the network on the {TEST_LENGTH} test images: {100 * final['accuracy']:.2f} %" in result.stdout
    assert "Accuracy of class0" in result.stdout
    evaluated = json.loads((trained / "eval-random-best.json").read_text())
    assert evaluated["accuracy"] == final["accuracy"]  # one epoch: best == last == final
    assert evaluated["confusion"] == final["confusion"]
    assert (trained / "eval-random-best-confusion.csv").read_text() == (trained / "confusion.csv").read_text()


def test_a_read_only_run_is_evaluated_and_refuses_a_resume_in_one_line(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on a read-only disk (root ignores chmod, so the writes are made to fail): eval
    prints its figures and says it could not save them; a resume, which could save nothing,
    is refused naming the folder. Both were tracebacks."""
    import blitz.evaluation
    from blitz.runs import LOCK_FILE

    copy = damaged_copy(trained, tmp_path)

    def read_only(path: Path, *_args: object) -> None:
        raise OSError(30, "Read-only file system", str(path))

    with monkeypatch.context() as mp:
        mp.setattr(blitz.evaluation, "atomic_write_text", read_only)
        result = runner.invoke(app, ["eval", str(copy), "--strategy", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"Accuracy of the network on the {TEST_LENGTH} test images" in result.output
    assert f"Warning: could not save the results in {copy} (Read-only file system): they are only printed above." in (
        " ".join(result.output.split()))
    (copy / LOCK_FILE).unlink(missing_ok=True)
    (copy / LOCK_FILE).mkdir()  # opening the lock file fails, as on a read-only disk
    result = runner.invoke(app, ["run", "--resume", str(copy), "--epochs", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Cannot write in the run folder '{copy}'" in " ".join(result.output.split())


def test_eval_of_a_corrupt_checkpoint_is_one_line(trained: Path, tmp_path: Path) -> None:
    run = damaged_copy(trained, tmp_path)
    best = run / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:100])  # truncated, as by a full disk
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(best) in lines[0] and lines[0].endswith(". Try --checkpoint last.")


def test_a_damaged_last_checkpoint_says_a_resume_needs_it_not_best(trained: Path, tmp_path: Path) -> None:
    run = damaged_copy(trained, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    result = runner.invoke(app, ["run", "--resume", str(run), "--epochs", "3"])
    text = " ".join(result.stderr.split())
    assert result.exit_code == 1 and f"'{last}' is not a readable blitz checkpoint" in text
    assert text.endswith(f"A run resumes from its last.ckpt only (best.ckpt serves blitz eval and predict); start it "
                         f"again: blitz run --config {run / 'config.toml'}")


def test_a_checkpoint_without_its_meta_is_damaged_and_points_at_the_other(trained: Path, tmp_path: Path) -> None:
    from blitz.checkpoint import FORMAT, VERSION

    run = damaged_copy(trained, tmp_path)
    torch.save({"format": FORMAT, "version": VERSION}, run / "checkpoints" / "best.ckpt")  # no meta, no weights
    result = runner.invoke(app, ["eval", str(run)])
    text = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "is a damaged blitz checkpoint" in text and text.endswith("Try --checkpoint last.")


def test_a_checkpoint_of_another_version_gets_no_advice_to_train_again(trained: Path, tmp_path: Path) -> None:
    """Starting again would throw the run away: another blitz reads it."""
    from blitz.checkpoint import FORMAT

    run = damaged_copy(trained, tmp_path)
    for name in ("best", "last"):
        torch.save({"format": FORMAT, "version": 99}, run / "checkpoints" / f"{name}.ckpt")
    for command in (["eval", str(run)], ["run", "--resume", str(run), "--epochs", "3"]):
        result = runner.invoke(app, command)
        text = " ".join(result.stderr.split())
        assert result.exit_code == 1 and "has checkpoint version 99; this blitz reads version" in text
        assert "again" not in text and "Try --checkpoint" not in text


def test_eval_of_a_missing_checkpoint_names_it(trained: Path, tmp_path: Path) -> None:
    run = damaged_copy(trained, tmp_path)
    (run / "checkpoints" / "last.ckpt").unlink()
    result = runner.invoke(app, ["eval", str(run), "--checkpoint", "last"])
    assert result.exit_code == 1
    assert str(run / "checkpoints" / "last.ckpt") in result.stderr and "Try --checkpoint best." in result.stderr
    (run / "checkpoints" / "best.ckpt").unlink()  # none at all, as after --epochs 0
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 2 and "the run saved none" in result.stderr
    assert f"train it again: blitz run --config {run / 'config.toml'}" in " ".join(result.stderr.split())


def test_eval_of_a_run_still_in_its_first_epoch_says_it_is_training(trained: Path, tmp_path: Path) -> None:
    """Not "the run saved none ... train it again", which would start a second copy of it."""
    from blitz.runs import lock_run, release_run

    run = damaged_copy(trained, tmp_path)
    (run / "checkpoints" / "best.ckpt").unlink()
    held = lock_run(run)  # as the process training it holds it
    try:
        with_last = runner.invoke(app, ["eval", str(run)])
        (run / "checkpoints" / "last.ckpt").unlink()
        without = runner.invoke(app, ["predict", str(run), str(tmp_path / "any.png")])
    finally:
        release_run(held)
    for result in (with_last, without):
        text = " ".join(result.stderr.split())
        assert result.exit_code == 2 and "is being trained right now and has not saved it yet" in text, text
        assert "again:" not in text
    assert "use --checkpoint last" in " ".join(with_last.stderr.split())


def test_eval_of_an_unknown_run_is_a_usage_error() -> None:
    result = runner.invoke(app, ["eval", "no-such-run"])
    assert result.exit_code == 2
    assert "no-such-run" in result.stderr


def test_data_that_does_not_fit_the_model_names_both() -> None:
    model_info = DataInfo(10, (3, 32, 32), tuple(f"c{i}" for i in range(10)))
    loaded = LoadedRun(Path("runs/x"), Path("runs/x/checkpoints/best.ckpt"), None, {"dataset": "cifar10"},  # type: ignore[arg-type]
                       model_info, torch.nn.Identity())
    other = DataInfo(4, (1, 28, 28), ("a", "b", "c", "d"))
    with pytest.raises(UsageError, match=r"'mnist'.*4 classes.*\(1, 28, 28\).*'cifar10'.*10 classes.*\(3, 32, 32\)"):
        check_data_fits(loaded, other, "mnist")


# ---- predict ---------------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """A PNG of another size and a grayscale JPEG: predict resizes and converts both."""
    g = torch.Generator().manual_seed(1)
    png, jpeg = tmp_path / "cat.png", tmp_path / "dog.jpg"
    Image.fromarray(torch.randint(0, 256, (48, 40, 3), dtype=torch.uint8, generator=g).numpy()).save(png)
    Image.fromarray(torch.randint(0, 256, (20, 20), dtype=torch.uint8, generator=g).numpy()).save(jpeg)
    return [png, jpeg]


def test_predict_prints_top_k(trained: Path, images: list[Path]) -> None:
    result = runner.invoke(app, ["predict", str(trained), *map(str, images), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for path in images:
        start = lines.index(str(path))
        rows = [line.split() for line in lines[start + 1 : start + 4]]
        assert all(row[0].startswith("class") and row[2] == "%" for row in rows)
        probabilities = [float(row[1]) for row in rows]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 100.0 + 1e-6


def test_predict_json(trained: Path, images: list[Path]) -> None:
    result = runner.invoke(app, ["predict", str(trained), *map(str, images), "--json", "--top-k", str(NUM_CLASSES + 5)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == [str(p) for p in images]
    for row in rows:
        assert len(row["predictions"]) == NUM_CLASSES  # top-k is capped at the number of classes
        assert sum(p["probability"] for p in row["predictions"]) == pytest.approx(1.0, abs=1e-5)
        assert {p["class"] for p in row["predictions"]} == {f"class{i}" for i in range(NUM_CLASSES)}


def test_predict_matches_evaluation_preprocessing(trained: Path, tmp_path: Path) -> None:
    """A test image saved losslessly at the model's size gets the class evaluation gave it."""
    from blitz.evaluation import load_run
    from blitz.plugins.random_data import load_random

    loaded = load_run(trained, "best")
    test = load_random(shape=(3, 32, 32), length=200, test_length=TEST_LENGTH, num_classes=NUM_CLASSES).test
    path = tmp_path / "sample.png"
    Image.fromarray(test.images[0].permute(1, 2, 0).numpy()).save(path)
    x = (test.images[:1].float() / 255 - 0.5) / 0.5  # the random data's mean/std
    with torch.no_grad():
        expected = loaded.model(x).softmax(dim=1)[0]
    result = runner.invoke(app, ["predict", str(trained), str(path), "--json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]["predictions"][0]
    assert top["class"] == f"class{int(expected.argmax())}"
    assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_predict_missing_file(trained: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.png"
    result = runner.invoke(app, ["predict", str(trained), str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "Traceback" not in result.output


def test_predict_classifies_the_readable_files_and_reports_each_other(trained: Path, images: list[Path], tmp_path: Path) -> None:
    text, missing = tmp_path / "notes.png", tmp_path / "nowhere.png"
    text.write_text("not a picture")
    result = runner.invoke(app, ["predict", str(trained), str(images[0]), str(text), str(missing)])
    assert result.exit_code == 2 and str(images[0]) in result.stdout  # its predictions came first
    assert str(text) in result.stderr and "(1 more file(s) could not be read; --json lists each)" in result.stderr
    as_json = runner.invoke(app, ["predict", str(trained), str(images[0]), str(text), str(missing), "--json"])
    rows = json.loads(as_json.stdout)
    assert as_json.exit_code == 2 and [sorted(row) for row in rows] == [["file", "predictions"], ["error", "file"], ["error", "file"]]
    assert "not a readable image" in rows[1]["error"] and "No image file" in rows[2]["error"]


def test_predict_non_image_file(trained: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    result = runner.invoke(app, ["predict", str(trained), str(text)])
    assert result.exit_code == 2
    assert str(text) in result.stderr and "Traceback" not in result.output


def test_eval_rebuilds_the_component_the_run_used_not_what_its_alias_means_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "registry.toml"
    catalog.write_text('[models.mynet]\nplugin = "lenet"\ncomponent = "lenet"\ndefaults = { width = 2 }\n')
    monkeypatch.setenv("BLITZ_REGISTRY", str(catalog))
    out = tmp_path / "run"
    trained = runner.invoke(app, [*TRAIN_ARGS, "--model", "mynet", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    catalog.write_text('[models.mynet]\nplugin = "linear"\ncomponent = "linear"\n')  # the alias now names another model
    result = runner.invoke(app, ["eval", str(out), "--strategy", "cpu"])
    assert result.exit_code == 0, result.output  # a linear model could not load LeNet's weights
    final = json.loads((out / "results.json").read_text())
    assert json.loads((out / "eval-random-best.json").read_text())["accuracy"] == final["accuracy"]


def test_pictures_normalize_a_datasets_uint8_pixels_as_training_does() -> None:
    from torch.utils.data import Dataset

    from blitz.batches import Normalizer
    from blitz.components import TensorSplit

    info = DataInfo(num_classes=3, input_shape=(3, 8, 8), class_names=("a", "b", "c"), mean=(0.5,) * 3, std=(0.25,) * 3)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1])

    class Pixels(Dataset):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int):
            return images[i], int(labels[i])

    expected = Normalizer(info, torch.device("cpu"))(images[:4], torch.contiguous_format)
    for split in (Pixels(), TensorSplit(images, labels)):  # the same pictures either way
        inputs, display, got = pictures.first_examples(split, info, 4)
        torch.testing.assert_close(inputs, expected)
        torch.testing.assert_close(display, images[:4].float() / 255)
        assert got == [0, 1, 2, 0]


def test_predict_reads_a_photo_as_imagefolder_training_did(tmp_path: Path) -> None:
    """A big JPEG: training's decoder uses JPEG's reduced-scale decoding; predict must too."""
    from blitz.evaluation import read_image
    from blitz.plugins.imagefolder import load_imagefolder

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.jpg", quality=90)
    bundle = load_imagefolder(root=tmp_path, path="photos", test_fraction=0.5)
    photo = sorted((tmp_path / "photos").rglob("*.jpg"))
    stored_images = torch.cat([bundle.train.images, bundle.test.images])
    assert len(photo) == len(stored_images) == 6
    for stored in stored_images:  # the stored pixels of every file, as predict reads that file
        matches = [p for p in photo if torch.equal(read_image(p, bundle.info), stored)]
        assert len(matches) == 1


def test_the_prediction_grid_titles_each_image_true_then_predicted_red_where_wrong() -> None:
    samples = pictures.Samples(display=torch.rand(3, 3, 8, 8), labels=[0, 1, 2], predicted=[0, 2, 2])
    figure = pictures.samples_figure(samples, ("cat", "dog", "golden_retriever_with_a_long_name"))
    suptitle, *texts = figure.texts
    assert suptitle.get_text() == "Test images: true / predicted (red = wrong)"
    titles = [(text.get_text(), text.get_color()) for text in texts]
    assert titles == [("cat / cat", "black"), ("dog / golde…_long_name", "red"), ("golde…_long_name / golde…_long_name", "black")]
    shown = [ax for ax in figure.axes if ax.images]
    assert len(figure.axes) == pictures.GRID**2 and len(shown) == 3
    for ax, text in zip(shown, texts, strict=True):  # each title centred just above its image
        box = ax.get_position()
        assert text.get_position()[0] == pytest.approx((box.x0 + box.x1) / 2)
        assert 0 < text.get_position()[1] - box.y1 < 0.02


def test_long_class_names_are_shortened_to_fit_the_prediction_grid():
    from blitz.pictures import short

    assert short("truck") == "truck" and short("x" * 16) == "x" * 16
    assert short("golden_retriever_with_a_long_name") == "golde…_long_name"  # 16 characters: its column
    assert short("a_very_long_class_name_1") != short("a_very_long_class_name_2")  # apart by their ends


def test_predict_refuses_a_decompression_bomb_in_one_line(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses above twice this: a 64x64 image stands in for a huge one
    Image.new("RGB", (64, 64)).save(tmp_path / "huge.png")
    result = runner.invoke(app, ["predict", str(trained), str(tmp_path / "huge.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert f"Cannot read '{tmp_path / 'huge.png'}': DecompressionBombError" in said
    assert ".." not in said and "Give a smaller copy of the image" in said  # it is an image: only too large


def test_eval_of_a_run_whose_image_folder_moved_takes_dataset_args_and_prints_names_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    for k, name in enumerate(("[unknown]", "cats|dogs")):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 200 * k, 0)).save(folder / name / f"{i}.png")
    out = tmp_path / "run"
    trained = runner.invoke(app, ["run", "--model", "lenet", "--dataset", "imagefolder", "--dataset-arg", f"path={folder}",
                                  "--dataset-arg", "image_size=16", "--dataset-arg", "test_fraction=0.5", "--epochs", "1",
                                  "--strategy", "cpu", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    assert "Accuracy of [unknown] :" in trained.output  # a class name, not markup
    assert "| cats\\|dogs | " in (out / "report.md").read_text()  # one cell of the per-class table
    folder.rename(tmp_path / "moved")
    lost = runner.invoke(app, ["eval", str(out), "--strategy", "cpu"])
    assert lost.exit_code == 2 and "--dataset-arg KEY=VALUE" in " ".join(lost.output.split())
    found = runner.invoke(app, ["eval", str(out), "--strategy", "cpu", "--dataset-arg", f"path={tmp_path / 'moved'}"])
    assert found.exit_code == 0, found.output
    assert json.loads((out / "eval-imagefolder-best.json").read_text())["accuracy"] == json.loads((out / "results.json").read_text())["accuracy"]


def test_eval_on_data_with_other_class_names_warns(trained: Path, cifar_root: Path) -> None:
    result = runner.invoke(app, ["eval", str(trained), "--strategy", "cpu", "--dataset", "cifar10", "--data-root", str(cifar_root)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Warning: dataset 'cifar10' names its classes otherwise than the run did (class 0: 'plane' here, 'class0' in the run;" in text


def test_the_curves_of_a_one_epoch_run_have_one_whole_epoch_tick() -> None:
    history = [{"epoch": 1, "train_loss": 2.3, "test_loss": 2.2, "test_accuracy": 0.1}]
    figure = pictures.curves_figure(history)
    for ax in figure.axes:
        assert list(ax.get_xticks()) == [1]


def test_the_curves_draw_the_training_loss_as_it_went_at_its_place_in_each_epoch() -> None:
    """A line of the step records' losses (the tutorial's running loss), where there were only
    the epoch means: two dots for the tutorial's two epochs."""
    history = [{"epoch": 1, "step": 100, "train_loss": 2.0, "test_loss": 1.9, "test_accuracy": 0.3},
               {"epoch": 2, "step": 200, "train_loss": 1.5, "test_loss": 1.6, "test_accuracy": 0.4}]
    steps = [{"event": "step", "epoch": e, "step": s, "loss": 3.0 - s / 100} for e, s in
             ((1, 25), (1, 50), (1, 100), (2, 150), (2, 200), ("x", 1))]  # the last: not a record blitz wrote
    figure = pictures.curves_figure(history, steps, "lenet on cifar10: 40.00 % test accuracy")
    loss_ax = figure.axes[0]
    trail = next(line for line in loss_ax.get_lines() if line.get_label().startswith("train (every"))
    assert list(trail.get_xdata()) == [0.25, 0.5, 1.0, 1.5, 2.0]
    assert list(trail.get_ydata()) == [2.75, 2.5, 2.0, 1.5, 1.0]
    assert figure.get_suptitle() == "lenet on cifar10: 40.00 % test accuracy"
    assert pictures.curves_figure(history, steps[:2]).axes[0].get_lines()[0].get_label() == "train (epoch mean)"


def test_evals_confusion_table_names_its_columns_and_never_cuts_a_count() -> None:
    """Its columns were 0-9, and at 60 columns rich cut the counts themselves ('4…')."""
    from rich.console import Console

    from blitz.evaluation import confusion_table

    names = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    matrix = torch.full((10, 10), 999)  # CIFAR-10's 1,000 test images a class: three digits but for a perfect class
    console = Console(width=80, record=True)
    console.print(confusion_table(matrix, names, console.width))
    text = console.export_text()
    assert "plan   car   bird   cat   deer" in text and text.count("999") == 100
    assert confusion_table(matrix, names, 60) == "Confusion matrix: 10 x 10, too wide for 60 columns; see the CSV file."
    assert isinstance(confusion_table(matrix + 1, names, 80), str)  # four digits: a note, not cut counts
    clashing = confusion_table(torch.ones(2, 2, dtype=torch.long), ("automobile", "autobus"), 80)
    assert [c.header for c in clashing.columns[1:]] == ["0", "1"]  # cut names would be the same: indices


def test_the_confusion_picture_gives_each_true_class_its_accuracy() -> None:
    figure = pictures.confusion_figure(torch.tensor([[3, 1], [0, 0]]), ("cat", "dog"))
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["cat (75 %)", "dog (n/a)"]


def test_a_class_without_test_images_is_not_scored_zero():
    from blitz.report import accuracy_lines
    from blitz.scoring import EvalResult

    result = EvalResult(loss=0.5, accuracy=0.75, confusion=torch.tensor([[3, 1], [0, 0]]), count=4)
    per_class = result.per_class(("a", "b"))
    assert per_class == {"a": 0.75, "b": None}
    assert accuracy_lines(per_class) == ["Accuracy of a : 75 %", "Accuracy of b : n/a (no test images)"]
