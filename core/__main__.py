"""``python -m blitz``: the CLI (torchrun starts DDP processes this way)."""

from blitz.cli import main

if __name__ == "__main__":
    main()
