"""An optimizer's state as the engine handles it: put back after a trial step or on resume, and
whether anything else watches its steps."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import optimizer as optimizer_module


def has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether anything runs at this optimizer's steps: its own hooks or every optimizer's."""
    # Runs at every step of LeanSGD: plain attribute reads (every torch optimizer has these).
    return bool(
        optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
        or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks
    )


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(saved)``, keeping its ``param_groups`` list and group dicts.

    load_state_dict installs new ones; a schedule or plugin that kept a reference to the old
    ones (as LambdaLR-style code may) would go on setting learning rates nobody reads.
    """
    groups, old = optimizer.param_groups, list(optimizer.param_groups)
    optimizer.load_state_dict(saved)
    for kept, loaded in zip(old, optimizer.param_groups):
        kept.clear()
        kept.update(loaded)
    groups[:] = old
    optimizer.param_groups = groups
