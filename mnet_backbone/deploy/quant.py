"""Int8 post-training quantization with ONNX Runtime static quantization, and its agreement.

:func:`quantize_int8` takes an fp32 ``.onnx`` file written by
:func:`mnet_backbone.deploy.export.export_onnx` and calibration images (the user's: see
:func:`mnet_backbone.deploy.data.load_images`), and writes a statically quantized model: int8
per-channel weights, uint8 activations with ranges observed on the calibration images, in QDQ
format (ONNX Runtime fuses each Conv + Clip into one int8 ``QLinearConv``, using VNNI / AMX
instructions where the CPU has them). :func:`agreement` compares its top-1 with the fp32 model's.

:func:`quantize_int8_accurate` is the path that holds on real ImageNet weights: it starts from
the PyTorch model, applies cross-layer equalization of the activation channels and empirical
bias correction (:mod:`mnet_backbone.deploy.equalize`) to the BN-folded copy, exports it and
quantizes it with :func:`quantize_int8`, keeping the classifier (and optionally the first conv)
in fp32. :func:`logit_metrics` gives logit SQNR, top-1 agreement and top-5 overlap.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .export import ort_session

__all__ = ["quantize_int8", "quantize_int8_accurate", "agreement", "Agreement", "logit_metrics",
           "CALIBRATION_METHODS", "DETECTOR_OP_TYPES"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# What a detector quantizes: the convolutions and their activations. Box decoding, scores and NMS
# stay fp32. The activations must be listed: ONNX Runtime then gives each conv the range of its
# activation's output and drops the activation, so consecutive convs chain in int8; with Conv
# alone every conv output is dequantized and requantized to a second range before the next
# conv (measured: 1.1x instead of 1.6x faster than fp32 on SSDLite320-MobileNetV1, no VNNI).
DETECTOR_OP_TYPES = ("Conv", "Clip", "Relu")


class _Reader:
    """ONNX Runtime calibration reader over batches of float images."""

    def __init__(self, name: str, images: Union[Tensor, np.ndarray, Iterable], batch: int):
        if isinstance(images, (Tensor, np.ndarray)):
            # Equal batches: the histogram calibrators stack them.
            batch = max(b for b in range(1, min(batch, len(images)) + 1) if len(images) % b == 0)
            images = [images[i:i + batch] for i in range(0, len(images), batch)]
        self.name = name
        self.batches = iter(images)

    def get_next(self):
        batch = next(self.batches, None)
        if batch is None:
            return None
        if isinstance(batch, Tensor):
            batch = batch.detach().float().numpy()
        return {self.name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(fp32_path: str, int8_path: str, calibration: Union[Tensor, np.ndarray, Iterable],
                  *, method: str = "minmax", per_channel: bool = True, batch: int = 16,
                  qdq: bool = True, op_types: Optional[Sequence[str]] = None,
                  keep_fp32: Sequence[str] = (), nodes_to_exclude: Sequence[str] = (),
                  reduce_range: bool = False) -> str:
    """Static int8 quantization of ``fp32_path`` into ``int8_path``; returns ``int8_path``.

    ``calibration``: normalised float images (N x C x H x W tensor or array, or an iterable of
    such batches), e.g. ``normalize(load_images(folder))``; a few hundred are plenty.
    ``method``: how activation ranges are chosen from them (``minmax``, ``percentile``,
    ``entropy``). ``qdq=False`` writes QLinearConv operators instead of Q/DQ pairs.
    ``op_types``: the operator types to quantize (default: every type ONNX Runtime can; the
    detectors pass :data:`DETECTOR_OP_TYPES` so that box decoding, scores and NMS stay fp32).
    ``keep_fp32``: ``"first"`` leaves the nodes that read the graph input in fp32, ``"last"``
    the nodes that write a graph output (the classifier's Gemm); ``nodes_to_exclude``: more
    node names to leave in fp32.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    name = onnx.load(fp32_path, load_external_data=False).graph.input[0].name
    os.makedirs(os.path.dirname(os.path.abspath(int8_path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        exclude = list(nodes_to_exclude) + _edge_nodes(onnx.load(prepared), keep_fp32)
        quantize_static(prepared, int8_path, _Reader(name, calibration, batch),
                        quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                        per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=calibrate,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        nodes_to_exclude=exclude or None,
                        extra_options={"CalibTensorRangeSymmetric": False})
    return int8_path


def _edge_nodes(proto, which: Sequence[str]) -> List[str]:
    """Names of the nodes reading the graph input (``first``) / writing an output (``last``)."""
    unknown = set(which) - {"first", "last"}
    if unknown:
        raise ValueError(f"keep_fp32 takes 'first' and/or 'last', got {sorted(unknown)}")
    graph = proto.graph
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    names = []
    for node in graph.node:
        if ("first" in which and inputs & set(node.input)) or \
                ("last" in which and outputs & set(node.output)):
            if not node.name:
                raise ValueError(f"cannot exclude an unnamed {node.op_type} node")
            names.append(node.name)
    return names


def quantize_int8_accurate(model, int8_path: str, calibration: Tensor, *,
                           fp32_path: Optional[str] = None, equalize: bool = False,
                           correct_bias: bool = True, keep_first: bool = False,
                           classifier_fp32: bool = True, method: str = "minmax",
                           headroom: float = 1.5, resolution: int = 224,
                           bias_images: int = 64, reduce_range: bool = True) -> str:
    """Int8 file of the classifier ``model`` (a core ``MobileNetV1``, BN not yet folded) that
    stays close to fp32 on real weights; returns ``int8_path``.

    BN folded, then (``correct_bias``) :func:`~mnet_backbone.deploy.equalize.bias_correct` on
    the ``calibration`` images (normalised N x C x H x W) for the weights as they will be
    rounded, export (that fp32 file goes to ``fp32_path`` if given, else a temporary file) and
    :func:`quantize_int8` with per-channel weights, keeping the classifier (Gemm; 0.2% of the
    mult-adds; quantized, its uint8 logits alone cost ~5 dB SQNR) and, with ``keep_first``, the
    first conv in fp32.

    ``reduce_range`` (default): 7-bit weights ([-64, 64]). On x86 CPUs without VNNI (AVX2,
    AVX-512BW: the machine measured here) the int8 kernels of ONNX Runtime and OpenVINO sum
    u8 x s8 pairs in saturating int16 (``vpmaddubsw``; ONNX Runtime documents it): with full
    8-bit weights the file then runs far from its own QDQ semantics on real weights (measured
    4.9 dB vs 21.4 dB logit SQNR); with 7-bit weights kernels and QDQ graph agree (18.5 dB on
    ONNX Runtime and OpenVINO alike). The file is then safe on any CPU. ``equalize``: cross-layer
    equalization of the activation channels first
    (:func:`~mnet_backbone.deploy.equalize.equalize_cross_layer`; off by default: it did not pay
    on Google's weights once the bias is corrected).
    """
    from .equalize import bias_correct, equalize_cross_layer
    from .export import export_onnx
    from .fold import fold_bn

    calibration = torch.as_tensor(calibration).float()
    net = fold_bn(model)
    if equalize:
        net = equalize_cross_layer(net, calibration, headroom=headroom,
                                   classifier_fp32=classifier_fp32)
    if correct_bias:
        net = bias_correct(net, calibration, keep_first=keep_first,
                           classifier_fp32=classifier_fp32, max_images=bias_images,
                           weight_qmax=64 if reduce_range else 127)
    keep = (["first"] if keep_first else []) + (["last"] if classifier_fp32 else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = fp32_path or os.path.join(tmp, "equalized.onnx")
        export_onnx(net, path, resolution=resolution, fold=False)
        return quantize_int8(path, int8_path, calibration, method=method, per_channel=True,
                             keep_fp32=keep, reduce_range=reduce_range)


def logit_metrics(reference: np.ndarray, other: np.ndarray) -> dict:
    """How close ``other`` logits are to ``reference`` (N x classes): SQNR in dB
    (10 log10 of sum ref^2 / sum (ref - other)^2), top-1 agreement, mean top-5 overlap
    (|top-5 of ref & top-5 of other| / 5), mean and max |difference|."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    noise = float(((ref - got) ** 2).sum())
    sqnr = float("inf") if noise == 0 else float(10 * np.log10((ref ** 2).sum() / noise))
    top5_r = np.argsort(-ref, axis=1)[:, :5]
    top5_o = np.argsort(-got, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5_r, top5_o)])
    diff = np.abs(ref - got)
    return dict(images=len(ref), sqnr_db=sqnr,
                top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
                top5_overlap=float(overlap), mean_abs_logit_diff=float(diff.mean()),
                max_abs_logit_diff=float(diff.max()))


@dataclass
class Agreement:
    """Top-1 of the int8 model vs the fp32 model on the same images (and vs labels if given)."""

    images: int
    top1_agreement: float  # fraction of images where int8 and fp32 pick the same class
    fp32_accuracy: Optional[float]
    int8_accuracy: Optional[float]
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    sqnr_db: Optional[float] = None        # logit SQNR of int8 vs fp32 (dB)
    top5_overlap: Optional[float] = None   # mean |top-5 fp32 & top-5 int8| / 5

    def as_dict(self) -> dict:
        return asdict(self)


def _run(session, images: Tensor, batch: int) -> np.ndarray:
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: images[i:i + batch].float().numpy()})[0]
            for i in range(0, len(images), batch)]
    return np.concatenate(outs)


def agreement(fp32_path: str, int8_path: str, images: Tensor, labels: Optional[Tensor] = None,
              *, batch: int = 50, threads: int = 0) -> Agreement:
    """Run both ONNX files on ``images`` (normalised floats) and compare their top-1."""
    fp32 = _run(ort_session(fp32_path, threads), images, batch)
    int8 = _run(ort_session(int8_path, threads), images, batch)
    top_fp32, top_int8 = fp32.argmax(1), int8.argmax(1)
    diff = np.abs(fp32 - int8)
    fp32_acc = int8_acc = None
    if labels is not None:
        truth = labels.numpy()
        fp32_acc = float((top_fp32 == truth).mean())
        int8_acc = float((top_int8 == truth).mean())
    m = logit_metrics(fp32, int8)
    return Agreement(len(images), float((top_fp32 == top_int8).mean()), fp32_acc, int8_acc,
                     float(diff.max()), float(diff.mean()), m["sqnr_db"], m["top5_overlap"])
