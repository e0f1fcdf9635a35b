"""CIFAR-10 from the standard ``cifar-10-batches-py/`` folder (the official "python version").

Files are checked by structure (keys, shapes, dtypes, label range, counts), not by md5: a
faithful copy whose pickles were written anew has other md5 sums but the same pixels.
"""

from __future__ import annotations

import io
import math
import pickle
import re
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


# What CIFAR's python pickles refer to: numpy arrays (numpy.core from numpy 1, as in the official
# files; numpy._core from numpy 2), and protocol 2's way of writing bytes
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode"),
}
# The dtypes an array in a CIFAR file may have, as numpy pickles them: numbers, and the byte strings
# of a re-encoding's filenames. Not objects; nor str ('U'), whose bad code points raise SystemError.
_DTYPE_CODE = re.compile(r"b1|[iu][1248]|f[248]|S[1-9][0-9]{0,4}")
_NDARRAY = object()  # stands in for numpy.ndarray, which a pickle names only as _reconstruct's first argument


class _PendingDtype:
    """``numpy.dtype(code, align, copy)`` in a pickle, not built: its arguments and the state
    BUILD gives it, for :func:`_build_dtype` to check."""

    __slots__ = ("args", "state")

    def __init__(self, *args: Any) -> None:
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        if self.state is not None:
            raise pickle.UnpicklingError("it sets a dtype's state twice")
        self.state = state


class _PendingArray:
    """``_reconstruct(ndarray, (0,), b"b")`` in a pickle: the array is built when BUILD gives its
    state, once :func:`_build_array` has checked it. (Then, as numpy's own unpickling does, so the
    pickled bytes go as early: built after the whole file, the six CIFAR-10 files took 0.26 s to
    read, not 0.18 s.)"""

    __slots__ = ("args", "array", "dtype")

    def __init__(self, *args: Any) -> None:
        self.args, self.array, self.dtype = args, None, None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise pickle.UnpicklingError("it sets an array's state twice")
        self.array = _build_array(self.args, state)
        self.dtype = state[2]


class _Recorder:
    """Stands in for numpy.dtype or _reconstruct in a pickle: a call makes a pending one and
    records it. (An instance with slots, not a function or class: BUILD can add no attributes to
    it, and NEWOBJ cannot make one without calling it.)"""

    __slots__ = ("make", "made")

    def __init__(self, make: type[_PendingDtype | _PendingArray], made: list[Any]) -> None:
        self.make, self.made = make, made

    def __call__(self, *args: Any) -> _PendingDtype | _PendingArray:
        pending = self.make(*args)
        self.made.append(pending)
        return pending


def _build_dtype(pending: Any) -> np.dtype:
    """The dtype that a pickled ``numpy.dtype(code, 0, 1)`` and its state describe."""
    if not isinstance(pending, _PendingDtype) or not isinstance(pending.state, tuple):
        raise pickle.UnpicklingError("an array's dtype is damaged")
    code = pending.args[0] if pending.args else None
    order = pending.state[1] if len(pending.state) > 1 else None
    if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code) or order not in ("<", ">", "|"):
        raise pickle.UnpicklingError("an array's dtype is neither numbers nor bytes")
    dtype = np.dtype(code).newbyteorder(order)
    # Built from the code alone: the recorded fields must be exactly what numpy writes for it
    if dtype.__reduce__()[1:] != (pending.args, pending.state):
        raise pickle.UnpicklingError(f"an array's dtype {dtype} is damaged")
    return dtype


