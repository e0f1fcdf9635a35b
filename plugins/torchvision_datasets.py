"""torchvision's small classic datasets, read from the files torchvision itself downloads.

``mnist``, ``fashionmnist``, ``kmnist``, ``cifar100`` and ``svhn``, each held whole as a uint8
tensor per split (the tensor-resident path). The files are found where torchvision puts them
under the data root (``<root>/MNIST/raw/...``, ``<root>/cifar-100-python/...``,
``<root>/train_32x32.mat``) and checked by structure (magic numbers, shapes, dtypes, counts,
label ranges), not by md5, as in ``blitz.plugins.cifar10``: a faithful copy re-written by
another tool has other md5 sums but the same pixels. Only ``--download`` touches the network,
through torchvision's own downloaders.

The files are parsed here rather than through ``torchvision.datasets.*`` because those classes
md5-check some files (SVHN, CIFAR-100), need scipy for SVHN's ``.mat`` files (not a blitz
dependency), and fail with asserts or a generic "Dataset not found" instead of naming the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blitz import DataBundle, DataError, DataInfo, DataNotFoundError, Register, TensorSplit, hookimpl
from blitz.plugins.cifar10 import load_pickle, read_batch

WHERE = "the data root (--data-root DIR or $BLITZ_DATA_ROOT)"


def default_root(root: Path | None) -> Path:
    return Path(root) if root is not None else Path("data")


def splits_read(splits: tuple[str, ...]) -> tuple[list[str], str]:
    """The splits of ``splits`` to read, in train-test order, and the one whose files locate the
    folder (train where both are read)."""
    read = [split for split in ("train", "test") if split in splits]
    return read, read[0] if read else "train"


def download_failed(name: str, exc: BaseException, where: Path) -> DataNotFoundError:
    # torchvision's messages span lines ("Error downloading X:\nTried <mirror>, got:\n<error>").
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    return DataNotFoundError(
        f"Could not download {name} ({detail}). Without a network, put the files in '{where}' yourself."
    )


def not_found(name: str, path: Path, folder_hint: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} not found: looked for '{path}'. Put {folder_hint} under {WHERE}, "
        "or add --download to 'blitz run' where a network exists."
    )


# ---- MNIST-format datasets (idx files) -----------------------------------------------------

@dataclass(frozen=True)
class MnistFormat:
    """One MNIST-like dataset: torchvision's class name (its folder) and what blitz reports."""

    name: str  # blitz's name
    folder: str  # torchvision's class name: files live in <root>/<folder>/raw/
    title: str
    classes: tuple[str, ...]
    mean: float
    std: float


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_LIKE = {
    "mnist": MnistFormat("mnist", "MNIST", "MNIST", tuple(str(d) for d in range(10)), 0.1307, 0.3081),
    "fashionmnist": MnistFormat(
        "fashionmnist", "FashionMNIST", "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.2860, 0.3530,
    ),
    "kmnist": MnistFormat(
        "kmnist", "KMNIST", "Kuzushiji-MNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        0.1918, 0.3483,
    ),
}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of uint8 (the MNIST format, optionally gzipped) with ``ndim`` dimensions."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Cannot read '{path}' ({type(exc).__name__}: {exc}). Replace the file.") from None
    # Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then each
    # dimension as a big-endian uint32.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"'{path}' is not an idx file (bad magic number). Replace the file.")
    if raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(
            f"'{path}': expected uint8 data with {ndim} dimension(s) (type 0x08), got type 0x{raw[2]:02x} "
            f"with {raw[3]}. Is it the right file?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"'{path}' is truncated: the header is incomplete. Replace the file.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"'{path}' is truncated or padded: {len(raw) - header:,} data bytes for shape {dims} "
            f"({expected:,} expected). Replace the file."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def mnist_file(folder: Path, name: str) -> Path:
    """``name`` in ``folder``, or its ``.gz`` when only that is there."""
    plain = folder / name
    gz = folder / f"{name}.gz"
    return gz if not plain.is_file() and gz.is_file() else plain


def locate_mnist(root: Path, fmt: MnistFormat, split: str = "train") -> Path:
    """The folder with the idx files: ``<root>/<Folder>/raw`` (torchvision), or two fallbacks;
    found by ``split``'s images file."""
    for candidate in (root / fmt.folder / "raw", root / fmt.folder, root):
        if mnist_file(candidate, MNIST_FILES[split][0]).is_file():
            return candidate
    return root / fmt.folder / "raw"


def read_mnist_split(folder: Path, split: str, fmt: MnistFormat) -> tuple[TensorSplit, list[Path]]:
    image_path, label_path = (mnist_file(folder, name) for name in MNIST_FILES[split])
    images = read_idx(image_path, 3)
    labels = read_idx(label_path, 1).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise DataError(f"'{image_path}': images are {images.shape[1]}x{images.shape[2]}, not 28x28.")
    if len(images) != len(labels):
        raise DataError(f"'{image_path}' holds {len(images):,} images but '{label_path}' {len(labels):,} labels.")
    if labels.size and labels.max() >= len(fmt.classes):
        raise DataError(f"'{label_path}': labels up to {labels.max()}, outside 0..{len(fmt.classes) - 1}.")
    return (
        TensorSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels)),
        [image_path, label_path],
    )


