"""Your own images: a folder of class subfolders (torchvision's ImageFolder layout).

::

    <path>/<class name>/<any/sub/folders>/<image>.png|jpg|jpeg|bmp|webp|...

Every image is decoded once with PIL, converted to RGB (or grayscale with ``channels=1``) and
resized to ``image_size`` x ``image_size``. When all the decoded pixels fit in
``max_in_memory_mb`` they are returned as one uint8 tensor per split (the fast, tensor-resident
path); otherwise the splits are Datasets that decode each image again when the DataLoader asks.
Either way every file is decoded once up front, so a corrupt image fails now, with its name,
rather than hours into training.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from blitz import DataBundle, DataError, DataInfo, DataNotFoundError, Register, TensorSplit, hookimpl
from blitz.errors import ConfigError
from blitz.images import decode_image
from blitz.options import check_flag, check_option

# torchvision's IMG_EXTENSIONS, so a folder that works with ImageFolder works here.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
HALF = (0.5, 0.5, 0.5)
# PIL releases the GIL while it decodes and resizes, so threads give a real speed-up.
DECODE_THREADS = min(8, os.cpu_count() or 1)


@dataclass
class FileList:
    """The images of one split: paths and their class indices, in a fixed order."""

    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows: list[int]) -> FileList:
        return FileList([self.paths[i] for i in rows], [self.labels[i] for i in rows])


def resolve_folder(path: str | Path | None, root: Path, what: str) -> Path:
    """``path`` as given, or under the data root when it is relative and only exists there."""
    if path is None:
        folder = root
    else:
        folder = Path(path).expanduser()
        if not folder.is_absolute() and not folder.exists() and (root / folder).exists():
            folder = root / folder
    if not folder.is_dir():
        hint = (
            "Point --data-root (or $BLITZ_DATA_ROOT) at a folder of class subfolders of images"
            if path is None else f"Pass --dataset-arg {what}=DIR with an existing folder"
        )
        found = "is a file, not a folder" if folder.exists() else "not found"
        raise DataNotFoundError(f"Image folder '{folder}' {found}. {hint}.")
    return folder


def is_image(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation"}


def _walk(top: Path, dataset: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` of a class folder, following links, without hidden folders, each real folder
    once, and never back into ``dataset`` through a link: ``cat/self -> .`` would list the same
    images again and again, ``cat/up -> ..`` every other class's images as cats."""
    seen: set[str] = set()
    tree = os.path.realpath(dataset)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        inside = real == tree or os.path.dirname(real) == tree  # the dataset or a class folder
        try:
            ancestor = os.path.commonpath([real, tree]) == real  # "/" or any folder above the image folder
        except ValueError:  # another drive (Windows): not above it
            ancestor = False
        if real in seen or (dirpath != str(top) and inside) or (ancestor and real != tree):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .ipynb_checkpoints, .thumbs
        yield dirpath, dirnames, filenames


def _holds_class_folders(folder: Path) -> bool:
    """Whether ``folder``'s images are all in subfolders (as a split folder's are), not loose."""
    entries = list(os.scandir(folder))
    return any(e.is_dir() and not e.name.startswith(".") for e in entries) and not any(
        e.is_file() and is_image(e.name) for e in entries
    )


