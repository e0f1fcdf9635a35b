"""The imagefolder and torchvision-format data sources, on tiny fixtures written in tmp_path."""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from typer.testing import CliRunner

from blitz import DataError, DataNotFoundError, TensorSplit, UsageError
from blitz.plugins import imagefolder, torchvision_datasets as tvd
from blitz.plugins.imagefolder import load_imagefolder
from tests.conftest import write_py2_cifar_batch

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fish": (0, 0, 255)}


# ---- fixtures --------------------------------------------------------------------------------

def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 12), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)


def make_folder(root: Path, classes: dict[str, tuple[int, int, int]] = COLOURS, per_class: int = 5) -> Path:
    """``per_class`` images per class, mixed PNG/JPEG/BMP, sizes and modes (RGBA, L, P)."""
    for name, colour in classes.items():
        for i in range(per_class):
            ext = ("png", "jpg", "bmp", "png", "jpeg")[i % 5]
            mode = ("RGB", "RGB", "RGB", "RGBA", "RGB")[i % 5]
            write_image(root / name / f"img{i}.{ext}", colour, size=(10 + 3 * i, 14), mode=mode)
    return root


def with_a_broken_image(root: Path) -> Path:
    """``make_folder``'s image folder plus one file that is not an image (for ``skip_bad``)."""
    make_folder(root)
    (root / next(iter(COLOURS)) / "broken.png").write_bytes(b"not an image")
    return root


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    """An idx file as torchvision's MNIST reads it: 0, 0, type 0x08, ndim, big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def make_mnist(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 5, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_y = np.arange(n_train, dtype=np.uint8) % 10
    write_idx(raw / "train-images-idx3-ubyte", train_x, gz=gz)
    write_idx(raw / "train-labels-idx1-ubyte", train_y, gz=gz)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), gz=gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(n_test, dtype=np.uint8) % 10, gz=gz)
    return train_x, train_y


def make_cifar100(root: Path, n_train: int = 8, n_test: int = 4) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    # bytes keys and names, as some re-encoded copies have them
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)], b"coarse_label_names": [b"c"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


def mat_element(mtype: int, payload: bytes) -> bytes:
    return struct.pack("<II", mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def mat_matrix(name: str, array: np.ndarray, mat_class: int, data_type: int) -> bytes:
    """A level-5 miMATRIX element, laid out as MATLAB and scipy.io.savemat write it."""
    body = (
        mat_element(6, struct.pack("<II", mat_class, 0))  # array flags: class, no complex/global
        + mat_element(5, struct.pack(f"<{array.ndim}i", *array.shape))
        + mat_element(1, name.encode())
        + mat_element(data_type, array.tobytes(order="F"))
    )
    return mat_element(14, body)


def write_svhn_mat(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN-style .mat: X uint8 (32, 32, 3, N), y double (N, 1) in 1..10, zlib-compressed."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.float64).reshape(n, 1)
    header = b"MATLAB 5.0 MAT-file, written by a blitz test".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    x_el = mat_matrix("X", x, 9, 2)  # mxUINT8 stored as miUINT8
    compressed = zlib.compress(mat_matrix("y", y, 6, 9))  # mxDOUBLE stored as miDOUBLE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + x_el + struct.pack("<II", 15, len(compressed)) + compressed)
    return x, y


# ---- imagefolder -----------------------------------------------------------------------------

def test_imagefolder_tensor_path(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    bundle = load_imagefolder(root=root, image_size=16)
    assert isinstance(bundle.train, TensorSplit) and isinstance(bundle.test, TensorSplit)
    assert bundle.info.class_names == ("cat", "dog", "fish")
    assert bundle.info.input_shape == (3, 16, 16)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape[1:] == (3, 16, 16)
    # 5 per class, 20% held out per class (stratified): 4 train + 1 test each
    assert len(bundle.train) == 12 and len(bundle.test) == 3
    assert sorted(bundle.test.labels.tolist()) == [0, 1, 2]
    # Solid colours survive decoding: cat images are red (JPEG within a small tolerance).
    cats = bundle.train.images[bundle.train.labels == 0].float()
    assert (cats[:, 0].mean() > 240) and (cats[:, 1].mean() < 15)
    # mean/std measured on the training images: each channel is 255 in one class of three.
    assert bundle.info.mean == pytest.approx((1 / 3,) * 3, abs=0.02)
    assert bundle.info.std == pytest.approx(((2 / 9) ** 0.5,) * 3, abs=0.02)
    assert bundle.files == [root]


def test_imagefolder_split_is_seeded(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", per_class=10)
    a = load_imagefolder(root=root, split_seed=1, test_fraction=0.3)
    b = load_imagefolder(root=root, split_seed=1, test_fraction=0.3)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    assert len(a.test) == 9  # 3 of each class's 10
    # Images within a class are alike here, so compare which files went to test, through the seed.
    tests = {seed: imagefolder.stratified_split(imagefolder.scan(root)[1], 3, 0.3, seed)[1].paths for seed in range(5)}
    assert len({tuple(paths) for paths in tests.values()}) > 1


def test_imagefolder_path_under_root_and_test_path(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", per_class=2)
    bundle = load_imagefolder(root=tmp_path, path="train", test_path="val", normalize="half")
    assert len(bundle.train) == 15 and len(bundle.test) == 6
    assert bundle.info.mean == (0.5, 0.5, 0.5) and bundle.info.std == (0.5, 0.5, 0.5)
    assert bundle.files == [tmp_path / "train", tmp_path / "val"]


def test_imagefolder_grayscale(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    bundle = load_imagefolder(root=root, channels=1, image_size=28)
    assert bundle.info.input_shape == (1, 28, 28)
    assert bundle.train.images.shape[1:] == (1, 28, 28)
    assert len(bundle.info.mean) == 1 and len(bundle.info.std) == 1


def test_imagefolder_dataset_path(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    tensors = load_imagefolder(root=root, image_size=16)
    bundle = load_imagefolder(root=root, image_size=16, max_in_memory_mb=0.001)
    assert isinstance(bundle.train, Dataset) and not isinstance(bundle.train, TensorSplit)
    assert len(bundle.train) == 12 and len(bundle.test) == 3
    assert bundle.info == tensors.info  # same statistics from the streaming pass
    x, label = bundle.train[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16) and isinstance(label, int)
    # The same pixels as the tensor path (blitz normalizes and augments batches on the device).
    assert torch.equal(x, tensors.train.images[0])
    assert label == int(tensors.train.labels[0])
    # It goes through a DataLoader.
    images, labels = next(iter(torch.utils.data.DataLoader(bundle.train, batch_size=4)))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4,)


def test_imagefolder_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_imagefolder(root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(DataNotFoundError, match="test_path"):
        load_imagefolder(root=make_folder(tmp_path / "imgs"), test_path=str(tmp_path / "no_val"))


def test_imagefolder_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_imagefolder(root=tmp_path / "empty")
    message = str(info.value)
    assert str(tmp_path / "empty") in message and ".png" in message and ".jpg" in message
    assert info.value.exit_code == 1


def test_imagefolder_class_folders_without_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no files ending in"):
        load_imagefolder(root=tmp_path)
    make_folder(tmp_path, {"c": (1, 2, 3)})
    with pytest.raises(DataError, match="without images.*a, b"):
        load_imagefolder(root=tmp_path)


def test_imagefolder_loose_images(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png", (1, 2, 3))
    with pytest.raises(DataError, match="one subfolder per class"):
        load_imagefolder(root=tmp_path)


def test_imagefolder_corrupt_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    bad = root / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as info:
        load_imagefolder(root=root)
    assert str(bad) in str(info.value) and "skip_bad" in str(info.value)
    # The DataLoader path checks every file up front too.
    with pytest.raises(DataError, match="broken.png"):
        load_imagefolder(root=root, max_in_memory_mb=0)


@pytest.mark.parametrize("max_mb", [2048, 0])
def test_imagefolder_skip_bad(tmp_path: Path, max_mb: float) -> None:
    root = make_folder(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"garbage")
    good = root / "cat" / "img0.png"
    (root / "cat" / "truncated.png").write_bytes(good.read_bytes()[:40])
    with pytest.warns(UserWarning, match=r"Skipped 2 unreadable image\(s\); the first: .*(truncated|broken)\.png"):
        bundle = load_imagefolder(root=root, skip_bad=True, max_in_memory_mb=max_mb)
    assert len(bundle.train) + len(bundle.test) == 15


def test_imagefolder_mismatched_test_classes(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", {"cat": (1, 1, 1), "dog": (2, 2, 2), "bird": (3, 3, 3)}, per_class=1)
    with pytest.raises(DataError) as info:
        load_imagefolder(root=tmp_path, path="train", test_path="val")
    message = str(info.value)
    assert "fish" in message and "bird" in message and "only in" in message


def test_imagefolder_bad_options(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    for kwargs in ({"channels": 2}, {"normalize": "imagenet"}, {"test_fraction": 1.0}, {"image_size": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):  # blitz's load_data names the source
            load_imagefolder(root=root, **kwargs)


def test_imagefolder_too_few_for_a_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", per_class=1)
    with pytest.raises(DataError, match="test_path"):
        load_imagefolder(root=root)


def test_imagefolder_uses_threads_for_many_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imagefolder, "DECODE_THREADS", 4)
    root = make_folder(tmp_path / "imgs", per_class=30)
    (root / "fish" / "zz_broken.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Skipped 1"):
        bundle = load_imagefolder(root=root, skip_bad=True)
    assert len(bundle.train) + len(bundle.test) == 90
    # Order is by class then file, whatever the threads do.
    assert bundle.train.labels.tolist() == sorted(bundle.train.labels.tolist())


# ---- MNIST-format ----------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_end_to_end(tmp_path: Path, gz: bool) -> None:
    train_x, train_y = make_mnist(tmp_path, gz=gz)
    bundle = tvd.load_mnist(root=tmp_path)
    assert bundle.train.images.shape == (12, 1, 28, 28) and bundle.train.images.dtype == torch.uint8
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(train_x))
    assert bundle.train.labels.tolist() == train_y.tolist()
    assert len(bundle.test) == 5
    assert bundle.info.input_shape == (1, 28, 28) and bundle.info.num_classes == 10
    assert bundle.info.mean == (0.1307,)
    assert all(p.parent == tmp_path / "MNIST" / "raw" for p in bundle.files)


def test_torchvision_reads_our_mnist_fixture(tmp_path: Path) -> None:
    """The fixture is what torchvision itself reads, so the layout claim is checked too."""
    from torchvision.datasets import MNIST

    train_x, train_y = make_mnist(tmp_path)
    ds = MNIST(str(tmp_path), train=True, download=False)
    assert torch.equal(ds.data, torch.from_numpy(train_x)) and ds.targets.tolist() == train_y.tolist()


def test_fashionmnist_and_kmnist_folders(tmp_path: Path) -> None:
    make_mnist(tmp_path, folder="FashionMNIST")
    make_mnist(tmp_path, folder="KMNIST")
    fashion = tvd.load_fashionmnist(root=tmp_path)
    assert fashion.info.class_names[9] == "Ankle boot"
    assert tvd.load_kmnist(root=tmp_path).info.class_names[0] == "o"
    with pytest.raises(DataNotFoundError):
        tvd.load_mnist(root=tmp_path)  # only the other two are there


def test_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        tvd.load_mnist(root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "--download" in message and info.value.exit_code == 2


def test_mnist_truncated_and_mismatched(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated") as info:
        tvd.load_mnist(root=tmp_path)
    assert str(images) in str(info.value) and info.value.exit_code == 1
    write_idx(images, np.zeros((4, 28, 28), dtype=np.uint8))  # 4 images, 5 labels
    with pytest.raises(DataError, match="4 images"):
        tvd.load_mnist(root=tmp_path)
    images.write_bytes(b"\x08\x03 definitely not idx")
    with pytest.raises(DataError, match="magic"):
        tvd.load_mnist(root=tmp_path)


def test_mnist_download_failure_is_data_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFoundError, match="Could not download MNIST") as info:
        tvd.load_mnist(root=tmp_path, download=True)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)


# ---- CIFAR-100 ---------------------------------------------------------------------------------

def test_cifar100(tmp_path: Path) -> None:
    folder = make_cifar100(tmp_path)
    bundle = tvd.load_cifar100(root=tmp_path)
    assert bundle.train.images.shape == (8, 3, 32, 32) and len(bundle.test) == 4
    assert bundle.info.num_classes == 100 and bundle.info.class_names[5] == "fine5"
    entry = pickle.loads((folder / "train").read_bytes())
    assert bundle.train.labels.tolist() == entry["fine_labels"]
    assert torch.equal(bundle.train.images.reshape(8, -1), torch.from_numpy(entry["data"]))


def test_cifar100_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        tvd.load_cifar100(root=tmp_path)
    assert str(tmp_path / "cifar-100-python" / "train") in str(info.value) and "--download" in str(info.value)
    folder = make_cifar100(tmp_path)
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["only one"]}))
    with pytest.raises(DataError, match="100 'fine_label_names'"):
        tvd.load_cifar100(root=tmp_path)
    shutil.rmtree(folder)
    folder = make_cifar100(tmp_path)  # a good meta again: the truncated split must be what is named
    (folder / "test").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"cifar-100-python/test"):
        tvd.load_cifar100(root=tmp_path)


# ---- SVHN --------------------------------------------------------------------------------------

def test_svhn(tmp_path: Path) -> None:
    x, y = write_svhn_mat(tmp_path / "train_32x32.mat", 12, seed=0)
    write_svhn_mat(tmp_path / "test_32x32.mat", 5, seed=1)
    bundle = tvd.load_svhn(root=tmp_path)
    assert bundle.train.images.shape == (12, 3, 32, 32) and len(bundle.test) == 5
    # torchvision's conversion: (H, W, C, N) -> (N, C, H, W) and label 10 -> 0
    assert torch.equal(bundle.train.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    expected = y.reshape(-1).astype(int) % 10
    assert bundle.train.labels.tolist() == expected.tolist()
    assert bundle.info.class_names == tuple("0123456789")


def test_svhn_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        tvd.load_svhn(root=tmp_path)
    assert str(tmp_path / "train_32x32.mat") in str(info.value) and "--download" in str(info.value)
    write_svhn_mat(tmp_path / "train_32x32.mat", 3, seed=0)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="test_32x32.mat"):
        tvd.load_svhn(root=tmp_path)
    with pytest.raises(DataNotFoundError, match="extra_32x32.mat"):
        tvd.load_svhn(root=tmp_path, extra=True)


# ---- through the CLI ---------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    from blitz.plugin_host import reset_host

    monkeypatch.setenv("BLITZ_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("BLITZ_DATA_ROOT", raising=False)
    reset_host()  # a host cached before these plugins existed would not know them
    return CliRunner()


def test_cli_run_and_verify_imagefolder(cli: CliRunner, tmp_path: Path) -> None:
    from blitz.cli import app

    root = make_folder(tmp_path / "imgs", per_class=6)
    result = cli.invoke(app, [
        "run", "--dataset", "imagefolder", "--data-root", str(root), "--model", "lenet",
        "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "run"),
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run").is_dir()

    result = cli.invoke(app, ["data", "verify", "imagefolder", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "3 classes" in result.output

    (tmp_path / "empty").mkdir()
    result = cli.invoke(app, ["data", "verify", "imagefolder", "--data-root", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert str(tmp_path / "empty") in result.output

    result = cli.invoke(app, ["data", "verify", "imagefolder", "--data-root", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert str(tmp_path / "nowhere") in result.output


def test_cli_verify_mnist(cli: CliRunner, tmp_path: Path) -> None:
    from blitz.cli import app

    make_mnist(tmp_path)
    result = cli.invoke(app, ["data", "verify", "mnist", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["data", "verify", "fashionmnist", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "--download" in result.output


# ---- folders users get wrong (a review, the tenth session) ------------------------------------

def test_imagefolder_refuses_split_folders_taken_for_classes(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "train")
    make_folder(tmp_path / "data" / "test", per_class=2)
    write_image(tmp_path / "data" / "__MACOSX" / "junk.png", (1, 1, 1))  # a zip's stray folder beside them
    with pytest.raises(UsageError) as info:
        load_imagefolder(root=tmp_path / "data")
    message = str(info.value)
    assert "holds split folders (test, train)" in message
    assert f"--data-root '{tmp_path / 'data' / 'train'}' --dataset-arg test_path='{tmp_path / 'data' / 'test'}'" in message


def test_imagefolder_refuses_a_single_class(tmp_path: Path) -> None:
    make_folder(tmp_path / "unzipped" / "photos")  # the archive's own top folder, holding the classes
    with pytest.raises(UsageError, match=r"one class folder, 'photos': a classifier needs at least two\. .*--data-root '.*photos'"):
        load_imagefolder(root=tmp_path / "unzipped")


def test_imagefolder_skips_hidden_subfolders_and_follows_a_link_loop_once(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    write_image(root / "cat" / ".ipynb_checkpoints" / "copy.png", (9, 9, 9))
    (root / "cat" / "self").symlink_to(root / "cat")  # a loop: cat/self/self/... is cat again
    (root / "dog" / "up").symlink_to(root)  # and a link up: the cat and fish images must not count as dogs
    (root / "fish" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    write_image(tmp_path / "elsewhere" / "kept.png", (0, 0, 200))  # a link out of the tree is followed
    bundle = load_imagefolder(root=root, test_fraction=0.2)
    labels = torch.cat([bundle.train.labels, bundle.test.labels])
    assert torch.bincount(labels).tolist() == [5, 5, 6]


def test_imagefolder_refuses_a_class_emptied_by_skip_bad(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    for image in (root / "dog").iterdir():
        image.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Skipped 5"), pytest.raises(DataError, match=r"class\(es\) dog .*after skipping 5"):
        load_imagefolder(root=root, skip_bad=True)


@pytest.mark.parametrize(
    ("option", "value"),
    [("skip_bad", "no"), ("image_size", True), ("channels", 3.0), ("split_seed", 0.5), ("max_in_memory_mb", "lots")],
)
def test_imagefolder_refuses_options_of_the_wrong_type(tmp_path: Path, option: str, value: object) -> None:
    root = make_folder(tmp_path / "imgs")
    with pytest.raises(ValueError, match=option):  # blitz's load_data turns it into a usage error naming the source
        load_imagefolder(root=root, **{option: value})


def test_a_float_image_is_refused_not_read_as_black(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F").save(root / "cat" / "float.tiff")
    with pytest.raises(DataError, match=r"float\.tiff.*32-bit float pixels"):
        load_imagefolder(root=root)


def test_a_dataloader_workers_data_error_is_one_line(tmp_path: Path) -> None:
    from blitz.batches import LoaderBatches
    from blitz.components import DataInfo
    from blitz.config import AugmentConfig

    class Unreadable(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int):
            raise DataError(f"Cannot read image 'img{index}.png' (truncated). Replace or delete the file.")

    batches = LoaderBatches(
        Unreadable(), DataInfo(num_classes=2, input_shape=(3, 4, 4), class_names=("a", "b")), device=torch.device("cpu"), batch_size=4,
        shuffle=False, seed=0, augment=AugmentConfig(), num_workers=1,
    )
    with pytest.raises(DataError) as info:
        next(iter(batches.epoch(1)))
    assert str(info.value) == "Cannot read image 'img0.png' (truncated). Replace or delete the file."


def test_data_verify_lists_the_classes_of_a_folder_whose_name_looks_like_markup(tmp_path: Path) -> None:
    from blitz.cli import app

    root = make_folder(tmp_path / "mk[/]x")
    result = CliRunner().invoke(app, ["data", "verify", "imagefolder", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "classes: cat, dog, fish" in result.output and "mk[/]x" in result.output


def test_imagefolder_split_stays_when_images_are_added_or_the_folder_moves(tmp_path: Path) -> None:
    """Added images must not reshuffle the held-out split: a run's test images would become
    training images of the next run (or be scored by `blitz eval` after training on them)."""
    root = make_folder(tmp_path / "imgs", per_class=20)

    def held_out(folder: Path) -> dict[str, set[str]]:
        classes, files = imagefolder.scan(folder)
        _, test = imagefolder.stratified_split(files, len(classes), 0.2, 0, folder)
        return {c: {p.relative_to(folder).as_posix() for p, label in zip(test.paths, test.labels) if classes[label] == c}
                for c in classes}

    before = held_out(root)
    assert [len(v) for v in before.values()] == [4, 4, 4]
    for i in range(5):
        write_image(root / "cat" / f"new{i}.png", (200, 0, 0))
    after = held_out(root)
    assert after["dog"] == before["dog"] and after["fish"] == before["fish"]
    assert len(after["cat"]) == 5 and len(after["cat"] - before["cat"] - {f"cat/new{i}.png" for i in range(5)}) <= 1
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert held_out(moved) == after


def test_imagefolder_images_that_do_not_fit_in_memory_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "imgs")
    real_empty = torch.empty

    def no_memory(*args, **kwargs):
        if kwargs.get("dtype") is torch.uint8:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(imagefolder.torch, "empty", no_memory)
    with pytest.raises(DataError, match=r"decoded images need .* MB, which this machine could not allocate .*max_in_memory_mb"):
        load_imagefolder(root=root, max_in_memory_mb=10**6)


def test_cifar10_reads_the_official_python2_pickles(tmp_path: Path) -> None:
    """The pixels come as latin1 text (Python 2's str), the arrays from numpy 1's numpy.core."""
    from blitz.plugins.cifar10 import read_batch

    images = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)  # every byte value
    write_py2_cifar_batch(tmp_path / "data_batch_1", images, [0, 9, 4])
    data, labels = read_batch(tmp_path / "data_batch_1")
    assert np.array_equal(data.reshape(3, -1), images) and data.flags.writeable and labels.tolist() == [0, 9, 4]


def test_cifar10_archive_downloaded_but_not_unpacked_says_so(tmp_path: Path) -> None:
    from blitz.plugins.cifar10 import load_cifar10

    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match=r"the archive '.*cifar-10-python\.tar\.gz' is there: unpack it where it is \(tar xzf"):
        load_cifar10(root=tmp_path)


def test_imagefolder_level_advice_names_the_option_used_and_a_class_named_train_stays(tmp_path: Path) -> None:
    make_folder(tmp_path / "ds" / "train")
    make_folder(tmp_path / "ds" / "val", per_class=2)
    with pytest.raises(UsageError, match=r"pass --dataset-arg path='.*ds/train' --dataset-arg test_path='.*ds/val'"):
        load_imagefolder(root=tmp_path / "elsewhere", path=str(tmp_path / "ds"))
    vehicles = tmp_path / "vehicles"
    for name in ("train", "bus", "car"):  # 'train' is a class here, its images in subfolders
        write_image(vehicles / name / "side" / "a.png", (10, 10, 10))
        write_image(vehicles / name / "front" / "b.png", (20, 20, 20))
    assert load_imagefolder(root=vehicles, test_fraction=0.5).info.class_names == ("bus", "car", "train")


def test_imagefolder_does_not_follow_a_link_to_the_root_of_the_filesystem(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    (root / "cat" / "everything").symlink_to("/")
    bundle = load_imagefolder(root=root)
    assert len(bundle.train) + len(bundle.test) == 15


def test_random_data_says_download_has_nothing_to_fetch():
    import warnings

    from blitz.plugins.random_data import load_random

    with pytest.warns(UserWarning, match="--download has nothing to fetch for the random data source"):
        load_random(download=True, length=4, test_length=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_random(length=4, test_length=2)


def test_data_root_given_for_a_source_that_reads_no_files_is_warned_of(tmp_path: Path) -> None:
    from blitz.cli import app

    with pytest.warns(UserWarning) as caught:
        result = CliRunner().invoke(app, ["run", "--dataset", "random", "--data-root", str(tmp_path), "--epochs", "1",
                                          "--dataset-arg", "length=8", "--dataset-arg", "test_length=4"])
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught] == [
        "--data-root is not used by dataset 'random' (it reads no files): drop --data-root."]


@pytest.mark.parametrize("command", ["data verify", "eval"])
def test_data_verify_and_eval_warn_of_a_data_root_their_source_does_not_read(command: str, tmp_path: Path) -> None:
    import warnings

    from blitz.cli import app

    small = ["--dataset-arg", "length=8", "--dataset-arg", "test_length=4"]
    if command == "eval":
        run = tmp_path / "run"
        trained = CliRunner().invoke(app, ["run", "--dataset", "random", "--epochs", "1", *small, "--out", str(run)])
        assert trained.exit_code == 0, trained.output
        args = ["eval", str(run)]
    else:
        args = ["data", "verify", "random", *small]
    with pytest.warns(UserWarning) as caught:
        result = CliRunner().invoke(app, [*args, "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught] == [
        "--data-root is not used by dataset 'random' (it reads no files): drop --data-root."]
    with warnings.catch_warnings():  # without the flag: nothing to say
        warnings.simplefilter("error")
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_only_the_data_root_flag_is_warned_of_and_only_for_sources_registered_to_read_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config file's or $BLITZ_DATA_ROOT's folder is a default for every run (a run's own
    config.toml holds one): said nothing of, as a flag for a source that reads files."""
    from blitz.resolve import CLIOverrides, resolve_config, unused_data_root

    def warning(**values: object) -> str | None:
        resolved = resolve_config(overrides=CLIOverrides(values=values))
        return unused_data_root(resolved.config, resolved.provenance)

    assert warning(dataset="random", data_root=tmp_path) is not None
    assert warning(dataset="cifar10", data_root=tmp_path) is None
    assert warning(dataset="random") is None
    monkeypatch.setenv("BLITZ_DATA_ROOT", str(tmp_path))
    assert warning(dataset="random") is None
    config = tmp_path / "c.toml"
    config.write_text(f'dataset = "random"\ndata_root = "{tmp_path}"\n')
    resolved = resolve_config(config_file=config)
    assert unused_data_root(resolved.config, resolved.provenance) is None


def test_imagefolder_option_errors_name_the_data_source(tmp_path: Path) -> None:
    """A bad --dataset-arg of imagefolder is reported as every source's is: the source and its options."""
    from typer.testing import CliRunner

    from blitz.cli import app

    root = make_folder(tmp_path / "imgs")
    result = CliRunner().invoke(app, ["run", "--dataset", "imagefolder", "--data-root", str(root),
                                      "--dataset-arg", "normalize=foo", "--strategy", "cpu"])
    assert result.exit_code == 2
    assert ("Dataset 'imagefolder' could not be built with options {'normalize': 'foo'}: normalize must be "
            "'auto' or 'half', got 'foo'") in " ".join(result.output.split())


@pytest.mark.parametrize("max_mb", [2048, 0.0001])  # tensors in memory, or files read as needed
def test_imagefolder_skipped_files_are_left_out_before_the_split(tmp_path: Path, max_mb: float) -> None:
    """With skip_bad the readable images are split, as if the unreadable ones were absent: a
    class whose held-out image was unreadable still has one in the test split (it had none)."""
    from blitz.plugins.imagefolder import scan, stratified_split

    root = make_folder(tmp_path / "imgs", per_class=3)
    classes, files = scan(root)
    _, held_out = stratified_split(files, len(classes), 0.2, 0, root)
    victim = next(p for p, label in zip(held_out.paths, held_out.labels) if label == 0)
    victim.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="Skipped 1"):
        bundle = load_imagefolder(root=root, skip_bad=True, max_in_memory_mb=max_mb)
    assert len(bundle.train) + len(bundle.test) == len(files) - 1
    test_labels = bundle.test.labels.tolist() if isinstance(bundle.test, TensorSplit) else bundle.test.files.labels
    assert set(test_labels) == set(range(len(classes)))


