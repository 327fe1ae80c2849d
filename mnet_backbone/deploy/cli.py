"""Command line of ``tools/export_onnx.py``: ONNX (+ verification), TorchScript and int8 files."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import torch

from ..files import check_writable_folder
from ..model import MobileNetV1
from ..shapes import render_shapes
from ..weights import ENTRIES, mobilenet_v1
from .data import calibration_files, normalize, read_images
from .export import DEFAULT_OPSET, check_export_settings, export_onnx, export_torchscript, \
    verify_onnx, verify_torchscript
from . import quant

__all__ = ["main", "build_model", "export_files"]


def build_model(weights: Optional[str] = None, alpha: float = 1.0, num_classes: int = 1000,
                out_indices=(4,)) -> MobileNetV1:
    """A core model, with weights (an entry name or a file of any supported source) if given."""
    if not weights:
        return MobileNetV1(num_classes, alpha, out_indices=out_indices).eval()
    kwargs = dict(out_indices=out_indices)
    if weights not in ENTRIES:
        kwargs.update(alpha=alpha, num_classes=num_classes)
    return mobilenet_v1(weights=weights, **kwargs).eval()


def export_files(model: MobileNetV1, onnx_path: str, *, features: bool = False,
                 resolution: int = 224, opset: int = DEFAULT_OPSET,
                 torchscript: Optional[str] = None, int8: Optional[str] = None,
                 calib_dir: Optional[str] = None, calib_limit: int = 200,
                 calib_method: str = "minmax", verify: bool = True) -> Dict[str, object]:
    """Write the ONNX file (and optionally TorchScript and int8 ones); verify each against the
    PyTorch model on a batch of 3 inputs. Returns a summary (paths, differences, agreement).

    A missing calibration folder, or one without images, is a
    :class:`~mnet_backbone.deploy.data.CalibrationError` before any export work; other files in it
    and undecodable images are skipped and counted in ``summary["calibration"]``."""
    calib = None
    if int8 and calib_dir:  # listed and decoded before any export work
        files, non_images = calibration_files(calib_dir, calib_limit)
        raw, bad = read_images(files, resolution)
        calib = normalize(raw), (f"{len(raw)} images from {calib_dir} ({non_images} non-image "
                                 f"files, {bad} undecodable skipped)")
    summary: Dict[str, object] = {}
    x = torch.randn(3, model.in_channels, resolution, resolution)
    export_onnx(model, onnx_path, features=features, resolution=resolution, opset=opset)
    summary["onnx"] = onnx_path
    if verify:
        check = verify_onnx(onnx_path, model, x, features=features)
        summary["onnx_max_abs_diff"] = check.max_abs
        summary["onnx_outputs"] = {k: "x".join(map(str, v)) for k, v in check.shapes.items()}
    if torchscript:
        export_torchscript(model, torchscript, features=features)
        summary["torchscript"] = torchscript
        if verify:
            summary["torchscript_max_abs_diff"] = verify_torchscript(torchscript, model, x,
                                                                     features=features)
    if int8:
        if calib is not None:
            images, source = calib
        else:
            images = normalize(render_shapes(calib_limit, resolution, seed=20_000)[0])
            source = f"{len(images)} rendered shape images (pass --calib-dir for your own)"
        quant.quantize_int8(onnx_path, int8, images, method=calib_method)
        summary.update(int8=int8, calibration=source)
        if verify and not features:
            summary["int8_vs_fp32_on_calibration_images"] = quant.agreement(
                onnx_path, int8, images).as_dict()
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="export_onnx.py",
        description="Export MobileNetV1 (BN folded) to ONNX with a dynamic batch axis, verify it "
                    "with ONNX Runtime; optionally TorchScript and an int8 ONNX file.")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--weights", help="weights entry name (e.g. keras_1.0_224) or file")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--features", action="store_true",
                   help="export the backbone: one output per stage in --out-indices")
    p.add_argument("--out-indices", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--torchscript", metavar="PT", help="also write a TorchScript file")
    p.add_argument("--int8", metavar="ONNX", help="also write a statically quantized int8 file")
    p.add_argument("--calib-dir", help="folder of calibration images for --int8 (your data)")
    p.add_argument("--calib-limit", type=int, default=200)
    p.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile",
                                                                 "entropy"])
    p.add_argument("--no-verify", action="store_true")
    args = p.parse_args(argv)
    out_indices = tuple(args.out_indices) if args.features else (4,)
    try:  # the settings, output folders and calibration folder before any download or export
        check_export_settings(args.resolution, args.opset)
        for path in filter(None, (args.output, args.torchscript, args.int8)):
            check_writable_folder(os.path.dirname(os.path.abspath(path)),
                                  f"write {path} into a folder you can write to")
        if args.int8 and args.calib_dir:
            calibration_files(args.calib_dir, args.calib_limit)
        model = build_model(args.weights, args.alpha, args.num_classes, out_indices)
        summary = export_files(model, args.output, features=args.features,
                               resolution=args.resolution, opset=args.opset,
                               torchscript=args.torchscript, int8=args.int8,
                               calib_dir=args.calib_dir, calib_limit=args.calib_limit,
                               calib_method=args.calib_method, verify=not args.no_verify)
    except (ValueError, OSError, ImportError) as exc:  # the package's errors say what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1, default=str))
    return 0
