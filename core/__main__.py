"""``blitz`` and ``python -m blitz`` (torchrun starts DDP processes this way): the CLI.

Its own modules (typer, rich, blitz.cli) take a few tenths of a second to import, before blitz
can handle Ctrl-C: one pressed then is a clean stop too, not a traceback.
"""

from __future__ import annotations

import sys

from blitz.stopping import INTERRUPTED


def main() -> None:
    """Console-script entry point."""
    try:
        from blitz.cli import main as run_command_line
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        raise SystemExit(130) from None
    run_command_line()


if __name__ == "__main__":
    main()