def test_imagefolder_statistics_are_the_training_images_whether_in_memory_or_not(tmp_path: Path) -> None:
    root = with_a_broken_image(tmp_path / "imgs")
    with pytest.warns(UserWarning):
        in_memory = load_imagefolder(root=root, skip_bad=True)
    with pytest.warns(UserWarning):
        from_disk = load_imagefolder(root=root, skip_bad=True, max_in_memory_mb=0.0001)
    assert not isinstance(from_disk.train, TensorSplit)
    assert len(from_disk.train) == len(in_memory.train) and len(from_disk.test) == len(in_memory.test)
    assert from_disk.info.mean == pytest.approx(in_memory.info.mean, abs=1e-4)
    assert from_disk.info.std == pytest.approx(in_memory.info.std, abs=1e-4)
    train_only = in_memory.train.images.double().div(255)
    assert in_memory.info.mean == pytest.approx(train_only.mean(dim=(0, 2, 3)).tolist(), abs=1e-4)


# ---- only the splits asked for (`blitz eval` reads only the test split) ------------------------

def _only_test_files(folder: Path, train_names: tuple[str, ...]) -> None:
    for name in train_names:
        (folder / name).unlink()


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "mnist", "svhn"])
def test_a_source_asked_for_the_test_split_needs_and_reads_only_its_files(tmp_path: Path, source: str) -> None:
    from blitz.plugins.cifar10 import TRAIN_FILES, load_cifar10
    from tests.conftest import make_cifar

    if source == "cifar10":
        folder, load, train_names = make_cifar(tmp_path) / "cifar-10-batches-py", load_cifar10, TRAIN_FILES
    elif source == "cifar100":
        folder, load, train_names = make_cifar100(tmp_path), tvd.load_cifar100, ("train",)
    elif source == "mnist":
        make_mnist(tmp_path)
        folder, load = tmp_path / "MNIST" / "raw", tvd.load_mnist
        train_names = tvd.MNIST_FILES["train"]
    else:
        write_svhn_mat(tmp_path / "train_32x32.mat", 6, seed=0)
        write_svhn_mat(tmp_path / "test_32x32.mat", 5, seed=1)
        folder, load, train_names = tmp_path, tvd.load_svhn, ("train_32x32.mat",)
    both = load(root=tmp_path)
    _only_test_files(folder, train_names)
    tested = load(root=tmp_path, splits=("test",))
    assert torch.equal(tested.test.images, both.test.images) and torch.equal(tested.test.labels, both.test.labels)
    assert len(tested.train) == 0 and tested.train.images.shape[1:] == both.train.images.shape[1:]
    assert tested.info == both.info
    assert tested.files and all(path.is_file() for path in tested.files)  # what it read, for `data verify`
    with pytest.raises(DataNotFoundError):  # the training files are still needed to train
        load(root=tmp_path)


