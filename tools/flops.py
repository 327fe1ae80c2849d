"""Mult-adds and parameters of MobileNetV1, side by side with the paper's Tables 2-7.

    python tools/flops.py                           # all paper tables + hook cross-check
    python tools/flops.py --alpha 0.5 --rho 0.714   # per-layer costs of one model
    python tools/flops.py --plot cost.png           # mult-adds vs params, 16 alpha x resolution
"""
import argparse
import sys

from cost_plot import plot_cost_grid

from mnet_backbone import cost
from mnet_backbone.model import input_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--alpha", type=float, help="width multiplier: print this model's layers")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--resolution", type=int, help="input size in pixels (default 224)")
    size.add_argument("--rho", type=float, help="resolution multiplier (input = round(224*rho))")
    parser.add_argument("--conv", action="store_true", help="Conv MobileNet (no separable blocks)")
    parser.add_argument("--shallow", action="store_true", help="shallow MobileNet (Table 5)")
    parser.add_argument("--plot", metavar="PNG", help="write mult-adds vs params of 16 models")
    args = parser.parse_args(argv)

    resolution = input_size(args.rho) if args.rho else args.resolution
    if args.alpha is not None or resolution or args.conv or args.shallow:
        variant = dict(separable=not args.conv, shallow=args.shallow)
        alpha, resolution = args.alpha or 1.0, resolution or 224
        print(cost.format_layers(alpha, resolution, **variant))
        analytic, hooked = cost.cross_check(alpha, resolution, **variant)
        print(f"hook count on the real model: {hooked.mult_adds:,} mult-adds, {hooked.params:,} "
              f"params ({'equal' if hooked == analytic else 'DIFFERENT'})")
        ok = hooked == analytic
    else:
        rows = cost.paper_tables()
        print(cost.format_paper_tables(rows))
        print("\nHook count on real models vs the analytic count:")
        ok = all(r.matches for r in rows)
        for label, kwargs in (("1.0-224", {}), ("0.75-224", dict(alpha=0.75)),
                              ("0.25-128", dict(alpha=0.25, resolution=128)),
                              ("Conv MobileNet", dict(separable=False)),
                              ("Shallow", dict(shallow=True))):
            analytic, hooked = cost.cross_check(**kwargs)
            same = analytic == hooked
            ok &= same
            verdict = 'equal' if same else f'DIFFERENT from {analytic}'
            print(f"  {label:15} {hooked.mult_adds / 1e6:9.2f}M mult-adds "
                  f"{hooked.params / 1e6:6.3f}M params  {verdict}")
        print("\nall rows match the paper" if ok else "\nSOME ROWS DIFFER")
    if args.plot:
        print(f"plot written to {plot_cost_grid(args.plot)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
