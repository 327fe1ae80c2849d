"""Command line of ``mnet convert-weights`` and ``tools/convert_weights.py`` (functions, so the
tests call them too)."""
import argparse
import sys
from typing import List, Optional

from .convert import SOURCES
from .load import convert_to_file
from .entries import ENTRIES
from .hub import WeightsError

HELP = "convert MobileNetV1 weights (Keras, timm, TF graphs, ...) to this package's format"
DESCRIPTION = """Convert MobileNetV1 weights to this package's checkpoint format.

  mnet convert-weights mobilenet_1_0_224_tf.h5 mnet_keras_1.0_224.pth --from keras
  mnet convert-weights model.safetensors mnet_timm.pth --from timm
  mnet convert-weights keras_0.5_160 mnet_0.5_160.pth      # a registered entry
  mnet convert-weights mobilenet_v1_0.5_160.tgz mnet_tf.pth --drop-background  # TF graph

(python tools/convert_weights.py takes the same arguments.)
The output ({'state_dict', 'meta'}) loads with mmdet's init_cfg=dict(type='Pretrained',
checkpoint=...), with mnet_backbone.weights.load_weights / mobilenet_v1(weights=PATH) and the
torchvision builders. Keras weights need tf_padding=True and BN eps 1e-3 (recorded in 'meta';
in an mmdet config set them on the backbone, or use checkpoint='mnet://PATH', which does it).
TF frozen graphs (.pb, or Google's release .tgz) are read without TensorFlow; their settings come
from the graph; their 1001-class head keeps class 0 = background unless --drop-background.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="weights file (.h5, .safetensors, .pth, .bin, .pb, .tgz) or entry "
                               "name "
                               f"({', '.join(list(ENTRIES)[:2])}, ...)")
    p.add_argument("dst", help="output checkpoint (.pth)")
    p.add_argument("--from", dest="source", choices=SOURCES,
                   help="the source's layout (default: detected from the file)")
    p.add_argument("--backbone-only", action="store_true", help="leave the classifier out")
    p.add_argument("--drop-background", action="store_true",
                   help="TF-slim 1001-class head -> the 1000 ImageNet classes (class 0 removed)")


def parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Convert; the package's errors propagate (the callers print them in one line)."""
    meta = convert_to_file(args.src, args.dst, args.source, args.backbone_only,
                           args.drop_background)
    settings = ", ".join(f"{k}={v!r}" for k, v in meta["model_kwargs"].items()) or "defaults"
    print(f"wrote {args.dst}: {meta['source']} weights, stem {meta['stem_channels']} channels, "
          f"{meta['num_classes'] or 'no'} classes; model settings: {settings}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (WeightsError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
