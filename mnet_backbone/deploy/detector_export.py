"""SSD / SSDLite detectors exported end to end: one ONNX graph from image to final boxes.

:func:`export_detector` takes a trained detector -- an mmdet single-stage detector with an SSD
head (``SSDHead``, ``SSDHeadPatched``, the SSDLite head) on any backbone, or a torchvision
``SSD`` (SSD300 / SSDLite320) -- and writes one self-contained ``.onnx`` file:

    image (B x 3 x H x W float32, RGB, 0-255, any H x W)
      -> resize to the model's input size (bilinear), normalise as the model's preprocessor does
      -> backbone, neck, head -> anchor decoding, clipping, softmax
      -> the model's candidate selection (mmdet: ``nms_pre`` per level; torchvision:
         ``topk_candidates`` per class), score threshold, ONNX ``NonMaxSuppression`` per class,
         ``max_per_img`` / ``detections_per_img`` best
      -> boxes (B x K x 4, x1 y1 x2 y2 in input-image pixels), scores (B x K), labels (B x K,
         -1 where unused) and num_detections (B)

with the batch axis and the image size dynamic. The post-processing is the model's own, in the
same order: mmdet rescales boxes to the original image before NMS, torchvision after it.
Everything up to the NMS inputs is traced from the model (its own anchor generator and box
coder); the NMS tail is traced from :func:`nms_tail`, the torch function the host runs for
ExecuTorch / LiteRT files, with ONNX ``NonMaxSuppression`` for its NMS: a few standard ONNX
operators that ONNX Runtime and OpenVINO both run.

The layout of the model (input size, normalisation, thresholds, class names) is stored in the
file's metadata as JSON under ``mnet_detector`` (:func:`read_spec`).
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..files import atomic_path
from ..postprocess import best_detections, candidate_boxes, nms_keep, top_candidates

__all__ = ["DetectorSpec", "export_detector", "read_spec", "detector_spec", "DetectorGraph",
           "OUTPUTS", "RAW_OUTPUTS", "GRAPH_OUTPUTS", "UnsupportedDetectorError", "nms_tail",
           "nms_per_class"]

OUTPUTS = ("boxes", "scores", "labels", "num_detections")
RAW_OUTPUTS = ("raw_cls", "raw_box")  # the head's own outputs, for parity checks
_METADATA_KEY = "mnet_detector"


class UnsupportedDetectorError(TypeError):
    """A model this exporter cannot translate (the message says which kinds it can)."""


@dataclass
class DetectorSpec:
    """What the exported graph does, read from the model (stored in the ONNX metadata)."""

    family: str                    # "mmdet" or "torchvision"
    input_size: Tuple[int, int]    # (height, width) the network runs at
    mean: Tuple[float, ...]        # per RGB channel, in 0-255 units
    std: Tuple[float, ...]
    class_names: List[str]
    label_offset: int              # label of the first foreground class (torchvision: 1)
    score_thr: float
    iou_thr: float
    max_det: int
    candidates: str                # "per_level" (mmdet nms_pre) or "per_class" (torchvision)
    candidates_k: int
    nms_space: str                 # "original" (mmdet: rescale, then NMS) or "input"
    min_box_size: float = -1.0     # mmdet's min_bbox_size (< 0: off)
    level_sizes: List[int] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DetectorSpec":
        data = json.loads(text)
        data["input_size"] = tuple(data["input_size"])
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(**data)


def _pair(size) -> Tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else tuple(map(int, size))


def _is_torchvision_ssd(model: nn.Module) -> bool:
    try:
        from torchvision.models.detection.ssd import SSD
    except ImportError:
        return False
    return isinstance(model, SSD)


def _is_mmdet_ssd(model: nn.Module) -> bool:
    try:
        from mmdet.models.dense_heads import SSDHead
        from mmdet.models.detectors import SingleStageDetector
    except ImportError:
        return False
    return isinstance(model, SingleStageDetector) and isinstance(model.bbox_head, SSDHead)


def _mmdet_input_size(model: nn.Module, input_size) -> Tuple[int, int]:
    """(height, width): given, else the test pipeline's fixed Resize (models built by
    ``mmdet.apis.init_detector`` keep their config), else the SSD anchor generator's."""
    if input_size is not None:
        return _pair(input_size)
    cfg = getattr(model, "cfg", None)
    if cfg is not None and cfg.get("test_dataloader"):
        for step in cfg.test_dataloader.dataset.get("pipeline", []):
            if step.get("type", "").split(".")[-1] == "Resize":
                if step.get("keep_ratio", False):
                    raise UnsupportedDetectorError(
                        "export_detector: the test pipeline resizes keeping the aspect ratio; "
                        "the exported graph runs at one fixed size: pass input_size=(h, w)")
                w, h = _pair(step["scale"])
                return h, w
    size = getattr(model.bbox_head.prior_generator, "input_size", None)
    if size is None:
        raise ValueError("export_detector: pass input_size=(height, width) for this model (its "
                         "test pipeline's Resize scale)")
    return _pair(size)