def scan(folder: Path, given_as: str = "--data-root") -> tuple[tuple[str, ...], FileList]:
    """The sorted class names (subfolders) of ``folder`` and every image file under them.
    ``given_as``: how the user named the folder (``--data-root``, ``--dataset-arg path=``, ...),
    for the advice when it is a level off."""
    classes = tuple(sorted(
        entry.name for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".")  # skip .git, .ipynb_checkpoints
    ))
    accepted = ", ".join(EXTENSIONS)
    if not classes:
        loose = sum(1 for entry in os.scandir(folder) if entry.is_file() and is_image(entry.name))
        detail = (
            f"it holds {loose} image(s) directly; move them into one subfolder per class"
            if loose else "it has no class subfolders"
        )
        raise DataError(
            f"'{folder}' is not an image folder: {detail}. Expected <folder>/<class>/<image> with "
            f"images ending in {accepted}."
        )
    def pass_instead(path: Path) -> str:
        return f"--data-root '{path}'" if given_as == "--data-root" else f"--dataset-arg {given_as}='{path}'"

    # A train folder and a test/val folder, both holding folders: a split layout, not classes,
    # whatever else lies beside them (__MACOSX/ from a zip); a class named 'train' among 'bus' and
    # 'car' stays a class.
    splits = [n for n in classes if n.lower() in SPLIT_NAMES and _holds_class_folders(folder / n)]
    train = next((n for n in splits if n.lower() in ("train", "training")), None)
    others = [n for n in splits if n != train and n.lower() not in ("train", "training")]
    if (train is not None and others) or (splits and len(splits) == len(classes)):
        train = train or splits[0]
        test_hint = f" --dataset-arg test_path='{folder / others[0]}'" if others and given_as != "test_path" else ""
        raise ConfigError(
            f"'{folder}' holds split folders ({', '.join(splits)}) that hold the class folders, not classes "
            f"themselves: pass {pass_instead(folder / train)}{test_hint}."
        )
    if len(classes) == 1:
        raise ConfigError(
            f"'{folder}' has one class folder, '{classes[0]}': a classifier needs at least two. If "
            f"'{classes[0]}' holds the class folders, pass {pass_instead(folder / classes[0])}."
        )
    files = FileList([], [])
    empty = []
    for index, name in enumerate(classes):
        found = sorted(
            Path(dirpath) / file
            for dirpath, dirnames, filenames in _walk(folder / name, folder)
            for file in filenames
            if is_image(file) and not file.startswith(".")
        )
        if not found:
            empty.append(name)
        files.paths += found
        files.labels += [index] * len(found)
    if len(empty) == len(classes):
        raise DataError(
            f"No images in '{folder}': its {len(classes)} class subfolder(s) hold no files ending in {accepted}."
        )
    if empty:
        # A class without examples cannot be learned, and its index would shift every label after it.
        raise DataError(
            f"Class folder(s) without images in '{folder}': {', '.join(empty)}. Add images ending in "
            f"{accepted} or remove the folder(s)."
        )
    return classes, files


def stratified_split(
    files: FileList, num_classes: int, fraction: float, seed: int, folder: Path | None = None
) -> tuple[FileList, FileList]:
    """Hold out ``fraction`` of each class (at least one image where a class has two or more).

    Within a class, images are ranked by a hash of ``seed`` and their path (relative to
    ``folder``), and the first are held out: an image's place depends on its own name and its
    class's size only. Adding images to one class leaves every other class's split as it was,
    and in that class moves only images at the boundary (about ``fraction`` of those added);
    a random permutation drawn class after class reshuffled every class, and a run's test
    images became training images of the next (or of ``blitz eval``'s split).
    """
    train_rows, test_rows = split_rows(files, num_classes, fraction, seed, folder)
    return files.take(train_rows), files.take(test_rows)


def split_rows(
    files: FileList, num_classes: int, fraction: float, seed: int, folder: Path | None = None
) -> tuple[list[int], list[int]]:
    """``stratified_split`` as the rows of ``files`` on each side, in file order."""
    labels = np.asarray(files.labels)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        members = np.asarray(sorted(members, key=lambda i: _rank(files.paths[i], folder, seed)), dtype=np.int64)
        n_test = round(len(members) * fraction)
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)  # keep a training image of every class
        else:
            n_test = 0
        test_idx += members[:n_test].tolist()
        train_idx += members[n_test:].tolist()
    return sorted(train_idx), sorted(test_idx)  # file order, so the same seed gives the same tensors


def readable_sides(
    files: FileList, kept: list[int], n_train: int,
    resplit: Callable[[FileList], tuple[list[int], list[int]]] | None,
) -> tuple[list[int], list[int]]:
    """The rows of the readable files (``kept``, rows of ``files``) on each side of the split.

    ``files`` holds the training files first (``n_train`` of them), then the test files. Where
    some were unreadable and the test images are held out of one folder, the readable ones are
    split anew (``resplit``), as if the others were not there: a class's held-out images could
    otherwise all be unreadable ones, leaving it out of the test split.
    """
    if resplit is not None and len(kept) < len(files):
        return resplit(files.take(kept))
    cut = bisect.bisect_left(kept, n_train)
    return list(range(cut)), list(range(cut, len(kept)))


def _sides(split: TensorSplit, train_rows: list[int], test_rows: list[int]) -> tuple[TensorSplit, TensorSplit]:
    """``split``'s rows on each side: views where both sides are runs of consecutive rows (no copy
    of the images), else copies of both (a view would keep the whole decoded tensor alive beside
    the other side's copy, twice ``max_in_memory_mb``)."""
    def consecutive(rows: list[int]) -> bool:
        return not rows or rows[-1] - rows[0] + 1 == len(rows)

    def take(tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
        if consecutive(train_rows) and consecutive(test_rows):
            return tensor[rows[0]:rows[-1] + 1] if rows else tensor[:0]
        return tensor[torch.tensor(rows, dtype=torch.int64)]

    return (TensorSplit(take(split.images, train_rows), take(split.labels, train_rows)),
            TensorSplit(take(split.images, test_rows), take(split.labels, test_rows)))


def _rank(path: Path, folder: Path | None, seed: int) -> bytes:
    """A file's place in its class's held-out order: from its path under the image folder (so
    moving the folder keeps the split) and the seed."""
    name = path.relative_to(folder).as_posix() if folder is not None and path.is_relative_to(folder) else path.as_posix()
    return hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=16).digest()


