"""Mult-adds and parameters of MobileNetV1, side by side with the paper's Tables 2-7: the command
``mnet flops``, plus ``--plot`` (matplotlib, which the package does not depend on).

    python tools/flops.py                           # all paper tables + hook cross-check
    python tools/flops.py --alpha 0.5 --rho 0.714   # per-layer costs of one model
    python tools/flops.py --plot cost.png           # mult-adds vs params, 16 alpha x resolution
"""
import argparse
import sys

from cost_plot import plot_cost_grid

from mnet_backbone.cli import flops, run_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="flops.py", description=flops.DESCRIPTION,
                                     formatter_class=argparse.RawTextHelpFormatter)
    flops.add_arguments(parser)
    parser.add_argument("--plot", metavar="PNG", help="write mult-adds vs params of 16 models")
    args = parser.parse_args(argv)
    code = run_command(flops.run, args, "flops.py")
    if args.plot and code != 2:
        print(f"plot written to {plot_cost_grid(args.plot)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