def detector_spec(model: nn.Module, input_size=None,
                  class_names: Optional[Sequence[str]] = None) -> DetectorSpec:
    """The :class:`DetectorSpec` of an mmdet SSD-style detector or a torchvision SSD."""
    if _is_torchvision_ssd(model):
        t = model.transform
        if not getattr(t, "fixed_size", None):
            raise UnsupportedDetectorError("torchvision SSD without a fixed input size: the "
                                           "export needs GeneralizedRCNNTransform(fixed_size=...)")
        h, w = _pair(t.fixed_size)[::-1] if input_size is None else _pair(input_size)
        num_classes = model.head.classification_head.num_columns
        names = list(class_names) if class_names else [str(i) for i in range(1, num_classes)]
        return DetectorSpec(
            family="torchvision", input_size=(h, w),
            mean=tuple(255.0 * m for m in t.image_mean), std=tuple(255.0 * s for s in t.image_std),
            class_names=names, label_offset=1, score_thr=float(model.score_thresh),
            iou_thr=float(model.nms_thresh), max_det=int(model.detections_per_img),
            candidates="per_class", candidates_k=int(model.topk_candidates), nms_space="input")
    if _is_mmdet_ssd(model):
        head = model.bbox_head
        if head.use_sigmoid_cls:
            raise UnsupportedDetectorError("export_detector: sigmoid-classifier heads are not "
                                           "supported (SSD heads use softmax)")
        pre = model.data_preprocessor
        if not getattr(pre, "_channel_conversion", False):
            warnings.warn("the detector's preprocessor does not convert BGR to RGB; the exported "
                          "graph still takes RGB images and the channel order of its mean/std",
                          stacklevel=2)
        cfg = head.test_cfg
        names = list(class_names) if class_names else list(
            (getattr(model, "dataset_meta", None) or {}).get("classes", ())) or \
            [str(i) for i in range(head.num_classes)]
        nms = cfg.get("nms", {})
        if nms.get("type", "nms") != "nms":
            raise UnsupportedDetectorError(f"export_detector: test_cfg.nms type "
                                           f"{nms.get('type')!r} is not supported (only 'nms')")
        return DetectorSpec(
            family="mmdet", input_size=_mmdet_input_size(model, input_size),
            mean=tuple(float(v) for v in pre.mean.flatten()),
            std=tuple(float(v) for v in pre.std.flatten()), class_names=names, label_offset=0,
            score_thr=float(cfg.get("score_thr", 0.0)), iou_thr=float(nms.get("iou_threshold")),
            max_det=int(cfg.get("max_per_img", 100)), candidates="per_level",
            candidates_k=int(cfg.get("nms_pre", -1)), nms_space="original",
            min_box_size=float(cfg.get("min_bbox_size", -1)))
    raise UnsupportedDetectorError(
        f"export_detector: {type(model).__name__} is not supported; it exports mmdet "
        f"single-stage detectors with an SSD head (SSD300, SSDLite320) and torchvision SSD / "
        f"SSDLite models. Two-stage detectors (Faster R-CNN) are not exported: see docs/deploy.md.")


