"""The ``cpu`` strategy: one process on the CPU."""

from __future__ import annotations

from blitz import Register, Strategy, UsageError, hookimpl


class CPUStrategy(Strategy):
    name = "cpu"


def build_cpu(*, device: str | None = None) -> CPUStrategy:
    check_cpu_device(device)
    if device not in (None, "cpu"):
        raise UsageError(f"The cpu strategy runs on 'cpu', not '{device}'; use --strategy cuda for a GPU.")
    return CPUStrategy("cpu")


def check_cpu_device(device: str | None) -> None:
    """Refuse 'cpu:N': PyTorch has one CPU device (its cores are threads: --cpu-threads)."""
    if device is not None and device.startswith("cpu:"):
        raise UsageError(f"--device '{device}': give 'cpu' (PyTorch has one CPU device; --cpu-threads sets how many cores it uses).")


@hookimpl
def register_strategies(register: Register) -> None:
    register("cpu", build_cpu, description="One process on the CPU")
