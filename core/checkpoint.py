"""Checkpoints: one self-describing file, written atomically, loaded without running code.

A checkpoint is a ``torch.save`` of plain containers and tensors: ``format`` and ``version``,
``meta`` (a JSON string: model name and arguments, data source, class names, normalization,
epoch, step, metrics), ``model`` (the state dict), and ``training`` (optimizer, schedule, RNG
and data-order state, for resuming). It is always loaded with ``weights_only=True``, which
refuses anything but tensors and primitive containers, so a file can never run code.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from blitz.errors import CheckpointError
from blitz.files import atomic_write

FORMAT = "blitz-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    training: dict[str, Any]


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "meta": json.dumps(checkpoint.meta),
        "model": {k: v.detach().cpu() for k, v in checkpoint.model.items()},
        "training": checkpoint.training,
    }
    atomic_write(path, lambda f: _save(payload, f))


def _save(payload: dict[str, Any], file: BinaryIO) -> None:
    try:
        torch.save(payload, file)
    except RuntimeError as exc:
        # torch.save turns the file's own OSError (a full disk) into "RuntimeError: [enforce fail
        # at inline_container.cc] unexpected pos": raise the OSError, which callers report as such
        if isinstance(exc.__context__, OSError) and "inline_container" in str(exc):
            raise exc.__context__ from None
        raise


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and check a checkpoint; anything else raises CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at '{path}'.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(  # the caller says what to do instead: it knows what the file was for
            f"'{path}' is not a readable blitz checkpoint: {describe_load_failure(exc)}.", damaged=True
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a blitz checkpoint (no '{FORMAT}' marker).")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"'{path}' has checkpoint version {payload.get('version')}; this blitz reads version {VERSION}."
        )
    try:
        meta = json.loads(payload["meta"])
        model = payload["model"]
        training = payload.get("training", {})
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is a damaged blitz checkpoint: {exc}.", damaged=True) from None
    return Checkpoint(meta=meta, model=model, training=training)


def describe_load_failure(exc: BaseException) -> str:
    """torch.load's (or safetensors') error in a few words: their own text runs long and
    suggests unsafe options. Used for checkpoints and for pretrained weight files."""
    text = str(exc).strip()
    if "weights_only" in text or "pickle" in type(exc).__name__.lower():
        return "it holds pickled objects, not only tensors (another format, or damaged)"
    if "zip archive" in text or "central directory" in text or isinstance(exc, EOFError):
        return "truncated or not a zip archive (damaged, or still being written)"
    if isinstance(exc, KeyError):  # torch.load's legacy reader meeting bytes it cannot use: "174812789"
        return "not a file saved by torch.save or safetensors (damaged, or another format)"
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:  # a seek past the end of a cut file
        return "truncated or damaged (a seek past its end)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 100 else first[:first.rfind(" ", 0, 100)] + " ..."


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch lists the differing keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shape {_few(wrong_shape)}")
        raise CheckpointError(
            f"The checkpoint '{source}' does not fit this model: {'; '.join(parts)}."
        )
    model.load_state_dict(state)


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
