r"""Deploy a trained SSD / SSDLite detector end to end (image -> boxes, scores, labels, NMS in
the graph) on the fastest CPU runtime, and check it against PyTorch.

    python tools/deploy.py configs/ssdlite320_mnet_shapes.py work_dirs/main_job/epoch_30.pth \
        --output deployed/ [--backend {auto,onnxruntime,openvino,executorch,litert}] \
        [--precision {fp32,bf16,int8}] [--calib-dir data/shapes/train2017] [--val]
    python tools/deploy.py torchvision:ssdlite320_mobilenet_v1 model.pth --output deployed/ \
        --model-kwargs '{"num_classes": 6, "alpha": 0.25}' \
        [--val --val-ann ann.json --val-img-dir images/]

Writes DIR/detector_fp32.onnx (and detector_int8.onnx) and DIR/deploy.json (which also names the
checkpoint: its path and SHA-256); a failed deploy leaves DIR as it was. With --backend
executorch / litert: DIR/detector_fp32.pte / .tflite (and int8), each with its spec in
<file>.json, and the summary's placement says which part runs in the file and which on the
host. Prints a JSON summary on its last line: backend, precision, file, max_abs_diff_vs_pytorch
(raw head outputs, fp32), latency_ms_b1, and with --val map_pytorch / map_deployed (COCO bbox
mAP on the val set).
Load the folder with ``mnet_backbone.deploy.DeployedDetector(DIR)``.
"""
import argparse
import json
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return p.parse_args(argv)


def build(args):
    """(model, val set or None, PyTorch predict function, class names) for the arguments."""
    from mnet_backbone.deploy.detector_pipeline import ValSet

    if args.config.startswith("torchvision:"):
        from mnet_backbone.tv_models.deploy import load_tv_detector, pytorch_predict
        model = load_tv_detector(args.config.split(":", 1)[1], args.checkpoint,
                                 **json.loads(args.model_kwargs))
        val = None
        if args.val:
            if not (args.val_ann and args.val_img_dir):
                raise ValueError("--val with a torchvision model needs --val-ann and "
                                 "--val-img-dir")
            val = ValSet.from_coco(args.val_ann, args.val_img_dir, limit=args.val_limit)
        return model, val, pytorch_predict(model), args.class_names
    from mnet_backbone.mmdet_plugin.deploy import load_detector, pytorch_predict, val_set
    from mnet_backbone.openmmlab.commands import parse_cfg_options
    model, cfg = load_detector(args.config, args.checkpoint, parse_cfg_options(args.cfg_options))
    val = val_set(cfg, args.val_limit) if args.val else None
    return model, val, pytorch_predict(model), list(model.dataset_meta.get("classes", ())) or None


def main(argv=None) -> int:
    args = parse_args(argv)
    from mnet_backbone.deploy.detector_pipeline import deploy_detector
    from mnet_backbone.weights.hub import sha256sum

    try:
        model, val, predict, names = build(args)
        checkpoint = dict(path=os.path.abspath(args.checkpoint),
                          sha256=sha256sum(args.checkpoint))
        summary = deploy_detector(model, args.output, precision=args.precision,
                                  backend=args.backend, calib_dir=args.calib_dir,
                                  calib_limit=args.calib_limit, val=val, pytorch_predict=predict,
                                  class_names=names, threads=args.threads,
                                  checkpoint=checkpoint)
    except (ValueError, OSError, ImportError) as exc:  # the package's errors say what to do
        print(f"deploy.py: error: {exc}", file=sys.stderr)
        return 2
    for key, value in summary.items():
        print(f"  {key}: {value}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
