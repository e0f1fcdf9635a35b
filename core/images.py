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
        image = image.convert(mode)  # palette, RGBA (alpha dropped), CMYK, 16-bit, ... -> RGB or L
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
