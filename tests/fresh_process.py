"""What a snippet prints when run in a fresh interpreter: for what a process imports at start
(an import already made by another test would hide it here)."""

from __future__ import annotations

import subprocess
import sys


def printed_by(code: str) -> str:
    """The stripped stdout of ``python -c code``, which must succeed."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
