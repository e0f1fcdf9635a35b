"""Batches for training and evaluation.

The fast path keeps a whole split as one uint8 tensor on the training device: each epoch is an
index permutation, and flips (random or alternating), translation, cutout and normalization
run batched on that device, so the hot loop has no per-sample Python. Data sources that only
offer a ``Dataset`` go through a classic ``DataLoader`` instead. With several processes each
rank takes every ``world_size``-th index of the same permutation (the DistributedSampler
scheme), truncated so all ranks take the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from blitz.components import DataInfo, TensorSplit
from blitz.config import AugmentConfig
from blitz.errors import BlitzError, DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def mix_seed(*parts: int) -> int:
    """One generator seed from several integers (seed, epoch, rank, ...), within int64."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (2**63 - 1)
    return value


class Normalizer:
    """Maps stored examples (uint8 pixels or float features) to the model's float input."""

    def __init__(self, info: DataInfo, device: torch.device) -> None:
        self.scale: torch.Tensor | None = None
        self.shift: torch.Tensor | None = None
        if info.mean:
            mean = torch.tensor(info.mean, device=device).view(-1, 1, 1)
            std = torch.tensor(info.std, device=device).view(-1, 1, 1)
            # (x / 255 - mean) / std as one multiply-add
            self.scale = 1.0 / (255.0 * std)
            self.shift = -mean / std

        self._expanded: dict[torch.Size, tuple[torch.Tensor, torch.Tensor]] = {}

    def _affine(self, example_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift, scale) expanded to one example's full shape, made once per shape.

        ``addcmul`` broadcasting (C, 1, 1) against (N, C, H, W) runs ~2.5x slower than with
        operands of equal inner shape (measured: 1.3 ms against 0.5 ms per 1,024 CIFAR images).
        """
        cached = self._expanded.get(example_shape)
        if cached is None:
            assert self.shift is not None and self.scale is not None
            cached = self.shift.expand(example_shape).contiguous(), self.scale.expand(example_shape).contiguous()
            self._expanded[example_shape] = cached
        return cached

    def __call__(self, images: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        if images.dtype == torch.uint8:
            x = images.float()  # a new tensor: written in place below, saving an allocation
            if self.scale is not None:
                shift, scale = self._affine(x.shape[1:]) if x.dim() == 4 else (self.shift, self.scale)
                x = torch.addcmul(shift, x, scale, out=x)
            else:
                x = x.div_(255.0)
        else:
            x = images.float()
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        return x


def augment(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator, flips: torch.Tensor | None = None
) -> torch.Tensor:
    """Flip, random translate and cutout of a uint8 (N, C, H, W) batch, all batched on its device.

    ``flips`` (N booleans) says which images to mirror; without it each is mirrored at random.
    """
    n, _, h, w = images.shape
    device = images.device
    if config.flip:
        if flips is None:
            flips = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
    if config.translate:
        t = config.translate
        padded = torch.nn.functional.pad(images.float(), (t, t, t, t), mode="reflect").to(images.dtype)
        dy = torch.randint(0, 2 * t + 1, (n,), device=device, generator=generator)
        dx = torch.randint(0, 2 * t + 1, (n,), device=device, generator=generator)
        rows = (dy.view(n, 1) + torch.arange(h, device=device)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w, device=device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=device).view(n, 1, 1, 1)
        channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
        images = padded[batch, channels, rows, cols]
    if config.cutout:
        size = config.cutout
        cy = torch.randint(0, h, (n, 1, 1), device=device, generator=generator)
        cx = torch.randint(0, w, (n, 1, 1), device=device, generator=generator)
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        # offsets -size//2 .. size - size//2 - 1 from the centre: exactly ``size`` pixels, even or odd
        before, after = size // 2, size - size // 2
        hole = ((ys - cy) >= -before) & ((ys - cy) < after) & ((xs - cx) >= -before) & ((xs - cx) < after)
        images = images.masked_fill(hole.unsqueeze(1), 0)
    return images


def batches_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in an epoch of ``examples``: the last may be partial, except that a last batch of a
    single example is left out (BatchNorm cannot train on one example; the next epoch's order
    differs, so no example is left out every epoch)."""
    full, rest = divmod(examples, batch_size)
    return full + (rest > 1 or (rest == 1 and full == 0))