@pytest.mark.parametrize("separate_test", [False, True])
def test_imagefolder_asked_for_the_test_split_decodes_no_training_image(tmp_path: Path, separate_test: bool) -> None:
    root = make_folder(tmp_path / "imgs")
    options = {"test_path": str(make_folder(tmp_path / "held"))} if separate_test else {"test_fraction": 0.4}
    both = load_imagefolder(root=root, image_size=8, **options)
    train_files = imagefolder.scan(root)[1] if separate_test else imagefolder.stratified_split(
        imagefolder.scan(root)[1], len(COLOURS), 0.4, 0, root)[0]
    for path in train_files.paths:  # unreadable now: decoding any would fail
        path.write_bytes(b"not an image")
    tested = load_imagefolder(root=root, image_size=8, splits=("test",), **options)
    assert torch.equal(tested.test.images, both.test.images) and torch.equal(tested.test.labels, both.test.labels)
    assert len(tested.train) == 0 and tested.info.class_names == both.info.class_names
    with pytest.raises(DataError, match="not an image|cannot identify"):
        load_imagefolder(root=root, image_size=8, **options)


def test_imagefolder_skipping_bad_files_decodes_both_sides_for_the_same_held_out_split(tmp_path: Path) -> None:
    """With skip_bad the held-out split is drawn from the readable images of both sides, so a
    test-only load must still look at the training images to draw the same one."""
    root = with_a_broken_image(tmp_path / "imgs")
    with pytest.warns(UserWarning):
        both = load_imagefolder(root=root, image_size=8, skip_bad=True, test_fraction=0.4)
    with pytest.warns(UserWarning):
        tested = load_imagefolder(root=root, image_size=8, skip_bad=True, test_fraction=0.4, splits=("test",))
    assert torch.equal(tested.test.images, both.test.images) and torch.equal(tested.test.labels, both.test.labels)