class DetectorGraph(nn.Module):
    """The traceable part: image -> NMS inputs (+ the head's raw outputs).

    Returns ``nms_boxes`` (B x N x 4, in the space NMS runs in), ``nms_scores`` (B x C x N,
    zero where a (box, class) pair is not a candidate), ``box_scale`` (B x 1 x 4, applied to
    the boxes after NMS), ``raw_cls`` (B x N x classes+background) and ``raw_box`` (B x N x 4).
    """

    def __init__(self, model: nn.Module, spec: DetectorSpec):
        super().__init__()
        self.model = model.eval()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))
        h, w = spec.input_size
        with torch.no_grad():
            probe = torch.zeros(1, 3, h, w)
            if spec.family == "mmdet":
                feats = model.extract_feat(probe)
                sizes = [f.shape[-2:] for f in feats]
                priors = model.bbox_head.prior_generator.grid_priors(sizes, device="cpu")
                spec.level_sizes = [int(p.shape[0]) for p in priors]
                priors = torch.cat(priors)
            else:
                from torchvision.models.detection.image_list import ImageList
                feats = list(self._tv_features(probe))
                priors = model.anchor_generator(ImageList(probe, [(h, w)]), feats)[0]
                spec.level_sizes = [int(priors.shape[0])]
        self.register_buffer("priors", priors)

    def _tv_features(self, x: Tensor) -> List[Tensor]:
        feats = self.model.backbone(x)
        return list(feats.values()) if isinstance(feats, dict) else [feats]

    def _head(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Raw class logits (B x N x C+1) and box deltas (B x N x 4) in prior order."""
        if self.spec.family == "torchvision":
            out = self.model.head(self._tv_features(x))
            return out["cls_logits"], out["bbox_regression"]
        cls_scores, bbox_preds = self.model.bbox_head(self.model.extract_feat(x))
        b = x.shape[0]
        cls = torch.cat([c.permute(0, 2, 3, 1).reshape(b, -1, self.model.bbox_head.cls_out_channels)
                         for c in cls_scores], 1)
        box = torch.cat([p.permute(0, 2, 3, 1).reshape(b, -1, 4) for p in bbox_preds], 1)
        return cls, box

    def _decode(self, deltas: Tensor) -> Tensor:
        b, n, _ = deltas.shape
        h, w = self.spec.input_size
        priors = self.priors.unsqueeze(0).expand(b, n, 4).reshape(-1, 4)
        flat = deltas.reshape(-1, 4)
        if self.spec.family == "torchvision":
            from torchvision.ops import boxes as box_ops
            boxes = box_ops.clip_boxes_to_image(self.model.box_coder.decode_single(flat, priors),
                                                (h, w))
        else:
            boxes = self.model.bbox_head.bbox_coder.decode(priors, flat, max_shape=(h, w))
        return boxes.reshape(b, n, 4)

    def _candidates(self, scores: Tensor) -> Tensor:
        """Zero every (box, class) score that the model's pre-NMS selection drops."""
        spec, k = self.spec, self.spec.candidates_k
        if spec.candidates == "per_class":  # torchvision: topk_candidates per class
            s = scores.transpose(1, 2)  # B x C x N
            if 0 < k < s.shape[-1]:
                keep = torch.zeros_like(s).scatter_(-1, s.topk(k, dim=-1).indices, 1.0)
                s = s * keep
            return s
        parts, start = [], 0  # mmdet: nms_pre best (box, class) pairs per level
        b, _, c = scores.shape
        for size in spec.level_sizes:
            part = scores[:, start:start + size].reshape(b, size * c)
            if 0 < k < size * c:
                keep = torch.zeros_like(part).scatter_(-1, part.topk(k, dim=-1).indices, 1.0)
                part = part * keep
            parts.append(part.reshape(b, size, c))
            start += size
        return torch.cat(parts, 1).transpose(1, 2)

    def forward(self, image: Tensor):
        spec = self.spec
        b, _, height, width = image.shape
        x = F.interpolate(image, size=spec.input_size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        raw_cls, raw_box = self._head(x)
        boxes = self._decode(raw_box)
        probs = raw_cls.softmax(-1)
        scores = probs[..., 1:] if spec.family == "torchvision" else probs[..., :-1]
        h_in, w_in = spec.input_size
        ones = boxes.new_ones(b, 1, 1)  # sizes are symbolic when traced: tensor * size
        sx, sy = ones * width / w_in, ones * height / h_in
        scale = torch.cat([sx, sy, sx, sy], -1)
        if spec.nms_space == "original":
            boxes = boxes * scale
            scale = torch.ones_like(scale)
        if spec.min_box_size >= 0:
            wh = boxes[..., 2:] - boxes[..., :2]
            scores = scores * (wh > spec.min_box_size).all(-1, keepdim=True).to(scores.dtype)
        scores = scores * (scores > spec.score_thr).to(scores.dtype)
        return boxes, self._candidates(scores), scale, raw_cls, raw_box


GRAPH_OUTPUTS = ("nms_boxes", "nms_scores", "box_scale", *RAW_OUTPUTS)  # DetectorGraph's


@torch.library.custom_op("mnet_backbone::nms_per_class", mutates_args=())
def nms_per_class(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
                  score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` as a keep mask: per image and class, greedy NMS
    (``iou_threshold``; a box goes when its IoU with a kept one is above it) of the boxes
    (B x N x 4) scored above ``score_threshold`` (scores: B x C x N), at most ``max_per_class``
    kept. Returns B x C x N booleans. Eager: :mod:`mnet_backbone.postprocess`; in an ONNX
    file: the ``NonMaxSuppression`` node (:func:`_nms_per_class_onnx`)."""
    n = scores.shape[-1]
    top, index, counts = top_candidates(scores, score_threshold, n)
    keep = nms_keep(candidate_boxes(boxes, index), top, counts, iou_threshold)
    keep = keep & (keep.cumsum(-1) <= max_per_class)
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(2, index, keep)


@nms_per_class.register_fake
def _nms_per_class_shape(boxes, scores, max_per_class, iou_threshold, score_threshold):
    return torch.empty_like(scores, dtype=torch.bool)


def _nms_per_class_onnx(boxes, scores, max_per_class: int, iou_threshold: float,
                        score_threshold: float):
    """:func:`nms_per_class` in ONNX (an onnxscript translation for ``torch.onnx.export``)."""
    from onnxscript import opset18 as op
    from onnxscript.onnx_types import BOOL

    selected = op.NonMaxSuppression(  # M x 3: image, class, box
        boxes, scores, op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]), op.Constant(value_floats=[score_threshold]))
    ones = op.Expand(op.Constant(value_float=1.0), op.Shape(selected, start=0, end=1))
    return op.Cast(op.ScatterND(op.ConstantOfShape(op.Shape(scores)), selected, ones),
                   to=BOOL.dtype)


def nms_tail(nms_boxes: Tensor, nms_scores: Tensor, box_scale: Tensor,
             spec: DetectorSpec) -> Dict[str, Tensor]:
    """What follows :class:`DetectorGraph`: per image and class greedy NMS of the candidates
    scored above ``score_thr`` (:func:`nms_per_class`), of all classes the ``max_det`` best,
    their boxes times ``box_scale``, labels from ``label_offset``, -1 / zero boxes in the
    unused slots (:data:`OUTPUTS`).

    Written once: the ONNX file holds its trace (:func:`_append_nms`), and the host runs it
    on the graph's outputs for runtimes that cannot hold greedy NMS (ExecuTorch, LiteRT)."""
    b, c, n = nms_scores.shape
    keep = torch.ops.mnet_backbone.nms_per_class(nms_boxes, nms_scores, spec.max_det,
                                                 spec.iou_thr, spec.score_thr)
    index = torch.arange(n, device=nms_scores.device).expand(b, c, n)
    return best_detections(nms_boxes, nms_scores, index, keep, spec.max_det, spec.label_offset,
                           box_scale)


class _Tail(nn.Module):
    def __init__(self, spec: DetectorSpec):
        super().__init__()
        self.spec = spec

    def forward(self, nms_boxes: Tensor, nms_scores: Tensor, box_scale: Tensor):
        out = nms_tail(nms_boxes, nms_scores, box_scale, self.spec)
        return tuple(out[name] for name in OUTPUTS)


def _append_nms(graph, spec: DetectorSpec, num_classes: int, num_boxes: int,
                opset: int = 18) -> None:
    """Add :func:`nms_tail`, traced, to ``graph`` (inputs nms_boxes / nms_scores / box_scale,
    outputs :data:`OUTPUTS`, batch axis dynamic); its own names get the prefix ``nms_``."""
    b = 2
    example = (torch.rand(b, num_boxes, 4), torch.rand(b, num_classes, num_boxes),
               torch.ones(b, 1, 4))
    inputs = ("nms_boxes", "nms_scores", "box_scale")
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        tail = torch.onnx.export(
            _Tail(spec).eval(), example, dynamo=True, opset_version=opset, input_names=inputs,
            output_names=list(OUTPUTS), verbose=False, report=False,
            dynamic_shapes=tuple({0: batch} for _ in inputs),
            custom_translation_table={torch.ops.mnet_backbone.nms_per_class.default:
                                      _nms_per_class_onnx}).model_proto.graph
    keep = set(inputs) | set(OUTPUTS) | {""}
    rename = lambda name: name if name in keep else f"nms_{name}"  # noqa: E731
    for node in tail.node:
        node.name = rename(node.name)
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    for init in tail.initializer:
        init.name = rename(init.name)
    graph.node.extend(tail.node)
    graph.initializer.extend(tail.initializer)
    del graph.output[:]
    for value in tail.output:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph.output.extend(tail.output)


def _trace(graph_module: DetectorGraph, opset: int):
    """The traced part as an ONNX ModelProto (dynamic batch, height and width)."""
    h, w = graph_module.spec.input_size
    x = torch.rand(2, 3, h, w) * 255
    batch, height, width = (torch.export.Dim("batch"), torch.export.Dim("height", min=32),
                            torch.export.Dim("width", min=32))
    names = list(GRAPH_OUTPUTS)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # Captured here, not by torch.onnx.export: inside it torch.onnx.is_in_onnx_export() is
        # true, which sends mmdet's box coder to an ONNX branch that imports the removed
        # mmdet.core; the exporter's non-strict capture then fails and it falls back to a
        # strict (dynamo) capture, which takes twice as long for the same graph.
        captured = torch.export.export(
            graph_module, (x,), strict=False,
            dynamic_shapes={"image": {0: batch, 2: height, 3: width}})
        program = torch.onnx.export(
            captured, (x,), dynamo=True, opset_version=opset, input_names=["image"],
            output_names=names, verbose=False, report=False)
    return program.model_proto


def export_detector(model: nn.Module, path: str, *, input_size=None,
                    class_names: Optional[Sequence[str]] = None, opset: int = 18,
                    keep_raw_outputs: bool = False) -> DetectorSpec:
    """Write ``model`` (eval mode; the model is not changed) as one ONNX graph to ``path``.

    ``input_size``: (height, width) the network runs at (default: what the model says: its
    anchor generator's ``input_size`` for mmdet SSD, ``transform.fixed_size`` for torchvision).
    ``keep_raw_outputs``: also output the head's raw ``raw_cls`` / ``raw_box`` (for parity
    checks). The file is written whole or not at all (:func:`mnet_backbone.files.atomic_path`).
    Returns the :class:`DetectorSpec` (also stored in the file's metadata).
    """
    import onnx

    spec = detector_spec(model, input_size, class_names)
    was_training = model.training
    try:
        graph_module = DetectorGraph(model, spec)
        proto = _trace(graph_module, opset)
    finally:
        model.train(was_training)
    num_classes = len(spec.class_names)
    num_boxes = int(graph_module.priors.shape[0])
    raw = [o for o in proto.graph.output if o.name in RAW_OUTPUTS]
    _append_nms(proto.graph, spec, num_classes, num_boxes, opset)
    if keep_raw_outputs:
        proto.graph.output.extend(raw)
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = _METADATA_KEY, spec.to_json()
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:  # onnx.save wants a name, not an fd-backed file object
        onnx.save(proto, tmp, save_as_external_data=False)
    return spec


def read_spec(path: str) -> DetectorSpec:
    """The :class:`DetectorSpec` stored in an exported detector (fp32 or int8 file)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == _METADATA_KEY:
            return DetectorSpec.from_json(prop.value)
    raise ValueError(f"{path}: not a detector exported by mnet_backbone (no {_METADATA_KEY!r} "
                     f"metadata); export it with export_detector or tools/deploy.py")
