r"""Deploy a trained SSD / SSDLite detector end to end (image -> boxes, scores, labels, NMS in
the graph) on the fastest CPU runtime, and check it against PyTorch (``mnet deploy``,
``tools/deploy.py``).

    mnet deploy configs/ssdlite320_mnet_shapes.py work_dirs/main_job/epoch_30.pth \
        --output deployed/ [--backend {auto,onnxruntime,openvino,executorch,litert}] \
        [--precision {fp32,bf16,int8}] [--calib-dir data/shapes/train2017] [--val]
    mnet deploy torchvision:ssdlite320_mobilenet_v1 model.pth --output deployed/ \
        --model-kwargs '{"num_classes": 6, "alpha": 0.25}' \
        [--val --val-ann ann.json --val-img-dir images/]

(python tools/deploy.py takes the same arguments.) Writes DIR/detector_fp32.onnx (and
detector_int8.onnx) and DIR/deploy.json (which also names the checkpoint: its path and
SHA-256); a failed deploy leaves DIR as it was. With --backend executorch / litert:
DIR/detector_fp32.pte / .tflite (and int8), each with its spec in <file>.json, and the summary's
placement says which part runs in the file and which on the host. Prints a JSON summary on its
last line: backend, precision, file, max_abs_diff_vs_pytorch (raw head outputs, fp32),
latency_ms_b1, and with --val map_pytorch / map_deployed (COCO bbox mAP on the val set).
Run the folder with ``mnet predict DIR SOURCE``, or load it with
``mnet_backbone.deploy.DeployedDetector(DIR)``.
"""
import argparse
import json
import os
import sys
from typing import List, Optional

from ..deploy.detector_pipeline import ValSet, deploy_detector
from ..inference.models import ModelArgumentError, TrainedModel, load_trained
from ..weights.hub import sha256sum
from .common import run_command

HELP = "deploy a trained detector to ONNX Runtime / OpenVINO / ExecuTorch / LiteRT, checked"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="mmdet config file, or torchvision:BUILDER")
    p.add_argument("checkpoint", help="mmdet checkpoint (.pth) or torchvision state dict")
    p.add_argument("--output", required=True, help="folder to write the deployed files into")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "onnxruntime", "openvino", "executorch", "litert"],
                   help="executorch / litert: a .pte / .tflite file for phones and edge boards "
                        "(XNNPACK); the NMS runs on the host (the summary's placement)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--calib-dir", help="folder of your images to calibrate int8 on")
    p.add_argument("--calib-limit", type=int, default=100, help="calibration images (default 100)")
    p.add_argument("--val", action="store_true", help="COCO mAP of PyTorch and of the deployed "
                   "file on the val set (mmdet: the config's)")
    p.add_argument("--val-limit", type=int, help="evaluate on the first N val images only")
    p.add_argument("--val-ann", help="val annotation json (torchvision models)")
    p.add_argument("--val-img-dir", help="val image folder (torchvision models)")
    p.add_argument("--class-names", nargs="+", help="class names (torchvision models)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    p.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of the "
                   "torchvision builder (num_classes, alpha, ...)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides of the mmdet config")


def model_kwargs(text: str) -> dict:
    """``--model-kwargs``: a JSON object."""
    try:
        kwargs = json.loads(text or "{}")
    except ValueError as exc:
        kwargs = exc
    if not isinstance(kwargs, dict):
        raise ModelArgumentError(f"--model-kwargs {text!r} is not a JSON object ({kwargs}); "
                                 "pass e.g. '{\"num_classes\": 6, \"alpha\": 0.25}'")
    return kwargs


def cfg_options(options: List[str]) -> Optional[dict]:
    """``--cfg-options KEY=VALUE ...`` as mmengine parses them (None when there are none)."""
    if not options:
        return None
    from ..openmmlab.commands import parse_cfg_options  # the OpenMMLab faces' own parser
    return parse_cfg_options(options)


def _val_set(args: argparse.Namespace, trained: TrainedModel) -> Optional[ValSet]:
    if not args.val:
        return None
    if trained.face == "mmdet":
        from ..mmdet_plugin.deploy import val_set
        return val_set(trained.config, args.val_limit)
    if not (args.val_ann and args.val_img_dir):
        raise ValueError("--val with a torchvision model needs --val-ann and --val-img-dir")
    return ValSet.from_coco(args.val_ann, args.val_img_dir, limit=args.val_limit)


def run(args: argparse.Namespace) -> int:
    """Load the detector (the package's fit check), deploy it, print the summary."""
    trained = load_trained(args.config, args.checkpoint,
                           model_kwargs=model_kwargs(args.model_kwargs),
                           cfg_options=cfg_options(args.cfg_options),
                           class_names=args.class_names)
    if trained.task != "detection":
        raise ModelArgumentError(f"{args.config} is a classifier; deploy detectors here, and "
                                 f"export classifiers with tools/export_onnx.py")
    checkpoint = dict(path=os.path.abspath(args.checkpoint), sha256=sha256sum(args.checkpoint))
    summary = deploy_detector(trained.model, args.output, precision=args.precision,
                              backend=args.backend, calib_dir=args.calib_dir,
                              calib_limit=args.calib_limit, val=_val_set(args, trained),
                              pytorch_predict=trained.predict, class_names=trained.class_names,
                              threads=args.threads, checkpoint=checkpoint)
    for key, value in summary.items():
        print(f"  {key}: {value}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def main(argv: Optional[List[str]] = None, prog: str = "deploy.py") -> int:
    """``tools/deploy.py``: the same arguments and errors as ``mnet deploy``."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(run, parser.parse_args(argv), prog)