def test_blitz_passes_splits_only_to_a_data_source_that_names_them(tmp_path: Path) -> None:
    from blitz import DataBundle, DataInfo
    from blitz.build import load_data
    from blitz.config import RunConfig
    from blitz.catalog import Resolved
    from blitz.registry import Entry

    seen: list[dict] = []
    info = DataInfo(num_classes=2, input_shape=(3, 4, 4), class_names=("a", "b"))

    def bundle() -> DataBundle:
        split = TensorSplit(torch.zeros((2, 3, 4, 4), dtype=torch.uint8), torch.tensor([0, 1]))
        return DataBundle(train=split, test=split, info=info)

    def with_splits(*, root: Path | None, download: bool, splits: tuple[str, ...] = ("train", "test")) -> DataBundle:
        seen.append({"splits": splits})
        return bundle()

    def with_any_keyword(*, root: Path | None, download: bool, **options: object) -> DataBundle:
        seen.append(options)
        return bundle()

    config = RunConfig(dataset="x")
    for factory in (with_splits, with_any_keyword):
        resolved = Resolved("x", Entry("x", factory, plugin="test plugin"), {}, "")
        load_data(resolved, config, splits=("test",))
        load_data(resolved, config)
    assert seen == [{"splits": ("test",)}, {"splits": ("train", "test")}, {}, {}]


@pytest.mark.parametrize("command", ["run", "data verify"])
def test_a_data_root_that_is_a_file_is_named_as_such(tmp_path: Path, command: str) -> None:
    """It read "CIFAR-10 not found: looked for '<file>/cifar-10-batches-py/data_batch_1'"."""
    from blitz.cli import app

    afile = tmp_path / "passwd"
    afile.write_text("x")
    args = ["run", "--dataset", "cifar10", "--epochs", "1"] if command == "run" else ["data", "verify", "cifar10"]
    result = CliRunner().invoke(app, [*args, "--data-root", str(afile)])
    assert result.exit_code == 2, result.output
    assert f"The data root '{afile}' is a file, not a folder: give the folder that holds the data" in " ".join(result.output.split())
