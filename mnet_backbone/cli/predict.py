r"""Run a trained or deployed model on images, a folder, a glob, a video or a camera; write the
drawn images (or video) and one COCO-results JSON (``mnet predict``).

    mnet predict configs/ssdlite320_mnet_shapes.py epoch_30.pth photos/          # mmdet
    mnet predict torchvision:ssdlite320_mobilenet_v1 model.pth clip.mp4 \
        --model-kwargs '{"num_classes": 6, "alpha": 0.25}' --class-names a b c d e
    mnet predict deployed/ 'photos/*.jpg' --backend openvino --score-thr 0.5     # mnet deploy's
    mnet predict detector_fp32.tflite 0 --max-frames 300                         # camera 0
    mnet predict configs/mnet_cls_shapes.py epoch_20.pth photo.jpg --top-k 3    # a classifier

MODEL is a config (mmdet or mmpretrain) followed by its CHECKPOINT, torchvision:BUILDER
followed by its state dict (or, for torchvision:mobilenet_v1, a weights entry name), or a
deployed folder / .onnx / .pte / .tflite file (no checkpoint). SOURCE is an image, a folder of
images, a glob in quotes, a video file or a camera index.

Writes into --out (default predictions/): predictions.json (COCO results: image_id, category_id,
bbox [x, y, w, h], score, plus file_name and category_name; a classifier's top-k with rank),
and the drawn images under their own names, or a video's frames as <name>.mp4. Prints a
summary line: images, detections, ms per image, backend. Unreadable images of a folder are
skipped and counted; bad input is one error line and exit code 2.
"""
import argparse
import os
import sys
from typing import List, Tuple

from ..files import check_writable_folder
from ..images import IMAGE_EXTENSIONS
from ..inference.models import ModelArgumentError, model_kind, open_predictor
from ..inference.run import predict_source
from ..inference.sources import open_source
from .deploy import cfg_options, model_kwargs

HELP = "run a trained or deployed model on images, folders, videos or a camera"
DESCRIPTION = __doc__
USAGE = ("%(prog)s MODEL [CHECKPOINT] SOURCE [--out DIR] [--score-thr T] [--backend B] "
         "[--device D] [options]")
POSITIONALS = "inputs"  # [CHECKPOINT] SOURCE may also come after options
SHOW_SKIPPED = 10  # unreadable images named one by one on stderr
BACKENDS = ("auto", "pytorch", "onnxruntime", "openvino", "executorch", "litert")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="config (.py) or torchvision:BUILDER, each followed by CHECKPOINT; or a "
                        "deployed folder / .onnx / .pte / .tflite")
    p.add_argument("inputs", nargs="+", metavar="[CHECKPOINT] SOURCE",
                   help="the checkpoint (configs and builders only), then an image, a folder, "
                        "a glob in quotes, a video file or a camera index")
    p.add_argument("--out", default="predictions", metavar="DIR",
                   help="folder for predictions.json and the drawn images (default: "
                        "predictions)")
    p.add_argument("--score-thr", type=float, default=0.3, metavar="T",
                   help="keep detections scoring at least this (default 0.3)")
    p.add_argument("--top-k", type=int, default=5, metavar="K",
                   help="a classifier's labels per image (default 5)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="deployed models: auto (the fastest measured), onnxruntime, openvino, "
                        "executorch, litert; configs and builders: pytorch")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"],
                   help="the deployed folder's file to run (bf16: the fp32 file on OpenVINO)")
    p.add_argument("--device", default="cpu", metavar="D",
                   help="PyTorch device for configs and builders (cpu, cuda, cuda:1, ...)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="deployed models: intra-op threads (default: torch's)")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="stop after N images or frames (a camera runs until Ctrl-C otherwise)")
    p.add_argument("--no-draw", action="store_true", help="write predictions.json only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--model-kwargs", default="{}", metavar="JSON",
                   help="keyword arguments of a torchvision builder (num_classes, alpha, "
                        "score_thresh, ...)")
    p.add_argument("--class-names", nargs="+", metavar="NAME",
                   help="class names, when the model carries none (torchvision: foreground "
                        "classes in label order)")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help="a torchvision classifier's input side (default 224)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides of the config")


def split_inputs(model: str, inputs: List[str]) -> Tuple[str, str]:
    """(checkpoint or '', source) from the positionals after MODEL, by the model's kind."""
    kind = model_kind(model)
    wanted = 1 if kind == "deployed" else 2
    if len(inputs) == wanted:
        return ("", inputs[0]) if wanted == 1 else (inputs[0], inputs[1])
    if len(inputs) > wanted:
        images = [i for i in inputs if i.lower().endswith(IMAGE_EXTENSIONS)]
        hint = ("; the shell expanded a glob: quote it ('photos/*.jpg') or pass the folder"
                if len(images) >= 2 else "")
        extra = ("a deployed model holds its weights: leave out the checkpoint"
                 if kind == "deployed" and len(inputs) == 2 else
                 f"expected {'MODEL SOURCE' if wanted == 1 else 'MODEL CHECKPOINT SOURCE'}, got "
                 f"{len(inputs) + 1} arguments")
        raise ModelArgumentError(f"{extra}{hint}")
    raise ModelArgumentError(f"{model!r} needs its checkpoint and a source: mnet predict MODEL "
                             f"CHECKPOINT SOURCE")


def run(args: argparse.Namespace) -> int:
    """Check MODEL, SOURCE and --out (cheap) before the model loads; predict; summarise."""
    if not 0.0 <= args.score_thr <= 1.0:
        raise ValueError(f"--score-thr {args.score_thr} is not a score; pass one in [0, 1]")
    if args.top_k < 1 or (args.max_frames is not None and args.max_frames < 1):
        raise ValueError("--top-k and --max-frames count from 1")
    checkpoint, source_arg = split_inputs(args.model, args.inputs)
    source = open_source(source_arg)
    try:
        check_writable_folder(os.path.abspath(args.out), "pass another --out")
        predictor = open_predictor(args.model, checkpoint or None, backend=args.backend,
                                   precision=args.precision, device=args.device,
                                   threads=args.threads,
                                   model_kwargs=model_kwargs(args.model_kwargs),
                                   cfg_options=cfg_options(args.cfg_options),
                                   class_names=args.class_names, input_size=args.input_size)
    except BaseException:
        source.close()
        raise
    if predictor.choice is not None:
        print(f"mnet predict: backend {predictor.choice.describe()}", file=sys.stderr)
    summary = predict_source(predictor, source, args.out, score_thr=args.score_thr,
                             top_k=args.top_k, draw=not args.no_draw,
                             max_frames=args.max_frames, progress=not args.no_progress)
    for _, why in summary.skipped[:SHOW_SKIPPED]:
        print(f"mnet predict: skipped: {why}", file=sys.stderr)
    if len(summary.skipped) > SHOW_SKIPPED:
        print(f"mnet predict: skipped {len(summary.skipped) - SHOW_SKIPPED} more unreadable "
              f"images", file=sys.stderr)
    print(f"mnet predict: {summary.line()}")
    return 0
