"""What every ``mnet`` subcommand and ``tools/`` wrapper shares: bad input as one line."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..deploy.detector_export import UnsupportedDetectorError
from ..weights.hub import WeightsError

__all__ = ["EXPECTED_ERRORS", "one_line", "run_command"]

# The package's errors for bad input (each message names the problem and the fix); anything
# else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, ImportError, WeightsError, UnsupportedDetectorError)


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or \
        type(exc).__name__


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                prog: str) -> int:
    """``run(args)``; an expected error is one ``prog: error: ...`` line on stderr and exit
    code 2 (argparse's own code for a bad command line)."""
    try:
        return run(args)
    except EXPECTED_ERRORS as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
