"""The ``mnet`` command (``python -m mnet_backbone`` too): what users do, one subcommand each.

    mnet predict MODEL [CHECKPOINT] SOURCE [--out DIR] [--score-thr T] [--backend B] [--device D]
    mnet deploy CONFIG CHECKPOINT --output DIR [--backend B] [--precision P] [--val]
    mnet convert-weights SRC DST [--from keras|timm|sequential|plain|tf_graph]
    mnet flops [--alpha A] [--rho R | --resolution N]
    mnet info [--json]

Each subcommand is a module with ``HELP``, ``DESCRIPTION`` (and ``USAGE``),
``add_arguments(parser)`` and ``run(args) -> int`` over the library's functions;
``tools/deploy.py``, ``tools/flops.py`` and ``tools/convert_weights.py`` run the same modules.
Bad input ends a command with one ``mnet <command>: error: ...`` line naming the problem and the
fix, and exit code 2, no traceback (docs/command_line.md).
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from .. import __version__
from ..weights import cli as convert_weights
from . import deploy, flops, info, predict
from .common import EXPECTED_ERRORS, one_line, run_command

__all__ = ["main", "build_parser", "run_command", "one_line", "EXPECTED_ERRORS", "COMMANDS"]

COMMANDS = {"predict": predict, "deploy": deploy, "convert-weights": convert_weights,
            "flops": flops, "info": info}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnet", description="MobileNetV1 (mnet-backbone): predict with a trained or "
        "deployed model, deploy a detector, convert weights, count costs, describe this "
        "machine. 'mnet COMMAND --help' for each; docs/command_line.md for all of them.")
    parser.add_argument("--version", action="version", version=f"mnet-backbone {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                  usage=getattr(module, "USAGE", None),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # argparse takes a command's positionals in one run; ones given after an option (mnet
    # predict CONFIG CKPT --score-thr 0.5 photos/) come back here, and belong to the command's
    # trailing positional list (its POSITIONALS attribute) when it has one.
    trailing = getattr(COMMANDS[args.command], "POSITIONALS", None)
    if trailing and rest[:1] == ["--"]:  # `--class-names a b -- photos/`
        rest = rest[1:]
    if rest and trailing and not any(r.startswith("-") for r in rest):
        setattr(args, trailing, getattr(args, trailing) + rest)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_command(args.run, args, f"mnet {args.command}")