def labels_out_of_range(labels: torch.Tensor, num_classes: int) -> tuple[int, int] | None:
    """(lowest, highest) class index of non-empty ``labels`` if either is outside 0..k-1, else None."""
    low, high = (int(v) for v in labels.aminmax())  # one pass over the labels
    return (low, high) if low < 0 or high >= num_classes else None


def check_labels(labels: torch.Tensor, num_classes: int, source: str, where: str) -> None:
    """Class indices outside 0..k-1 from a Dataset as a DataError naming ``source`` ("Dataset 'x'
    of plugin 'p'"), before they reach the device.

    On a GPU the loss would hit them as an asynchronous device-side assert, which surfaces
    later, with no word of the data, and leaves the CUDA context unusable (under DDP the other
    ranks wait for the collective timeout). Checked on the CPU batch: two small ops. (A
    TensorSplit's labels are checked once, when the data is loaded.)
    """
    if labels.dim() != 1 or labels.is_floating_point() or not labels.numel():
        return  # probability targets, or not labels at all: the loss's business
    bad = labels_out_of_range(labels, num_classes)
    if bad is not None:
        low, high = bad
        raise DataError(
            f"{source} gave a label outside 0..{num_classes - 1} {where} (label {low if low < 0 else high}): "
            "a data-source bug (its labels must be class indices below DataInfo.num_classes)."
        )


