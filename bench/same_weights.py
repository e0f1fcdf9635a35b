"""Whether two runs ended with the same weights: each tensor of their last checkpoints compared.

    python bench/same_weights.py RUN_DIR_A RUN_DIR_B

gpu_check.sh's part graphs-check trains one epoch of airbench94_muon with --deterministic twice,
without and with --cuda-graphs: replaying the captured kernels must compute what launching them
one by one does. Prints the largest difference; exits 1 where any tensor differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from blitz.checkpoint import load_checkpoint


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = (load_checkpoint(Path(run) / "checkpoints" / "last.ckpt").model for run in argv)
    if a.keys() != b.keys():
        print(f"different tensors: {sorted(a.keys() ^ b.keys())}")
        return 1
    differing = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    if not differing:
        print(f"same weights: all {len(a)} tensors equal")
        return 0
    worst = max(differing, key=differing.__getitem__)
    print(f"{len(differing)} of {len(a)} tensors differ; the most: {worst} by {differing[worst]:.3g}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