def try_decode(path: Path, size: int, mode: str) -> np.ndarray | str:
    """The pixels, or why the file cannot be read (so one bad file does not stop the pool)."""
    try:
        return decode_image(path, size, size, mode)
    except Exception as exc:  # UnidentifiedImageError, truncated files, decompression bombs, ...
        return f"{type(exc).__name__}: {exc}"


def decode_all(files: FileList, size: int, mode: str) -> Iterator[tuple[int, np.ndarray | str]]:
    """``(index, pixels or error)`` for every file, in order, decoded by a thread pool."""
    if DECODE_THREADS <= 1 or len(files) < 64:
        for i, path in enumerate(files.paths):
            yield i, try_decode(path, size, mode)
        return
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        # In chunks: pool.map submits everything at once, a million futures for a million files.
        for start in range(0, len(files), 1024):
            chunk = files.paths[start:start + 1024]
            yield from enumerate(pool.map(lambda p: try_decode(p, size, mode), chunk), start)


class BadFiles:
    """Unreadable images: an error at once, or counted and skipped with ``skip_bad``."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.found: list[tuple[Path, str]] = []

    def __call__(self, path: Path, reason: str) -> None:
        if not self.skip:
            raise DataError(
                f"Cannot read image '{path}' ({reason}). Replace or delete the file, or pass "
                "--dataset-arg skip_bad=true to skip unreadable images."
            )
        self.found.append((path, reason))

    def warn(self) -> None:
        if self.found:
            path, reason = self.found[0]
            warnings.warn(
                f"Skipped {len(self.found)} unreadable image(s); the first: '{path}' ({reason}).",
                stacklevel=3,
            )


class Stats:
    """Per-channel sums of pixel values in [0, 1], for mean and standard deviation."""

    def __init__(self, channels: int) -> None:
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sq = torch.zeros(channels, dtype=torch.float64)
        self.count = 0

    def add_sums(self, sums: torch.Tensor, count: int) -> None:
        """Add per-channel sums of values and of squares (2, C) over ``count`` pixels."""
        self.sum += sums[0]
        self.sq += sums[1]
        self.count += count

    def add(self, images: torch.Tensor) -> None:
        """Add a uint8 batch (N, C, H, W)."""
        x = images.to(torch.float64).div_(255.0)
        self.sum += x.sum(dim=(0, 2, 3))
        self.sq += x.square().sum(dim=(0, 2, 3))
        self.count += images.shape[0] * images.shape[2] * images.shape[3]

    def result(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean = self.sum / self.count
        std = (self.sq / self.count - mean.square()).clamp_min(0).sqrt()
        # A channel with one value everywhere would divide by zero; leave its scale alone.
        std = torch.where(std < 1e-6, torch.ones_like(std), std)
        return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def load_tensor_split(files: FileList, size: int, mode: str, bad: BadFiles) -> tuple[TensorSplit, list[int]]:
    """Decode every image into one preallocated uint8 tensor (no second copy while stacking);
    also the rows of ``files`` it holds (the readable ones)."""
    channels = 1 if mode == "L" else 3
    try:
        images = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    except RuntimeError as exc:  # torch's allocator: "can't allocate memory: you tried to allocate ..."
        needed = len(files) * channels * size * size / 2**20
        raise DataError(
            f"The {len(files):,} decoded images need {needed:,.0f} MB, which this machine could not allocate "
            f"({str(exc).splitlines()[0][:80]}): lower --dataset-arg max_in_memory_mb (images are then read "
            "from disk as needed) or image_size."
        ) from None
    keep = torch.ones(len(files), dtype=torch.bool)
    for i, pixels in decode_all(files, size, mode):
        if isinstance(pixels, str):
            bad(files.paths[i], pixels)
            keep[i] = False
        else:
            images[i] = torch.from_numpy(pixels)
    labels = torch.tensor(files.labels, dtype=torch.int64)
    if not keep.all():
        images, labels = images[keep], labels[keep]
    return TensorSplit(images, labels), keep.nonzero().flatten().tolist()


def stats_of(split: TensorSplit, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    stats = Stats(channels)
    for start in range(0, len(split), 4096):  # chunks keep the float64 copy small
        stats.add(split.images[start:start + 4096])
    return stats.result()


class ImageFolderDataset(Dataset):
    """The DataLoader path: decodes one image per item as uint8 pixels (C, H, W).

    Plain attributes only, so it pickles into DataLoader worker processes.
    """

    def __init__(self, files: FileList, *, size: int, mode: str) -> None:
        self.files, self.size, self.mode = files, size, mode  # normalizing is blitz's, per batch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files.paths[index]
        try:
            pixels = decode_image(path, self.size, self.size, self.mode)
        except Exception as exc:  # it decoded at load time; it changed on disk since
            raise DataError(f"Cannot read image '{path}' ({type(exc).__name__}: {exc}).") from None
        # uint8 pixels: blitz normalizes (and augments) whole batches on the training device
        return torch.from_numpy(pixels), self.files.labels[index]


def check_pass(files: FileList, size: int, mode: str, bad: BadFiles, measure: bool) -> tuple[list[int], torch.Tensor]:
    """The DataLoader path's one decode pass: the rows of the readable files and, with
    ``measure``, each one's per-channel sums of pixel values and of their squares (kept, 2, C),
    for the statistics of whichever side of the split it lands on."""
    kept: list[int] = []
    sums: list[np.ndarray] = []
    for i, pixels in decode_all(files, size, mode):
        if isinstance(pixels, str):
            bad(files.paths[i], pixels)
            continue
        kept.append(i)
        if measure:
            x = pixels.astype(np.float64) / 255.0
            sums.append(np.stack([x.sum(axis=(1, 2)), np.square(x).sum(axis=(1, 2))]))
    channels = 1 if mode == "L" else 3
    return kept, torch.from_numpy(np.stack(sums)) if sums else torch.zeros((0, 2, channels), dtype=torch.float64)


def check_folder_options(
    *, image_size: int, channels: int, normalize: str, skip_bad: bool, split_seed: int, max_in_memory_mb: float,
    test_fraction: float, separate_test: bool,
) -> None:
    """ValueError naming the option at fault: blitz reports it as the data source's options'."""
    whole = isinstance(image_size, int) and not isinstance(image_size, bool)
    if not whole or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if normalize not in ("auto", "half"):
        raise ValueError(f"normalize must be 'auto' or 'half', got {normalize!r}")
    check_flag("skip_bad", skip_bad)
    check_option("split_seed", split_seed, 0, whole=True)
    check_option("max_in_memory_mb", max_in_memory_mb, 0)
    if not separate_test:
        check_option("test_fraction", test_fraction, 0)
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")


def separate_test_files(folder: Path, classes: list[str], test_path: str, root: Path) -> tuple[Path, FileList]:
    """The test folder ``test_path`` and its images; DataError where its classes differ."""
    test_folder = resolve_folder(test_path, root, "test_path")
    test_classes, test = scan(test_folder, "test_path")
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        parts = [f"only in '{folder}': {', '.join(only_train)}" if only_train else "",
                 f"only in '{test_folder}': {', '.join(only_test)}" if only_test else ""]
        raise DataError(
            "The train and test folders must have the same class subfolders; "
            + "; ".join(p for p in parts if p) + "."
        )
    return test_folder, test


Split = TensorSplit | Dataset


def decode_sides(
    train: FileList, test: FileList, *, resplit: Callable[[FileList], tuple[list[int], list[int]]] | None,
    image_size: int, channels: int, measure: bool, max_in_memory_mb: float, bad: BadFiles,
) -> tuple[Split, Split, tuple[float, ...], tuple[float, ...]]:
    """(train split, test split, mean, std) of the readable images: tensors where they fit in
    ``max_in_memory_mb``, else Datasets that decode per batch. ``resplit`` splits the readable
    ones anew (None: ``test`` is a folder of its own); ``measure``: mean and std of the training
    images, else 0.5."""
    mode = "L" if channels == 1 else "RGB"
    both = FileList(train.paths + test.paths, train.labels + test.labels)  # decoded in one pass
    half = HALF[:channels]
    if len(both) * channels * image_size * image_size / 2**20 <= max_in_memory_mb:
        decoded, kept = load_tensor_split(both, image_size, mode, bad)
        train_rows, test_rows = readable_sides(both, kept, len(train), resplit)
        train_split, test_split = _sides(decoded, train_rows, test_rows)
        mean, std = stats_of(train_split, channels) if measure and train_rows else (half, half)
        return train_split, test_split, tuple(mean), tuple(std)
    kept, sums = check_pass(both, image_size, mode, bad, measure)
    train_rows, test_rows = readable_sides(both, kept, len(train), resplit)
    readable = both.take(kept)
    mean, std = half, half
    if measure and train_rows:
        stats = Stats(channels)
        stats.add_sums(sums[train_rows].sum(dim=0), len(train_rows) * image_size * image_size)
        mean, std = stats.result()
    return (ImageFolderDataset(readable.take(train_rows), size=image_size, mode=mode),
            ImageFolderDataset(readable.take(test_rows), size=image_size, mode=mode), tuple(mean), tuple(std))


def check_readable(
    train: Split, test: Split, classes: list[str], folder: Path, bad: BadFiles, *, train_read: bool = True,
) -> None:
    """DataError where skipping unreadable files left a split, or a class's training images, empty
    (``train_read``: False where the training images were not asked for)."""
    no_train = train_read and not len(train)
    if no_train or not len(test):
        raise DataError(
            f"No readable images left in the {'training' if no_train else 'test'} split of "
            f"'{folder}' after skipping {len(bad.found)} unreadable file(s)."
        )
    if bad.found and train_read:  # a class whose every training image was unreadable cannot be learned
        present = set(train.labels.tolist() if isinstance(train, TensorSplit) else train.files.labels)
        lost = [name for index, name in enumerate(classes) if index not in present]
        if lost:
            raise DataError(
                f"No readable training images left for class(es) {', '.join(lost)} in '{folder}' after "
                f"skipping {len(bad.found)} unreadable file(s): replace them, or remove the class folder(s)."
            )


def load_imagefolder(
    *,
    root: Path | None,
    download: bool = False,
    path: str | None = None,
    test_path: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size: int = 32,
    channels: int = 3,
    normalize: str = "auto",
    max_in_memory_mb: float = 2048,
    skip_bad: bool = False,
    splits: tuple[str, ...] = ("train", "test"),
) -> DataBundle:
    """A folder of class subfolders of images; ``download`` is accepted and ignored.

    ``path``: the image folder (default: the data root). ``test_path``: a separate test folder
    with the same class subfolders; without it ``test_fraction`` of each class is held out,
    chosen with ``split_seed``. ``normalize``: ``auto`` (mean/std measured on the training
    images) or ``half`` (0.5/0.5, as in the tutorial). Without "train" in ``splits`` only the
    test images are decoded (mean and std are then 0.5: ``blitz eval`` uses the run's), except
    with ``skip_bad`` and a held-out split, which is drawn from the readable images of both.
    """
    del download  # nothing to download: the images are the user's own
    root = Path(root) if root is not None else Path("data")
    check_folder_options(
        image_size=image_size, channels=channels, normalize=normalize, skip_bad=skip_bad, split_seed=split_seed,
        max_in_memory_mb=max_in_memory_mb, test_fraction=test_fraction, separate_test=test_path is not None,
    )
    folder = resolve_folder(path, root, "path")
    classes, files = scan(folder, "--data-root" if path is None else "path")
    folders = [folder]
    if test_path is not None:
        test_folder, test = separate_test_files(folder, classes, test_path, root)
        train = files
        folders.append(test_folder)
    else:
        train, test = stratified_split(files, len(classes), test_fraction, split_seed, folder)
        if not len(test):
            raise DataError(
                f"'{folder}' has too few images to hold out a test split ({len(files)} in "
                f"{len(classes)} classes); add images or pass --dataset-arg test_path=DIR."
            )
    resplit = None if test_path is not None else (  # the held-out split anew, of the readable files
        lambda readable: split_rows(readable, len(classes), test_fraction, split_seed, folder))
    test_only = "train" not in splits and (resplit is None or not skip_bad)
    if test_only:  # the training images are not decoded: the split stays the same without them
        train, resplit = FileList([], []), None
    bad = BadFiles(skip_bad)
    train_split, test_split, mean, std = decode_sides(
        train, test, resplit=resplit, image_size=image_size, channels=channels,
        measure=normalize == "auto" and not test_only, max_in_memory_mb=max_in_memory_mb, bad=bad,
    )
    bad.warn()
    check_readable(train_split, test_split, classes, folder, bad, train_read=not test_only)
    info = DataInfo(
        num_classes=len(classes),
        input_shape=(channels, image_size, image_size),
        class_names=classes,
        mean=mean,
        std=std,
    )
    # The folders, not each image: `blitz data verify` lists these, and a folder may hold millions.
    return DataBundle(train=train_split, test=test_split, info=info, files=folders)


@hookimpl
def register_datasets(register: Register) -> None:
    register(
        "imagefolder",
        load_imagefolder,
        description="Your images: <data root>/<class>/<image> (ImageFolder layout), resized to image_size",
    )