def mnist_loader(fmt: MnistFormat) -> Callable[..., DataBundle]:
    def load(*, root: Path | None, download: bool = False, splits: tuple[str, ...] = ("train", "test")) -> DataBundle:
        root = default_root(root)
        read, found_by = splits_read(splits)
        folder = locate_mnist(root, fmt, found_by)
        names = [name for split in read for name in MNIST_FILES[split]]
        missing = [n for n in names if not mnist_file(folder, n).is_file()]
        if missing and download:
            import torchvision.datasets

            try:  # downloads all four files into <root>/<Folder>/raw
                getattr(torchvision.datasets, fmt.folder)(str(root), train=True, download=True)
            except Exception as exc:  # URLError, RuntimeError("Error downloading ..."), ...
                raise download_failed(fmt.title, exc, root / fmt.folder / "raw") from None
            folder = locate_mnist(root, fmt, found_by)
            missing = [n for n in names if not mnist_file(folder, n).is_file()]
        if missing:
            raise not_found(
                fmt.title, folder / missing[0],
                f"the idx files ({', '.join(names)}, optionally .gz) in '{fmt.folder}/raw/'",
            )
        loaded = {split: read_mnist_split(folder, split, fmt) for split in read}
        skipped = (TensorSplit.empty((1, 28, 28)), [])
        (train, train_files), (test, test_files) = (loaded.get(split, skipped) for split in MNIST_FILES)
        info = DataInfo(
            num_classes=len(fmt.classes), input_shape=(1, 28, 28), class_names=fmt.classes,
            mean=(fmt.mean,), std=(fmt.std,),
        )
        return DataBundle(train=train, test=test, info=info, files=train_files + test_files)

    load.__name__ = f"load_{fmt.name}"
    load.__doc__ = (f"{fmt.title}: 60,000 training and 10,000 test 28x28 grayscale images, 10 classes. "
                    "Only the files of ``splits`` are needed and read.")
    return load


load_mnist = mnist_loader(MNIST_LIKE["mnist"])
load_fashionmnist = mnist_loader(MNIST_LIKE["fashionmnist"])
load_kmnist = mnist_loader(MNIST_LIKE["kmnist"])


# ---- CIFAR-100 (python pickles) ------------------------------------------------------------

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # measured on the training set, pixel values in [0, 1]
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def read_cifar100_meta(path: Path) -> tuple[str, ...]:
    """The 100 fine class names, in label order."""
    try:
        meta: Any = load_pickle(path)
    except Exception as exc:  # truncated or not a pickle
        raise DataError(f"Cannot read '{path}': not a CIFAR-100 meta file ({type(exc).__name__}: {exc}). Replace the file.") from None
    if isinstance(meta, dict):  # keys and names are str in the originals, bytes in some re-encodings
        meta = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in meta.items()}
    names = meta.get("fine_label_names") if isinstance(meta, dict) else None
    if isinstance(names, list):
        names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if not isinstance(names, list) or len(names) != 100 or not all(isinstance(n, str) for n in names):
        raise DataError(f"'{path}' is not a CIFAR-100 meta file: no list of 100 'fine_label_names'.")
    return tuple(names)


def locate_cifar100(root: Path, split: str = "train") -> Path:
    for candidate in (root / CIFAR100_FOLDER, root):
        if (candidate / "meta").is_file() and (candidate / split).is_file():
            return candidate
    return root / CIFAR100_FOLDER