def _build_array(args: tuple[Any, ...], state: Any) -> np.ndarray:
    """The array that a pickled ``_reconstruct(*args)`` and its state ``(1, shape, dtype,
    fortran, bytes)`` describe, once each part is checked."""
    if args[:1] != (_NDARRAY,) or args[1:] not in (((0,), b"b"), ((0,), "b")):
        raise pickle.UnpicklingError("it builds a numpy array in a way numpy does not write")
    if not isinstance(state, tuple) or len(state) != 5 or type(state[0]) is not int or state[0] != 1:
        raise pickle.UnpicklingError("an array's state is damaged")
    _, shape, dtype_pending, fortran, payload = state
    if type(shape) is not tuple or len(shape) > 32 or not all(type(n) is int and 0 <= n < 2**31 for n in shape):
        raise pickle.UnpicklingError("an array's shape is damaged")
    dtype = _build_dtype(dtype_pending)
    if type(fortran) is not bool or type(payload) not in (str, bytes):  # str: protocol 2 bytes read as latin1
        raise pickle.UnpicklingError("an array's state is damaged")
    if len(payload) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError(f"an array's {len(payload)} bytes do not fill its shape {shape} of {dtype}")
    # numpy's own unpickling, of checked parts: no slower than before (it keeps a bytes payload
    # without copying it), and the same array, writable, in native byte order
    array = np.ndarray((0,), np.int8)
    array.__setstate__((1, shape, dtype, fortran, payload))
    return array


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, lists, dicts, strings and numbers only: a pickle may
    otherwise call any function, so a hostile file could run code. Nor does numpy see an array's
    state before it is checked: numpy trusts it, and about one in 5,000 random byte flips made that
    corrupt the process's memory. Arrays and dtypes are recorded (:class:`_PendingArray`), checked,
    built, and kept as values of the top-level dict only, the one place CIFAR files hold them.
    The file is read into memory first: a damaged length is then a short read, where a file
    object would have been asked for that many bytes. (Pickle's C unpickler still makes room for a
    counted bytes object and a memo index before it reads them: an opcode damaged into one of
    those can ask for gigabytes, rarely. Its pure-Python twin would not, but is 3x slower.)"""

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.made: list[_PendingDtype | _PendingArray] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which no CIFAR file does")
        if module == "_codecs":
            return super().find_class(module, name)
        return _NDARRAY if name == "ndarray" else _Recorder(_PendingDtype if name == "dtype" else _PendingArray, self.made)

    def load(self) -> Any:
        result = super().load()
        used: set[int] = set()
        if isinstance(result, dict):
            for key, value in list(result.items()):
                if isinstance(value, _PendingArray) and value.array is not None:
                    result[key] = value.array
                    used.update((id(value), id(value.dtype)))
        if len(used) != len(self.made):  # the rest sit in lists, keys or other arrays, or were never built
            raise pickle.UnpicklingError("it holds a numpy array or dtype where no CIFAR file has one")
        return result


def load_pickle(path: Path) -> Any:
    """A CIFAR python-version pickle, read with :class:`_CifarUnpickler`."""
    return _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()


def read_batch(path: Path, *, num_classes: int = 10, image_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images (N, C, H, W), int64 labels); DataError names a bad file."""
    try:
        entry: Any = load_pickle(path)
    except FileNotFoundError:
        raise DataNotFoundError(f"Missing CIFAR file '{path}'.") from None
    except Exception as exc:  # truncated or not a pickle at all
        # MemoryError: a damaged length or memo index asked for more than there is (its message is empty)
        why = "it asks for more memory than there is" if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"Cannot read '{path}': not a CIFAR batch file ({why}). Replace the file.") from None
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


def load_cifar10(*, root: Path | None, download: bool = False, splits: tuple[str, ...] = ("train", "test")) -> DataBundle:
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes. Only the files
    of ``splits`` are needed and read (``blitz eval``: test_batch)."""
    root = Path(root) if root is not None else Path("data")
    folder = locate(root)
    wanted = (*(TRAIN_FILES if "train" in splits else ()), *(TEST_FILES if "test" in splits else ()))
    missing = [name for name in wanted if not (folder / name).is_file()]
    if missing and download:
        fetch_archive(root)
        folder = locate(root)
        missing = [name for name in wanted if not (folder / name).is_file()]
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
    skipped = TensorSplit.empty((3, 32, 32))
    train = read_split(folder, TRAIN_FILES) if "train" in splits else skipped
    test = read_split(folder, TEST_FILES) if "test" in splits else skipped
    info = DataInfo(num_classes=10, input_shape=(3, 32, 32), class_names=CLASSES, mean=MEAN, std=STD)
    return DataBundle(train=train, test=test, info=info, files=[folder / name for name in wanted])


@hookimpl
def register_datasets(register: Register) -> None:
    register("cifar10", load_cifar10, description="CIFAR-10: 60,000 32x32 colour images in 10 classes")
