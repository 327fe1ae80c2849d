"""Running an exported detector: images in, mmdet- or torchvision-style results out.

    det = DeployedDetector("deployed/")                  # a tools/deploy.py folder, or an .onnx
    det = DeployedDetector("det.onnx", backend="openvino", precision="bf16")
    det = DeployedDetector("det.pte")                    # ExecuTorch (or .tflite: LiteRT), NMS here
    results = det.predict(["a.jpg", rgb_array])          # torchvision style: list of dicts
    samples = det.predict(images, style="mmdet")         # DetDataSample with pred_instances

Images are file paths, H x W x 3 uint8 RGB arrays, or 3 x H x W tensors / arrays (RGB,
0-255). Images of one size run as one batch; boxes come back in each image's own pixels.
:func:`coco_map` scores predictions with pycocotools the way mmdet's ``CocoMetric`` does
(maxDets 100 / 300 / 1000, category ids by the order of the named classes in the file).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..images import load_rgb
from . import mobile
from .backends import Runner, open_model
from .detector_export import GRAPH_OUTPUTS, DetectorSpec, nms_tail, read_spec
from .detector_mobile import read_mobile_spec

__all__ = ["DeployedDetector", "coco_map", "MANIFEST", "manifest_file"]

MANIFEST = "deploy.json"


def manifest_file(folder: str, precision: str) -> str:
    """The model file of ``precision`` in a tools/deploy.py output folder."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} has no {MANIFEST}: not a tools/deploy.py output "
                                f"folder (pass the .onnx file itself, or deploy again)")
    with open(path) as f:
        files = json.load(f)["files"]
    if precision not in files:
        fp32 = "bf16 runs the fp32 file; " if precision == "bf16" and "fp32" in files else ""
        if fp32:
            return os.path.join(folder, files["fp32"])
        raise FileNotFoundError(f"{folder!r} holds {sorted(files)} files, not {precision}; "
                                f"deploy with --precision {precision}")
    return os.path.join(folder, files[precision])


