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
