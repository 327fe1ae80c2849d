"""From a trained detector to a deployed folder: export, quantize, choose a backend, check.

:func:`deploy_detector` is what ``tools/deploy.py`` runs once the face (mmdet or torchvision)
has built the model. It writes into ``out_dir``:

* ``detector_fp32.onnx``: the end-to-end graph (:mod:`.detector_export`), always (bf16 runs it);
* ``detector_int8.onnx`` with ``precision="int8"``: statically quantized convolutions, calibrated
  on the user's images;
* with ``backend="executorch"`` / ``"litert"`` instead: ``detector_fp32.pte`` / ``.tflite``
  (and ``detector_int8``), each with its ``<file>.json``: the same graph without the NMS tail,
  which the loader runs on the host (:mod:`.detector_mobile`; the summary's ``placement`` says
  which part runs where);
* ``deploy.json``: the files, the detector spec, the checkpoint they came from (path and
  SHA-256, as the caller names it), the backend chosen and the summary.

Inputs are checked, and calibration images decoded, before any export work starts. Every file is
written and checked in a staging folder inside ``out_dir`` first and renamed into place only when
all of it succeeded, ``deploy.json`` last: a failed deploy leaves a folder that held an earlier
deploy as it was (never a new model next to the old manifest).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..files import PARTIAL_SUFFIX, atomic_write, check_writable_folder
from ..images import load_rgb
from . import backends, mobile
# The classifier's export lists and checks calibration folders the same way (one owner: data).
from .data import CalibrationError, calibration_files
from .detector_export import (GRAPH_OUTPUTS, RAW_OUTPUTS, DetectorGraph, detector_spec,
                              export_detector)
from .detector_mobile import export_detector_mobile, placement, spec_file
from .detector_runtime import MANIFEST, DeployedDetector, coco_map
from .timing import time_interleaved

__all__ = ["ValSet", "deploy_detector", "check_output_dir", "calibration_files",
           "load_calibration", "raw_output_diff", "CalibrationError"]

FILES = {"fp32": "detector_fp32.onnx", "int8": "detector_int8.onnx"}


def _files(backend: str) -> Dict[str, str]:
    if backend in mobile.RUNTIMES:
        return {p: f"detector_{p}{mobile.SUFFIXES[backend]}" for p in mobile.PRECISIONS}
    return FILES


@dataclass
class ValSet:
    """A COCO-format evaluation set: annotation file and (image id, file) pairs."""

    ann_file: str
    images: List[Tuple[int, str]]
    load: Callable[[str], np.ndarray] = load_rgb  # file -> H x W x 3 uint8 RGB
    limit: Optional[int] = None

    @classmethod
    def from_coco(cls, ann_file: str, img_dir: str, **kwargs) -> "ValSet":
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"val annotation file {ann_file!r} does not exist")
        with open(ann_file) as f:
            data = json.load(f)
        images = [(im["id"], os.path.join(img_dir, im["file_name"])) for im in data["images"]]
        return cls(ann_file, images, **kwargs)


def check_output_dir(out_dir: str) -> str:
    """Make ``out_dir`` (if needed) and make sure a file can be written there."""
    return check_writable_folder(out_dir, "pass another --output")


def load_calibration(files: Sequence[str], size: Tuple[int, int]) -> Tuple[np.ndarray, int]:
    """Calibration batch (N x 3 x H x W float32 RGB 0-255, resized to the network input as the
    graph would) and the count of files that could not be decoded (skipped)."""
    out, bad = [], 0
    for file in files:
        try:
            out.append(_resize(load_rgb(file), size))
        except ValueError:
            bad += 1
    if not out:
        raise CalibrationError(f"none of the {len(files)} calibration images could be decoded "
                               f"(e.g. {files[0]!r}); pass a folder of JPEG/PNG images")
    return np.stack(out).astype(np.float32), bad


@torch.no_grad()
def raw_output_diff(runner: backends.Runner, model: nn.Module, images: np.ndarray) -> float:
    """Largest |difference| of the head's raw outputs (class logits, box deltas): the file on
    ``runner`` vs the PyTorch model, on the same images."""
    spec = detector_spec(model)
    graph = DetectorGraph(model, spec)
    ref = graph(torch.from_numpy(images))[3:]
    got = dict(zip(runner.output_names, runner(images)))
    return max(float(np.abs(got[name] - r.numpy()).max()) for name, r in zip(RAW_OUTPUTS, ref))


def val_predictions(predict: Callable[[List[np.ndarray]], List[dict]], val: ValSet,
                     batch: int = 8) -> Tuple[Dict[int, dict], float]:
    images = val.images[:val.limit] if val.limit else val.images
    preds: Dict[int, dict] = {}
    seconds = 0.0
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        arrays = [val.load(path) for _, path in chunk]
        start = time.perf_counter()
        results = predict(arrays)
        seconds += time.perf_counter() - start
        preds.update({image_id: r for (image_id, _), r in zip(chunk, results)})
    return preds, seconds * 1e3 / max(1, len(images))


def deploy_detector(model: nn.Module, out_dir: str, *, precision: str = "fp32",
                    backend: str = "auto", calib_dir: Optional[str] = None,
                    calib_limit: int = 100, val: Optional[ValSet] = None,
                    pytorch_predict: Optional[Callable[[List[np.ndarray]], List[dict]]] = None,
                    class_names: Optional[Sequence[str]] = None, threads: int = 0,
                    latency_repeats: int = 20,
                    checkpoint: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Export ``model`` into ``out_dir`` at ``precision`` on ``backend``; return the summary.

    ``val`` + ``pytorch_predict`` (images -> list of dict(boxes, scores, labels) in the
    exported graph's label convention): also COCO mAP of PyTorch and of the deployed file.
    ``checkpoint``: where the weights came from (``path``, ``sha256``), kept in the manifest.
    """
    if precision not in backends.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {backends.PRECISIONS}")
    if backend in mobile.RUNTIMES:
        mobile.require_runtime(backend, export=True)
        if precision not in mobile.PRECISIONS:
            raise ValueError(f"{backend} runs {' and '.join(mobile.PRECISIONS)} files, not "
                             f"{precision}; pass --precision fp32 or int8")
    elif backend != "auto":
        backends.require_backend(backend)
        backends.check_precision(backend, precision)
    elif precision == "bf16":
        backends.check_precision("openvino", precision)
    if val is not None and pytorch_predict is None:
        raise ValueError("deploy_detector: val needs pytorch_predict to compare against")
    check_output_dir(out_dir)
    calib: Optional[Tuple[np.ndarray, str]] = None
    if precision == "int8":
        files_found, non_images = calibration_files(calib_dir, calib_limit)
        images, bad = load_calibration(files_found, detector_spec(model).input_size)
        calib = images, (f"{len(images)} images from {calib_dir} ({non_images} non-image files, "
                         f"{bad} undecodable skipped)")
    staging = tempfile.mkdtemp(prefix=".deploy-", suffix=PARTIAL_SUFFIX, dir=out_dir)
    try:
        files, summary, manifest = _deploy_into(staging, model, precision, backend, calib, val,
                                                pytorch_predict, class_names, threads,
                                                latency_repeats)
        moved = list(files.values())
        if backend in mobile.RUNTIMES:  # each mobile file has its spec next to it
            moved += [spec_file(name) for name in files.values()]
        for name in moved:
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary["file"] = os.path.join(out_dir, files.get(precision, files["fp32"]))
    with atomic_write(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(dict(manifest, checkpoint=checkpoint, summary=summary), f, indent=1,
                  default=str)
    return summary


def _deploy_into(folder: str, model: nn.Module, precision: str, backend: str,
                 calib: Optional[Tuple[np.ndarray, str]], val: Optional[ValSet],
                 pytorch_predict, class_names, threads: int, latency_repeats: int):
    """Export, quantize and check the files in ``folder``: (files, summary, manifest)."""
    threads = threads or backends.default_threads()
    summary: Dict[str, object] = {"precision": precision, "threads": threads}
    names = _files(backend)
    fp32_path = os.path.join(folder, names["fp32"])
    on_mobile = backend in mobile.RUNTIMES
    start = time.perf_counter()
    if on_mobile:
        spec = export_detector_mobile(model, fp32_path, backend, class_names=class_names)
    else:
        spec = export_detector(model, fp32_path, class_names=class_names, keep_raw_outputs=True)
    summary["export_seconds"] = round(time.perf_counter() - start, 1)
    files = {"fp32": names["fp32"]}
    rng = np.random.default_rng(0)
    h, w = spec.input_size
    probe = (rng.random((2, 3, h, w), dtype=np.float32) * 255).astype(np.float32)
    if val is not None and val.images:
        probe = np.stack([_resize(val.load(p), (h, w)) for _, p in val.images[:2]])
    if calib is not None:
        int8_path = os.path.join(folder, names["int8"])
        if on_mobile:
            export_detector_mobile(model, int8_path, backend, precision="int8",
                                   calibration=torch.from_numpy(calib[0]),
                                   class_names=class_names)
        else:
            from .quant import DETECTOR_OP_TYPES, quantize_int8
            quantize_int8(fp32_path, int8_path, calib[0], op_types=DETECTOR_OP_TYPES)
        files["int8"] = names["int8"]
        summary["calibration"] = calib[1]
    deployed_path = os.path.join(folder, files.get(precision, files["fp32"]))
    if backend == "auto":
        backend, medians = backends.choose_backend(deployed_path, precision, 1, threads)
        summary["backend_medians_ms_b1"] = medians
    summary["backend"] = backend
    if on_mobile:
        summary["placement"] = placement(backend)
        summary["size_mb"] = {p: mobile.file_size_mb(os.path.join(folder, f))
                              for p, f in files.items()}
        fp32_runner = mobile.load(fp32_path, threads, GRAPH_OUTPUTS)
    else:
        fp32_runner = backends.load(fp32_path, backend, "fp32", threads)
    # fp32 file, the chosen backend; a mobile file takes one image at a time (the runner loops)
    summary["max_abs_diff_vs_pytorch"] = raw_output_diff(fp32_runner, model, probe)
    detector = DeployedDetector(deployed_path, backend, precision, threads)
    times = time_interleaved({"deployed": detector.runner}, probe[:1], latency_repeats, 1)
    summary["latency_ms_b1"] = round(statistics.median(times["deployed"]) * 1e3, 3)
    if val is not None:
        summary["val_images"] = len(val.images[:val.limit] if val.limit else val.images)
        torch_preds, torch_ms = val_predictions(pytorch_predict, val)
        summary["map_pytorch"] = coco_map(torch_preds, val.ann_file, spec.class_names,
                                          spec.label_offset)["bbox_mAP"]
        dep_preds, dep_ms = val_predictions(detector.predict, val)
        summary["map_deployed"] = coco_map(dep_preds, val.ann_file, spec.class_names,
                                           spec.label_offset)["bbox_mAP"]
        summary["ms_per_image_pytorch"] = round(torch_ms, 2)
        summary["ms_per_image_deployed"] = round(dep_ms, 2)
    return files, summary, {"files": files, "spec": json.loads(spec.to_json())}


def _resize(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """H x W x 3 uint8 -> 3 x h x w float32, resized as the exported graph resizes."""
    import torch.nn.functional as F
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0].numpy()
