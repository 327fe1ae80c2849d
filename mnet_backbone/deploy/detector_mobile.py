"""SSD / SSDLite detectors on the mobile runtimes: the ONNX path's graph, NMS on the host.

Neither ExecuTorch nor LiteRT can hold greedy NMS as the ONNX file does (its output size depends
on the data: "Cannot evaluate a finite upper bound for symbolic expression" in ExecuTorch), so
a mobile detector file holds :class:`~.detector_export.DetectorGraph`, the same module the ONNX
export traces, and the host runs the rest with :func:`~.detector_export.nms_tail`:

* in the file (:data:`IN_FILE`): resize to the network input (bilinear), normalisation,
  backbone + neck + head, anchor decoding and clipping, softmax, the min-size filter, the score
  threshold and the model's candidate selection (mmdet ``nms_pre`` per level, torchvision
  ``topk_candidates`` per class); outputs :data:`~.detector_export.GRAPH_OUTPUTS`;
* on the host (:data:`ON_HOST`): greedy NMS per class, the ``max_det`` best, boxes scaled to
  the image.

The file takes one 1 x 3 x H x W RGB image (0-255) of the size it was exported for
(``image_size``, default the network's input size); :class:`~.detector_runtime.DeployedDetector`
resizes other images to it on the host first (the graph's own bilinear resize) and maps the
boxes back. The detector spec, the image size and what runs where are stored next to the file,
in ``<file>.json`` (:func:`read_mobile_spec`). int8 quantizes the network only
(backbone, neck and head); the decoding and the scores stay fp32.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..files import atomic_write
from .detector_export import (GRAPH_OUTPUTS, DetectorGraph, DetectorSpec, detector_spec)
from .mobile import export_program, file_size_mb, runtime_of

__all__ = ["export_detector_mobile", "read_mobile_spec", "spec_file", "IN_FILE", "ON_HOST",
           "placement"]

IN_FILE = ("resize to the network input", "normalisation", "backbone, neck and head",
           "anchor decoding", "softmax", "score threshold", "candidate selection")
ON_HOST = ("greedy NMS per class", "max detections", "boxes scaled to the image")


def placement(runtime: str) -> Dict[str, object]:
    """Which part of the detector runs where, for summaries and manifests."""
    return {"in_file": list(IN_FILE), "on_host": list(ON_HOST),
            "why": f"{runtime} cannot hold greedy NMS (data-dependent output size); the host "
                   f"runs the ONNX graph's NMS tail (detector_export.nms_tail)"}


def spec_file(path: str) -> str:
    return path + ".json"


def export_detector_mobile(model: nn.Module, path: str, runtime: Optional[str] = None, *,
                           precision: str = "fp32",
                           calibration: Optional[Iterable[Tensor]] = None,
                           image_size: Optional[Tuple[int, int]] = None,
                           class_names: Optional[Sequence[str]] = None) -> DetectorSpec:
    """Write ``model`` (an mmdet SSD-style detector or a torchvision SSD; not changed) as a
    ``.pte`` / ``.tflite`` file and its ``<file>.json``; returns the :class:`DetectorSpec`.

    ``calibration`` (int8): RGB 0-255 images of ``image_size`` (3 x H x W tensors). Both files
    are written whole or not at all; a failure leaves neither.
    """
    runtime = runtime or runtime_of(path)
    spec = detector_spec(model, None, class_names)
    was_training = model.training
    try:
        graph = DetectorGraph(model, spec).eval()
        h, w = tuple(image_size) if image_size else spec.input_size
        example = (torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255,)
        export_program(graph, example, path, runtime, precision=precision,
                       calibration=calibration, part=f"{type(model).__name__} detector graph",
                       quant_scope=_network_modules(model))
    finally:
        model.train(was_training)
    info = {"spec": json.loads(spec.to_json()), "image_size": [h, w], "runtime": runtime,
            "precision": precision, "outputs": list(GRAPH_OUTPUTS), "size_mb": file_size_mb(path),
            "placement": placement(runtime)}
    try:
        with atomic_write(spec_file(path), "w") as f:
            json.dump(info, f, indent=1)
    except BaseException:
        os.remove(path)  # a model file without its spec is of no use: leave neither
        raise
    return spec


def _network_modules(model: nn.Module) -> list:
    """The graph's names of the detector's parts with weights (backbone, neck, head): what int8
    quantizes. The anchors, box decoding and scores are computed outside them and stay fp32."""
    return [f"model.{name}" for name, child in model.named_children()
            if next(child.parameters(), None) is not None]


def read_mobile_spec(path: str) -> Tuple[DetectorSpec, Dict[str, object]]:
    """The :class:`DetectorSpec` of a mobile detector file and the rest of its ``.json``."""
    side = spec_file(path)
    if not os.path.isfile(side):
        raise FileNotFoundError(f"{path}: no {os.path.basename(side)} next to it (the detector "
                                f"spec); export it with export_detector_mobile or tools/deploy.py")
    with open(side) as f:
        info = json.load(f)
    return DetectorSpec.from_json(json.dumps(info.pop("spec"))), info
