"""``mnet flops`` / ``tools/flops.py``: mult-adds and parameters of MobileNetV1, side by side with
the paper's Tables 2-7, each checked against a hook count on the real model."""
import argparse
from typing import Optional

from .. import cost
from ..model import input_size

HELP = "mult-adds and parameters, the paper's tables, one model's layers"
DESCRIPTION = """Mult-adds and parameters of MobileNetV1, side by side with the paper's Tables 2-7.

  mnet flops                           # all paper tables + hook cross-check
  mnet flops --alpha 0.5 --rho 0.714   # per-layer costs of one model

(python tools/flops.py takes the same arguments, and --plot PNG: mult-adds vs params of the
16 alpha x resolution models, drawn with matplotlib.) Exit code 1 when a count differs."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, help="width multiplier: print this model's layers")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--resolution", type=int, help="input size in pixels (default 224)")
    size.add_argument("--rho", type=float, help="resolution multiplier (input = round(224*rho))")
    parser.add_argument("--conv", action="store_true", help="Conv MobileNet (no separable blocks)")
    parser.add_argument("--shallow", action="store_true", help="shallow MobileNet (Table 5)")


def _one_model(args, resolution: Optional[int]) -> bool:
    variant = dict(separable=not args.conv, shallow=args.shallow)
    alpha, resolution = args.alpha or 1.0, resolution or 224
    print(cost.format_layers(alpha, resolution, **variant))
    analytic, hooked = cost.cross_check(alpha, resolution, **variant)
    print(f"hook count on the real model: {hooked.mult_adds:,} mult-adds, {hooked.params:,} "
          f"params ({'equal' if hooked == analytic else 'DIFFERENT'})")
    return hooked == analytic


def _paper_tables() -> bool:
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
    return ok


def run(args: argparse.Namespace) -> int:
    resolution = input_size(args.rho) if args.rho else args.resolution
    if args.alpha is not None or resolution or args.conv or args.shallow:
        ok = _one_model(args, resolution)
    else:
        ok = _paper_tables()
    return 0 if ok else 1
