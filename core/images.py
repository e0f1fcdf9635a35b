"""Image files to uint8 (C, H, W) arrays: one decoder for training data and for `blitz predict`,
so that a file gives the model the same pixels in both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def decode_image(path: Path, height: int, width: int, mode: str) -> np.ndarray:
    """``path`` as uint8 (C, height, width) in PIL ``mode`` ("RGB" or "L"), resized bilinearly
    if it is another size; PIL's exceptions pass through."""
    with Image.open(path) as image:
        # JPEG can decode straight at a reduced scale (>= the size): much faster for big photos.
        image.draft(mode, (width, height))
        image = image.convert(mode) if image.mode in ("RGB", "L") else _eight_bit(image).convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit samples: PIL's ``convert`` clips 16-bit gray at 255 instead of
    scaling it, which would turn a 16-bit PNG or PGM almost white. Modes I;16* and I (PIL's mode
    for 16-bit PGM and 32-bit integer TIFF) are taken as 16-bit, 0..65535, for every image alike
    (a dark image must not be read on another scale than a bright one). Float images (mode F)
    are refused: ``convert`` would clip them to black. Other modes (palette, RGBA: alpha dropped,
    CMYK, ...) pass through for ``convert``."""
    if image.mode == "F":  # floats: 0..1 or 0..255 or anything else; no scale to assume
        raise ValueError(
            "32-bit float pixels (PIL mode F), whose scale is not known; save it with 8 or 16 bits per sample"
        )
    if not (image.mode.startswith("I;16") or image.mode == "I"):
        return image
    values = np.asarray(image, dtype=np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
