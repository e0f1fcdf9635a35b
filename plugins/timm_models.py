"""Any timm model as ``timm/<name>``, with classes and input channels taken from the data.

There is no network at run time: pretrained weights load only from a local file
(``pretrained_file``); asking for ``pretrained`` without one is an error.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torch import nn

from blitz import Register, UsageError, hookimpl
from blitz.checkpoint import describe_load_failure


def _is_timm_model(name: str) -> bool:
    import timm  # imported lazily: it takes a second, and most commands never need it

    return bool(timm.is_model(name))


def _timm_models() -> list[str]:
    import timm

    return list(timm.list_models())


def _fixed_input_size(name: str) -> tuple[int, ...] | None:
    """The input size a timm model is built for, where it takes no other (ViTs, Swin): else None."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return tuple(cfg.input_size) if cfg is not None and cfg.fixed_input_size else None


def _as_pair(size: object) -> object:
    """``img_size`` as timm reads it: 32 means (32, 32)."""
    if isinstance(size, int):
        return (size, size)
    return tuple(size) if isinstance(size, (list, tuple)) else size


def build_timm(
    *,
    variant: str,
    num_classes: int,
    input_shape: tuple[int, ...],
    pretrained: bool = False,
    pretrained_file: str | None = None,
    drop_rate: float = 0.0,
    **kwargs: object,
) -> nn.Module:
    """``timm.create_model(variant)`` sized for the data; extra keywords go to timm."""
    import timm

    if len(input_shape) != 3:
        raise UsageError(f"timm models take images (C, H, W), not inputs of shape {tuple(input_shape)}")
    options: dict[str, object] = {}
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise UsageError(f"Pretrained weights file '{path}' does not exist.")
        options = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    elif pretrained:
        raise UsageError(
            f"timm/{variant}: pretrained weights need a local file (there is no download): pass "
            "--model-arg pretrained_file=PATH to a .safetensors/.pth file."
        )
    image_size = tuple(int(s) for s in input_shape[1:])
    fixed_size = _fixed_input_size(variant)
    if fixed_size is not None and "img_size" not in kwargs:
        kwargs["img_size"] = image_size  # ViTs and the like are built for one size: the data's
    elif fixed_size is not None and _as_pair(kwargs["img_size"]) != image_size:
        raise UsageError(
            f"timm/{variant}: --model-arg img_size={kwargs['img_size']} does not match the data's "
            f"{image_size[0]}x{image_size[1]} images; leave img_size out (blitz sizes the model for the data)."
        )
    try:
        return timm.create_model(
            variant, num_classes=num_classes, in_chans=input_shape[0], drop_rate=drop_rate, **options, **kwargs
        )
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        if pretrained_file is None:
            raise
        raise UsageError(
            f"Pretrained weights file '{pretrained_file}' cannot be loaded into timm/{variant} "
            f"({describe_load_failure(exc)}); "
            "give a .safetensors or .pth state dict saved for this model."
        ) from None


@hookimpl
def register_models(register: Register) -> None:
    register(
        "timm/*",
        build_timm,
        description="Any timm model by name, e.g. timm/resnet18 (no pretrained weights unless a local file is given)",
        validate_variant=_is_timm_model,
        list_variants=_timm_models,
    )