class TensorBatches:
    """Training batches drawn from a TensorSplit held on the device.

    Examples are gathered, augmented and normalized a chunk of steps at a time (about 1024
    examples): at small batch sizes this per-batch work would otherwise rival the model's. The
    augmentation of each chunk is seeded by (seed, epoch, rank, chunk), so a run resumed in the
    middle of an epoch sees exactly the pixels an uninterrupted run would.
    """

    CHUNK_EXAMPLES = 1024

    def __init__(
        self,
        split: TensorSplit,
        info: DataInfo,
        *,
        device: torch.device,
        batch_size: int,
        shuffle: bool,
        seed: int,
        augment: AugmentConfig,
        rank: int = 0,
        world_size: int = 1,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.normalize = Normalizer(info, device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augment_config = augment
        self.augments = info.is_image and augment.active
        self.rank, self.world_size = rank, world_size
        self.memory_format = memory_format
        self.per_rank = len(split) // world_size  # examples per epoch on this rank
        self.device = device
        self.steps_per_chunk = max(1, self.CHUNK_EXAMPLES // batch_size)
        self.generator = torch.Generator(device=device)
        self.first_flips: torch.Tensor | None = None
        if self.augments and augment.alternates_flips:
            # Each example's flip in epoch 1, drawn once per run (the same on every rank); later
            # epochs alternate from it, so every image is seen both ways in any two epochs.
            g = torch.Generator(device="cpu").manual_seed(mix_seed(seed, 2))
            self.first_flips = (torch.rand(len(self.labels), generator=g) < 0.5).to(device)

    def __len__(self) -> int:
        return batches_per_epoch(self.per_rank, self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's example indices for ``epoch``: the same permutation on every rank."""
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator(device="cpu")
            g.manual_seed(mix_seed(self.seed, epoch))
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        return perm[self.rank :: self.world_size][: self.per_rank].to(self.device)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)
        b, k = self.batch_size, self.steps_per_chunk
        for chunk_start in range(start_step - start_step % k, len(self), k):
            index = order[chunk_start * b : (chunk_start + k) * b]
            images = self.images.index_select(0, index)  # 25x faster than `images[index]` for uint8 on a CPU
            if self.augments:
                self.generator.manual_seed(mix_seed(self.seed, epoch, self.rank, chunk_start))
                flips = None
                if self.first_flips is not None:
                    flips = self.first_flips[index] ^ (epoch % 2 == 0)  # epochs count from 1
                images = augment(images, self.augment_config, self.generator, flips)
            images = self.normalize(images, self.memory_format)
            labels = self.labels.index_select(0, index)
            for step in range(max(chunk_start, start_step), min(chunk_start + k, len(self))):
                offset = (step - chunk_start) * b
                yield images[offset : offset + b], labels[offset : offset + b]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}  # the data order and augmentation follow from (seed, epoch, step) alone

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def reseed(self, *parts: int) -> None:
        pass  # its randomness is a function of (seed, epoch, rank, chunk) already


class LoaderBatches:
    """Training batches from a Dataset through a DataLoader (data that does not fit in memory).

    Items that are uint8 pixels are augmented and normalized per batch on the device, as on the
    tensor path, except that flips are always random (a batch does not say which examples it
    holds, which alternating flips need); float items are used as they are.
    """

    def __init__(
        self,
        dataset: Dataset,
        info: DataInfo,
        *,
        device: torch.device,
        batch_size: int,
        shuffle: bool,
        seed: int,
        augment: AugmentConfig,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        source: str = "The data source",
    ) -> None:
        self.device, self.memory_format = device, memory_format
        self.source, self.num_classes = source, info.num_classes
        self.normalize = Normalizer(info, device)
        self.augment_config = augment
        self.augments = info.is_image and augment.active
        self.augment_generator = torch.Generator(device=device)
        self.augment_generator.manual_seed(mix_seed(seed, rank, 1))
        self.sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=mix_seed(seed), drop_last=True
        )
        # Its own generator, reseeded each epoch: without one, each `iter(loader)` draws its
        # workers' base seed from the global RNG, and a resumed run (which restores that RNG
        # before making the iterator again) would shift every dropout mask that follows.
        self.loader_generator = torch.Generator()
        self.seed, self.rank, self.batch_size = seed, rank, batch_size
        examples = len(self.sampler)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=self.loader_generator,
            drop_last=batches_per_epoch(examples, batch_size) < -(-examples // batch_size),
        )
        self.per_rank = len(self.sampler)  # examples per epoch on this rank

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(mix_seed(self.seed, self.rank, epoch, 3))
        for step, (images, labels) in enumerate(_worker_errors_unwrapped(self.loader)):
            if step < start_step:
                continue
            check_labels(labels, self.num_classes, self.source, f"at step {step} of epoch {epoch}")
            images = images.to(self.device, non_blocking=True)
            if self.augments and images.dtype == torch.uint8:
                images = augment(images, self.augment_config, self.augment_generator)
            yield self.normalize(images, self.memory_format), labels.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"augment_generator": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        saved = state["augment_generator"]
        if saved.numel() != self.augment_generator.get_state().numel():
            return  # saved on another device type (a CPU generator's state is another size): the stream restarts, deterministically
        self.augment_generator.set_state(saved)

    def reseed(self, *parts: int) -> None:
        """A fresh stream for this rank (after a resume, where only rank 0's state was saved)."""
        self.augment_generator.manual_seed(mix_seed(*parts))


def _worker_errors_unwrapped(loader: DataLoader) -> Iterator[Batch]:
    """``loader``'s batches; a blitz error raised in a worker process (an image that became
    unreadable) comes back as itself, one line, not as "Caught DataError in DataLoader worker
    process 0." with the worker's traceback pasted into the message."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except BlitzError as exc:
            text = str(exc)
            if "Original Traceback" not in text:
                raise
            marker = f"{type(exc).__name__}: "
            original = text[text.rfind(marker) + len(marker):].strip() if marker in text else text.splitlines()[-1]
            raise type(exc)(original) from None
        yield batch


def eval_batches(
    split: TensorSplit | Dataset,
    info: DataInfo,
    *,
    device: torch.device,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    memory_format: torch.memory_format = torch.contiguous_format,
    num_workers: int = 0,
    source: str = "The data source",
) -> Iterator[Batch]:
    """Every test example exactly once across ranks (rank r takes r, r+W, ...; no padding)."""
    if isinstance(split, TensorSplit):
        normalize = Normalizer(info, device)
        # On the split's own device: the engine may have moved the test split to the GPU already,
        # and index_select, unlike indexing, wants the index where the tensor is.
        index = torch.arange(rank, len(split), world_size, device=split.images.device)
        label_index = (  # a split built by a library caller may keep its labels elsewhere
            index if split.labels.device == index.device
            else torch.arange(rank, len(split), world_size, device=split.labels.device)
        )
        for start in range(0, len(index), batch_size):
            images = split.images.index_select(0, index[start : start + batch_size]).to(device, non_blocking=True)
            labels = split.labels.index_select(0, label_index[start : start + batch_size])
            yield normalize(images, memory_format), labels.to(device)
        return
    normalize = Normalizer(info, device)
    subset = Subset(split, range(rank, len(split), world_size))  # type: ignore[arg-type]
    for step, (images, labels) in enumerate(_worker_errors_unwrapped(DataLoader(subset, batch_size=batch_size, num_workers=num_workers))):
        check_labels(labels, info.num_classes, source, f"in its test split, evaluation batch {step}")
        yield normalize(images.to(device), memory_format), labels.to(device)
