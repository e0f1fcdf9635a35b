"""The ``cpu`` strategy: one process on the CPU."""

from __future__ import annotations

from blitz import Register, Strategy, UsageError, hookimpl


class CPUStrategy(Strategy):
    name = "cpu"


def build_cpu(*, device: str | None = None) -> CPUStrategy:
    if device not in (None, "cpu"):
        raise UsageError(f"The cpu strategy runs on 'cpu', not '{device}'; use --strategy cuda for a GPU.")
    return CPUStrategy("cpu")


@hookimpl
def register_strategies(register: Register) -> None:
    register("cpu", build_cpu, description="One process on the CPU")