def load_cifar100(*, root: Path | None, download: bool = False, splits: tuple[str, ...] = ("train", "test")) -> DataBundle:
    """CIFAR-100: 50,000 training and 10,000 test 32x32 RGB images, 100 (fine) classes. Only the
    files of ``splits`` (and meta) are needed and read."""
    root = default_root(root)
    read, found_by = splits_read(splits)
    wanted = [*read, "meta"]
    folder = locate_cifar100(root, found_by)
    missing = [n for n in wanted if not (folder / n).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR100
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR100.url, str(root), filename=CIFAR100.filename, md5=CIFAR100.tgz_md5, remove_finished=True)
        except Exception as exc:
            raise download_failed("CIFAR-100", exc, root / CIFAR100_FOLDER) from None
        folder = locate_cifar100(root, found_by)
        missing = [n for n in wanted if not (folder / n).is_file()]
    if missing:
        raise not_found("CIFAR-100", folder / missing[0], f"the '{CIFAR100_FOLDER}' folder (train, test, meta)")
    classes = read_cifar100_meta(folder / "meta")
    loaded = {}
    for name in read:
        images, labels = read_batch(folder / name, num_classes=100)
        loaded[name] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))
    skipped = TensorSplit.empty((3, 32, 32))
    info = DataInfo(num_classes=100, input_shape=(3, 32, 32), class_names=classes, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    return DataBundle(train=loaded.get("train", skipped), test=loaded.get("test", skipped), info=info,
                      files=[folder / n for n in wanted])


# ---- SVHN (MATLAB .mat files) --------------------------------------------------------------

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

# MATLAB level-5 MAT-file data types -> numpy dtypes (without byte order).
MAT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
MAT_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
MI_MATRIX, MI_COMPRESSED = 14, 15


class MatFormatError(ValueError):
    """A .mat file that this reader cannot parse."""


def read_mat(path: Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a MATLAB level-5 MAT-file (what ``scipy.io.loadmat`` reads for SVHN).

    Enough of the format for SVHN's ``X`` and ``y``: plain and zlib-compressed numeric matrices;
    structs, cells, sparse and complex arrays are skipped. Raises MatFormatError.
    """
    data = path.read_bytes()
    if len(data) < 128:
        raise MatFormatError("shorter than a MAT-file header")
    if data[:4] == b"\x89HDF" or data[512:516] == b"\x89HDF" or b"MATLAB 7.3" in data[:116]:
        raise MatFormatError("a MATLAB 7.3 (HDF5) file; save it with -v7 or take the original SVHN file")
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if order is None:
        raise MatFormatError("not a level-5 MAT-file (no endian indicator)")
    arrays: dict[str, np.ndarray] = {}

    def tag(buf: bytes, pos: int) -> tuple[int, int, int, int]:
        """(type, size, data start, next element) of the element at ``pos``."""
        if pos + 8 > len(buf):
            raise MatFormatError("truncated element tag")
        first, second = struct.unpack(order + "II", buf[pos:pos + 8])
        if first >> 16:  # small element: type and size in one word, data in the next four bytes
            return first & 0xFFFF, first >> 16, pos + 4, pos + 8
        if pos + 8 + second > len(buf):
            raise MatFormatError("truncated: an element runs past the end of the file")
        # Data is padded to 8 bytes, except compressed elements (zlib streams end where they end).
        size = second if first == MI_COMPRESSED else (second + 7) // 8 * 8
        return first, second, pos + 8, min(pos + 8 + size, len(buf))

    def matrix(buf: bytes, pos: int) -> None:
        """One miMATRIX element's subelements, from ``pos``: flags, dimensions, name, real part."""
        _, _, start, pos = tag(buf, pos)
        flags = struct.unpack(order + "I", buf[start:start + 4])[0]
        cls, complex_ = flags & 0xFF, bool(flags & 0x800)
        _, n, start, pos = tag(buf, pos)
        dims = struct.unpack(f"{order}{n // 4}i", buf[start:start + n])
        _, n, start, pos = tag(buf, pos)
        name = buf[start:start + n].decode("latin1")
        if cls not in MAT_CLASSES or complex_:
            return  # struct, cell, sparse, char or complex: not needed here
        t, n, start, pos = tag(buf, pos)
        if t not in MAT_TYPES:
            raise MatFormatError(f"variable '{name}' has an unknown data type {t}")
        dtype = np.dtype(order + MAT_TYPES[t])
        values = np.frombuffer(buf, dtype=dtype, count=n // dtype.itemsize, offset=start)
        if values.size != int(np.prod(dims)):
            raise MatFormatError(f"variable '{name}' holds {values.size} values for shape {tuple(dims)}")
        # MATLAB stores column-major and may store a class in a smaller type; undo both.
        arrays[name] = values.astype(MAT_CLASSES[cls]).reshape(dims, order="F")

    pos = 128
    while pos < len(data):
        t, n, start, nxt = tag(data, pos)
        if t == MI_COMPRESSED:
            try:
                inner = zlib.decompress(data[start:start + n])
            except zlib.error as exc:
                raise MatFormatError(f"corrupt compressed data ({exc})") from None
            if tag(inner, 0)[0] == MI_MATRIX:
                matrix(inner, 8)
        elif t == MI_MATRIX and n:
            matrix(data, start)
        pos = nxt
    return arrays


def read_svhn(path: Path) -> TensorSplit:
    """One SVHN split: X (32, 32, 3, N) uint8 and y (N, 1) with digit 0 stored as label 10."""
    try:
        arrays = read_mat(path)
    except (MatFormatError, struct.error) as exc:
        raise DataError(f"Cannot read '{path}': not an SVHN .mat file ({exc}). Replace the file.") from None
    except OSError as exc:
        raise DataError(f"Cannot read '{path}' ({exc}).") from None
    if "X" not in arrays or "y" not in arrays:
        raise DataError(f"'{path}' is not an SVHN file: it needs variables 'X' and 'y', has {sorted(arrays)}.")
    x, y = arrays["X"], arrays["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"'{path}': 'X' should have shape (32, 32, 3, N), got {x.shape}.")
    labels = y.reshape(-1).astype(np.int64)
    if labels.shape[0] != x.shape[3]:
        raise DataError(f"'{path}': {x.shape[3]:,} images but {labels.shape[0]:,} labels.")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise DataError(f"'{path}': labels range {labels.min()}..{labels.max()}, outside 0..10.")
    labels[labels == 10] = 0  # SVHN stores the digit 0 as 10 (as torchvision does, map it back)
    images = np.ascontiguousarray(x.astype(np.uint8).transpose(3, 2, 0, 1))  # -> (N, C, H, W)
    return TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))


def locate_svhn(root: Path) -> Path:
    """torchvision puts the .mat files in the root itself; ``<root>/svhn`` also works."""
    for candidate in (root, root / "svhn", root / "SVHN"):
        if (candidate / SVHN_FILES["test"]).is_file():
            return candidate
    return root


def load_svhn(
    *, root: Path | None, download: bool = False, extra: bool = False, splits: tuple[str, ...] = ("train", "test"),
) -> DataBundle:
    """SVHN: 73,257 training (+531,131 with ``extra``) and 26,032 test 32x32 RGB digit images.
    Only the files of ``splits`` are needed and read."""
    root = default_root(root)
    folder = locate_svhn(root)
    read, _ = splits_read(splits)  # located by its test file, which eval and training both read
    wanted = read + (["extra"] if extra and "train" in read else [])
    missing = [s for s in wanted if not (folder / SVHN_FILES[s]).is_file()]
    if missing and download:
        from torchvision.datasets import SVHN
        from torchvision.datasets.utils import download_url

        try:
            for split in missing:
                url, filename, md5 = SVHN.split_list[split]
                download_url(url, str(folder), filename, md5)
        except Exception as exc:
            raise download_failed("SVHN", exc, folder) from None
        missing = [s for s in wanted if not (folder / SVHN_FILES[s]).is_file()]
    if missing:
        files = ", ".join(SVHN_FILES[s] for s in wanted)
        raise not_found("SVHN", folder / SVHN_FILES[missing[0]], f"the .mat files ({files}) directly")
    skipped = TensorSplit.empty((3, 32, 32))
    train = read_svhn(folder / SVHN_FILES["train"]) if "train" in wanted else skipped
    if "extra" in wanted:
        more = read_svhn(folder / SVHN_FILES["extra"])
        train = TensorSplit(torch.cat([train.images, more.images]), torch.cat([train.labels, more.labels]))
    test = read_svhn(folder / SVHN_FILES["test"]) if "test" in wanted else skipped
    info = DataInfo(
        num_classes=10, input_shape=(3, 32, 32), class_names=tuple(str(d) for d in range(10)),
        mean=SVHN_MEAN, std=SVHN_STD,
    )
    return DataBundle(train=train, test=test, info=info, files=[folder / SVHN_FILES[s] for s in wanted])


@hookimpl
def register_datasets(register: Register) -> None:
    for fmt, factory in zip(MNIST_LIKE.values(), (load_mnist, load_fashionmnist, load_kmnist)):
        register(fmt.name, factory, description=f"{fmt.title}: 70,000 28x28 grayscale images in 10 classes ({fmt.folder}/raw/ idx files)")
    register("cifar100", load_cifar100, description="CIFAR-100: 60,000 32x32 colour images in 100 classes (cifar-100-python/)")
    register("svhn", load_svhn, description="SVHN: street-view house-number digits, 32x32 colour, 10 classes (train_32x32.mat, test_32x32.mat)")