class DeployedDetector:
    """An exported detector on a backend (``auto``: the fastest measured one).

    A ``.pte`` (ExecuTorch) or ``.tflite`` (LiteRT) file runs in its runtime and the NMS tail
    runs here, on the host (:mod:`.detector_mobile` says why); the results are the same types.
    """

    def __init__(self, path: str, backend: str = "auto", precision: str = "fp32",
                 threads: int = 0, batch: int = 1):
        file = manifest_file(path, precision) if os.path.isdir(path) else path
        self.path = file
        # Mobile files: their fixed image size (H, W); None for the ONNX files.
        self.image_size: Optional[Tuple[int, int]] = None
        self.spec: DetectorSpec
        self.runner: Runner
        if file.lower().endswith(tuple(mobile.SUFFIXES.values())):
            runtime = mobile.runtime_of(file)
            if backend not in ("auto", runtime):
                raise ValueError(f"{file} is a {runtime} file; backend {backend!r} cannot run "
                                 f"it (use backend='{runtime}' or 'auto')")
            self.spec, info = read_mobile_spec(file)
            self.image_size = tuple(info["image_size"])
            self.runner = mobile.load(file, threads, GRAPH_OUTPUTS, info["precision"])
        else:
            self.spec = read_spec(file)
            self.runner = open_model(file, backend, precision, threads, batch)

    @property
    def backend(self) -> str:
        return self.runner.backend

    def __call__(self, batch: Union[np.ndarray, torch.Tensor]) -> Dict[str, np.ndarray]:
        """Raw graph outputs for a B x 3 x H x W batch (RGB 0-255): boxes, scores, labels,
        num_detections (and raw_cls / raw_box)."""
        if self.image_size is not None:
            return self._run_with_host_nms(torch.as_tensor(batch).float())
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        outs = self.runner(batch)
        return dict(zip(self.runner.output_names, outs))

    def _run_with_host_nms(self, batch: torch.Tensor) -> Dict[str, np.ndarray]:
        """A mobile file's graph, then the NMS tail here. Images of another size than the
        file's are resized to it first (the graph's own bilinear resize) and the boxes mapped
        back to them."""
        height, width = batch.shape[-2:]
        fh, fw = self.image_size
        if (height, width) != (fh, fw):
            batch = F.interpolate(batch, size=(fh, fw), mode="bilinear", align_corners=False)
        out = {k: torch.from_numpy(v) for k, v in zip(self.runner.output_names,
                                                       self.runner(batch.numpy()))}
        back = torch.tensor([width / fw, height / fh, width / fw, height / fh])
        result = nms_tail(out["nms_boxes"], out["nms_scores"], out["box_scale"] * back, self.spec)
        result.update(raw_cls=out["raw_cls"], raw_box=out["raw_box"])
        return {k: v.numpy() for k, v in result.items()}

    @staticmethod
    def _as_chw(image) -> np.ndarray:
        if isinstance(image, str):
            image = load_rgb(image)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
            raise ValueError(f"an image must be H x W x 3 (RGB) or 3 x H x W, got shape "
                             f"{image.shape}")
        if image.shape[-1] == 3 and image.shape[0] != 3:
            image = image.transpose(2, 0, 1)
        return image.astype(np.float32)

    def predict(self, images: Sequence, style: str = "torchvision") -> List:
        """One result per image: ``style="torchvision"``: dict(boxes, scores, labels) tensors;
        ``style="mmdet"``: ``DetDataSample`` with ``pred_instances`` (needs mmdet)."""
        if style not in ("torchvision", "mmdet"):
            raise ValueError(f"style must be 'torchvision' or 'mmdet', got {style!r}")
        arrays = [self._as_chw(im) for im in images]
        results: List[Optional[dict]] = [None] * len(arrays)
        by_size: Dict[tuple, List[int]] = {}
        for i, a in enumerate(arrays):
            by_size.setdefault(a.shape, []).append(i)
        for idx in by_size.values():
            out = self(np.stack([arrays[i] for i in idx]))
            for j, i in enumerate(idx):
                k = int(out["num_detections"][j])
                results[i] = dict(boxes=torch.from_numpy(out["boxes"][j, :k].copy()),
                                  scores=torch.from_numpy(out["scores"][j, :k].copy()),
                                  labels=torch.from_numpy(out["labels"][j, :k].copy()))
        if style == "torchvision":
            return results
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        samples = []
        for a, r in zip(arrays, results):
            sample = DetDataSample(metainfo=dict(ori_shape=a.shape[1:], img_shape=a.shape[1:]))
            sample.pred_instances = InstanceData(bboxes=r["boxes"], scores=r["scores"],
                                                 labels=r["labels"])
            samples.append(sample)
        return samples


def coco_map(predictions: Dict[int, dict], ann_file: str,
             class_names: Sequence[str], label_offset: int = 0) -> Dict[str, float]:
    """COCO bbox mAP of ``{image_id: dict(boxes, scores, labels)}`` (x1y1x2y2 boxes, labels
    counted from ``label_offset``) against ``ann_file``, as mmdet's ``CocoMetric`` computes it."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    cat_ids = gt.getCatIds(catNms=list(class_names))
    if len(cat_ids) != len(class_names):
        missing = sorted(set(class_names) - {c["name"] for c in gt.loadCats(cat_ids)})
        raise ValueError(f"{ann_file}: classes {missing} of the model are not categories there")
    dets = []
    for image_id, r in predictions.items():
        boxes = np.asarray(r["boxes"], dtype=np.float64).reshape(-1, 4)
        for box, score, label in zip(boxes, np.asarray(r["scores"]), np.asarray(r["labels"])):
            x1, y1, x2, y2 = box.tolist()
            dets.append(dict(image_id=int(image_id), category_id=cat_ids[int(label) - label_offset],
                             bbox=[x1, y1, x2 - x1, y2 - y1], score=float(score)))
    if not dets:
        return {"bbox_mAP": 0.0, "bbox_mAP_50": 0.0, "bbox_mAP_75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = cat_ids
        ev.params.imgIds = sorted(predictions)
        ev.params.maxDets = [100, 300, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"bbox_mAP": round(float(ev.stats[0]), 4), "bbox_mAP_50": round(float(ev.stats[1]), 4),
            "bbox_mAP_75": round(float(ev.stats[2]), 4)}
