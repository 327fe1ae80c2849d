"""Int8 post-training quantization with ONNX Runtime static quantization, and its agreement.

:func:`quantize_int8` takes an fp32 ``.onnx`` file written by
:func:`mnet_backbone.deploy.export.export_onnx` and calibration images (the user's: see
:func:`mnet_backbone.deploy.data.load_images`), and writes a statically quantized model: int8
per-channel weights, uint8 activations with ranges observed on the calibration images, in QDQ
format (ONNX Runtime fuses each Conv + Clip into one int8 ``QLinearConv``, using VNNI / AMX
instructions where the CPU has them). :func:`agreement` compares its top-1 with the fp32 model's.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .export import ort_session

__all__ = ["quantize_int8", "agreement", "Agreement", "CALIBRATION_METHODS"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


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
                  qdq: bool = True, op_types: Optional[Sequence[str]] = None) -> str:
    """Static int8 quantization of ``fp32_path`` into ``int8_path``; returns ``int8_path``.

    ``calibration``: normalised float images (N x C x H x W tensor or array, or an iterable of
    such batches), e.g. ``normalize(load_images(folder))``; a few hundred are plenty.
    ``method``: how activation ranges are chosen from them (``minmax``, ``percentile``,
    ``entropy``). ``qdq=False`` writes QLinearConv operators instead of Q/DQ pairs.
    ``op_types``: the operator types to quantize (default: every type ONNX Runtime can; the
    detectors pass ``("Conv",)`` so that box decoding, scores and NMS stay in fp32).
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
        quantize_static(prepared, int8_path, _Reader(name, calibration, batch),
                        quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=calibrate,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        extra_options={"CalibTensorRangeSymmetric": False})
    return int8_path


@dataclass
class Agreement:
    """Top-1 of the int8 model vs the fp32 model on the same images (and vs labels if given)."""

    images: int
    top1_agreement: float  # fraction of images where int8 and fp32 pick the same class
    fp32_accuracy: Optional[float]
    int8_accuracy: Optional[float]
    max_abs_logit_diff: float
    mean_abs_logit_diff: float

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
    return Agreement(len(images), float((top_fp32 == top_int8).mean()), fp32_acc, int8_acc,
                     float(diff.max()), float(diff.mean()))
