"""CIFAR-10 from the standard ``cifar-10-batches-py/`` folder (the official "python version").

Files are checked by structure (keys, shapes, dtypes, label range, counts), not by md5: a
faithful copy whose pickles were written anew has other md5 sums but the same pixels.
"""

from __future__ import annotations

import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blitz import DataBundle, DataError, DataInfo, DataNotFoundError, Register, TensorSplit, hookimpl

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The tutorial's short class names, in label order.
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)  # measured on the training set, pixel values in [0, 1]
STD = (0.2470, 0.2435, 0.2616)


# What CIFAR's python pickles refer to: numpy arrays, and protocol 2's way of writing bytes
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, lists, dicts, strings and numbers only: a pickle may
    otherwise call any function, so a hostile file could run code. (A damaged file can still make
    numpy's unpickling corrupt the process's memory, about once in 5,000 random byte flips: a
    check of the whole stream before loading, which prevents it, costs ~0.07 s a file.)"""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which no CIFAR file does")
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    """A CIFAR python-version pickle, read with :class:`_CifarUnpickler`."""
    with path.open("rb") as f:
        return _CifarUnpickler(f, encoding="latin1").load()


def read_batch(path: Path, *, num_classes: int = 10, image_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images (N, C, H, W), int64 labels); DataError names a bad file."""
    try:
        entry: Any = load_pickle(path)
    except FileNotFoundError:
        raise DataNotFoundError(f"Missing CIFAR file '{path}'.") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"Cannot read '{path}': not a CIFAR batch file ({type(exc).__name__}: {exc}). Replace the file.") from None
    if isinstance(entry, dict):  # keys are str in the originals, bytes in some re-encodings
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if not isinstance(entry, dict) or "data" not in entry:
        raise DataError(f"'{path}' is not a CIFAR batch file: no 'data' key.")
    label_key = "labels" if "labels" in entry else "fine_labels" if "fine_labels" in entry else None
    if label_key is None:
        raise DataError(f"'{path}' is not a CIFAR batch file: no 'labels' key.")
    data = entry["data"]
    size = int(np.prod(image_shape))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        got = f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        raise DataError(f"'{path}': 'data' should be uint8 of shape (N, {size}), got {got}.")
    try:
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):  # a damaged file: text or objects where numbers were
        raise DataError(f"'{path}': '{label_key}' is not a list of class indices. Replace the file.") from None
    if labels.shape != (data.shape[0],):
        count = labels.shape[0] if labels.ndim == 1 else f"labels of shape {labels.shape}, not"
        raise DataError(f"'{path}': {data.shape[0]} images but {count} labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"'{path}': labels range {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}.")
    return data.reshape(-1, *image_shape), labels


def read_split(folder: Path, files: tuple[str, ...]) -> TensorSplit:
    images, labels = zip(*(read_batch(folder / name) for name in files))
    return TensorSplit(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def locate(root: Path) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (or ``root`` itself if it is that folder)."""
    for candidate in (root / FOLDER, root):
        if (candidate / TEST_FILES[0]).exists() or (candidate / TRAIN_FILES[0]).exists():
            return candidate
    return root / FOLDER


def fetch_archive(root: Path) -> None:
    """Download and unpack the official archive into ``root`` (where a network exists)."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    try:
        urllib.request.urlretrieve(URL, archive)
    except OSError as exc:
        raise DataNotFoundError(
            f"Could not download CIFAR-10 from {URL} ({exc}). Without a network, copy the "
            f"'{FOLDER}' folder into '{root}' yourself."
        ) from None
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()


def load_cifar10(*, root: Path | None, download: bool = False) -> DataBundle:
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes."""
    root = Path(root) if root is not None else Path("data")
    folder = locate(root)
    missing = [name for name in (*TRAIN_FILES, *TEST_FILES) if not (folder / name).is_file()]
    if missing and download:
        fetch_archive(root)
        folder = locate(root)
        missing = [name for name in (*TRAIN_FILES, *TEST_FILES) if not (folder / name).is_file()]
    if missing:
        archive = next((a for a in (root / "cifar-10-python.tar.gz", folder.parent / "cifar-10-python.tar.gz") if a.is_file()), None)
        if archive is not None:  # downloaded by hand, not unpacked
            raise DataNotFoundError(
                f"CIFAR-10 not found: looked for '{folder / missing[0]}', but the archive '{archive}' is there: "
                f"unpack it where it is (tar xzf '{archive}' -C '{archive.parent}')."
            )
        raise DataNotFoundError(
            f"CIFAR-10 not found: looked for '{folder / missing[0]}'. Put the '{FOLDER}' folder under "
            "the data root (--data-root DIR or $BLITZ_DATA_ROOT), or add --download to 'blitz run' where a network exists."
        )
    train = read_split(folder, TRAIN_FILES)
    test = read_split(folder, TEST_FILES)
    info = DataInfo(num_classes=10, input_shape=(3, 32, 32), class_names=CLASSES, mean=MEAN, std=STD)
    files = [folder / name for name in (*TRAIN_FILES, *TEST_FILES)]
    return DataBundle(train=train, test=test, info=info, files=files)


@hookimpl
def register_datasets(register: Register) -> None:
    register("cifar10", load_cifar10, description="CIFAR-10: 60,000 32x32 colour images in 10 classes")
