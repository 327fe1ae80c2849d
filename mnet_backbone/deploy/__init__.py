"""Fast CPU inference for the core MobileNetV1.

* :mod:`.fold`: BN folded into the convolutions (a copy; the original is untouched),
  channels-last, cache-sized chunks and parallel single-threaded streams for large batches
  (:mod:`.streams`), optional ``torch.compile`` -- :func:`deploy`.
* :mod:`.export`: ONNX (dynamic batch, opset >= 17, verified with ONNX Runtime) and TorchScript,
  classifier or multi-scale backbone; :mod:`.runtime`: :class:`OrtModel` runs the files with the
  same batching strategy.
* :mod:`.quant`: int8 static post-training quantization (ONNX Runtime) and its top-1 agreement
  with fp32; :mod:`.data`: the calibration images (a user's folder, read and normalised).
* :mod:`.detector_export`: SSD / SSDLite detectors (mmdet or torchvision) as one ONNX graph
  from image to boxes, NMS included; :mod:`.detector_runtime`: :class:`DeployedDetector` runs
  it and returns mmdet- or torchvision-style results; :mod:`.detector_pipeline`: export, int8,
  backend choice and checks behind ``tools/deploy.py``.
* :mod:`.mobile`: ExecuTorch ``.pte`` and LiteRT ``.tflite`` files (XNNPACK, fp32 / int8) of the
  classifier and backbone, and their runners; :mod:`.detector_mobile`: the detectors' graph for
  them, with the NMS tail on the host (``pip install mnet-backbone[mobile]``,
  ``bash tools/install_litert.sh``).
* :mod:`.backends`: ONNX Runtime and OpenVINO at fp32 / bf16 / int8, ``backend="auto"``;
  :mod:`.timing`: the interleaved timing primitive the benchmarks under ``tools/`` use.

Importing this package needs torch only; onnx / onnxruntime / onnxscript / openvino are imported
by the functions that use them (``pip install mnet-backbone[deploy]``).
"""
from .fold import (DEFAULT_CHUNKS, DeployedMobileNetV1, compile_options, deploy, fold_bn,
                   fold_conv_bn, tune_chunks)
from .detector_export import DetectorSpec, export_detector
from .detector_runtime import DeployedDetector

__all__ = ["fold_bn", "fold_conv_bn", "deploy", "DeployedMobileNetV1", "DEFAULT_CHUNKS",
           "tune_chunks", "compile_options", "export_detector", "DetectorSpec",
           "DeployedDetector"]
