"""Timing the alpha x resolution models on this machine, for ``tools/tradeoff.py``.

:func:`measure` builds each model (random weights, BN statistics from rendered images: weights do
not change the work), exports it for the chosen runtime and times all of them together, round by
round (:func:`mnet_backbone.deploy.timing.time_interleaved`), so load changes hit them alike. It
returns one :class:`mnet_backbone.tradeoff.Row` per model; the frontier and the budget choice
are the library's pure functions (:func:`mnet_backbone.tradeoff.analyse`).
:func:`check_options` checks everything that can be wrong before any model is built.
"""
import importlib.util
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mnet_backbone.cost import count
from mnet_backbone.cost import measure as count_hooks
from mnet_backbone.deploy import backends, deploy, export_detector
from mnet_backbone.deploy.data import calibrate_bn, normalize
from mnet_backbone.deploy.export import export_onnx
from mnet_backbone.deploy.quant import DETECTOR_OP_TYPES, quantize_int8
from mnet_backbone.deploy.timing import time_interleaved
from mnet_backbone.model import MobileNetV1
from mnet_backbone.shapes import render_shapes
from mnet_backbone.tradeoff import (DETECTOR_SIZE, ModelSpec, Row, check_task, default_models,
                                    parse_models)

BACKEND_CHOICES = ("auto", "pytorch") + tuple(backends.BACKENDS)


@dataclass(frozen=True)
class Timing:
    """How the models are run and timed: the runtime, precision, images per call, threads, and
    the interleaved rounds (each ``calls`` timed calls per model after ``warmup``)."""

    backend: str = "auto"
    precision: str = "fp32"
    batch: int = 1
    threads: int = 2
    rounds: int = 20
    calls: int = 3
    warmup: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


def check_options(timing: Timing, task: str = "classify") -> None:
    """Everything that can be wrong before any model is built: one error naming the fix."""
    check_task(task)
    backend, precision = timing.backend, timing.precision
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {backend!r}; choose one of "
                         f"{', '.join(BACKEND_CHOICES)}")
    if precision not in backends.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of "
                         f"{', '.join(backends.PRECISIONS)}")
    for name, value in (("batch", timing.batch), ("threads", timing.threads),
                        ("rounds", timing.rounds), ("calls", timing.calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if task == "ssdlite320" and importlib.util.find_spec("torchvision") is None:
        raise ImportError("the ssdlite320 task builds torchvision's SSDLite: pip install "
                          "'mnet-backbone[torchvision]'")
    if backend == "pytorch":
        if precision != "fp32":
            raise backends.PrecisionNotSupportedError(
                f"the pytorch backend times fp32 only; for {precision} use "
                f"--backend {'openvino' if precision == 'bf16' else 'onnxruntime'} (or auto)")
        return
    for package in ("onnx", "onnxscript"):  # the exporter's needs
        if importlib.util.find_spec(package) is None:
            raise backends.BackendNotInstalledError(
                f"exporting for {backend} needs {package}: pip install 'mnet-backbone[deploy]'"
                f" (or use --backend pytorch)")
    if backend == "auto":
        if not backends.available_backends():
            raise backends.BackendNotInstalledError(
                "backend 'auto' found neither onnxruntime nor openvino: pip install "
                "'mnet-backbone[deploy]' (or use --backend pytorch)")
        if precision == "bf16":
            backends.check_precision("openvino", precision)
    else:
        backends.require_backend(backend)
        backends.check_precision(backend, precision)
    if precision == "int8" and importlib.util.find_spec("onnxruntime") is None:
        raise backends.BackendNotInstalledError(
            "int8 files are made by ONNX Runtime's quantizer: pip install onnxruntime")


def _images(count: int, size: int, seed: int):
    """``count`` rendered RGB images (float32 0-255, N x 3 x size x size)."""
    return render_shapes(count, size, seed)[0].float()


def _build_classifier(spec: ModelSpec, bn_images):
    torch.manual_seed(0)
    model = MobileNetV1(1000, spec.alpha)
    images = normalize(F.interpolate(bn_images, size=(spec.resolution,) * 2, mode="bilinear",
                                     align_corners=False))
    return calibrate_bn(model, images), images  # realistic activation scales for the timing


def _build_detector(spec: ModelSpec):
    """torchvision's SSDLite320 on the core backbone at ``spec.resolution`` px, random weights,
    the class head's background logit raised so no (box, class) pair passes ``score_thresh``:
    timed is the network, decoding and candidate selection (not NMS of random boxes)."""
    from mnet_backbone.tv_models.detection import ssdlite320_mobilenet_v1  # torchvision: optional

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v1(alpha=spec.alpha)
    if spec.resolution != DETECTOR_SIZE:
        model.transform.fixed_size = (spec.resolution, spec.resolution)
    head = model.head.classification_head
    with torch.no_grad():
        for block in head.module_list:
            conv = block[-1]
            background = torch.arange(conv.out_channels) % head.num_columns == 0
            conv.bias[background] += 10.0
    return model.eval()


def _build(spec: ModelSpec, task: str, images):
    """The model, its input images at its resolution, and its cost by the paper's rule."""
    if task == "classify":
        model, calib = _build_classifier(spec, images)
        return model, calib, count(spec.alpha, spec.resolution)
    model = _build_detector(spec)
    calib = F.interpolate(images, size=(spec.resolution,) * 2, mode="bilinear",
                          align_corners=False)
    return model, calib, count_hooks(model, spec.resolution, forward=lambda m, t: m.head(
        list(m.backbone(t).values())))


def _runner(model, spec: ModelSpec, task: str, timing: Timing, folder: str, calib,
            cache: str | None) -> tuple[Callable, dict]:
    """The call to time on ``timing.backend`` and what the row records about it (the backend
    chosen, each backend's median for ``auto``)."""
    x = calib[:timing.batch].contiguous()
    if timing.backend == "pytorch":
        return _torch_runner(model, task, x), {"backend": "pytorch"}
    path = _export(model, spec, task, timing.precision, folder, calib)
    recorded: dict = {"backend": timing.backend}
    if timing.backend == "auto":
        recorded["backend"], recorded["auto_ms"] = backends.choose_backend(
            path, timing.precision, timing.batch, timing.threads, cache=cache)
    run = backends.load(path, recorded["backend"], timing.precision, timing.threads)
    array = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    return (lambda _x: run(array)), recorded


def measure(models: Sequence[ModelSpec] | None = None, task: str = "classify",
            timing: Timing = Timing(), *, workdir: str | None = None, cache: str | None = None,
            log: Callable[[str], None] | None = None) -> list[Row]:
    """Latency of every model (default: the paper's 16) on this machine, as ``timing`` says.

    Each model is built with random weights (BN statistics from rendered images; weights do not
    change the work), exported (classifier: :func:`~mnet_backbone.deploy.export.export_onnx`;
    detector: :func:`~mnet_backbone.deploy.export_detector`, image to boxes), quantized for
    ``int8`` (:func:`~mnet_backbone.deploy.quant.quantize_int8`, per-channel 7-bit weights, the
    classifier fp32: the structure of the accurate int8 path; detectors: convolutions only) and
    opened on ``timing.backend`` (``auto``: :func:`~mnet_backbone.deploy.backends.choose_backend`
    per file, cached per machine in ``cache``; ``pytorch``: :func:`~mnet_backbone.deploy.deploy`
    for the classifier, the torchvision model's own forward for the detector). All models are
    then timed together, round by round (:func:`~mnet_backbone.deploy.timing.time_interleaved`),
    so load changes hit them alike. ``workdir`` keeps the ONNX files (default: a temporary
    folder).
    """
    check_options(timing, task)
    models = list(models) if models is not None else default_models(task)
    if not models:
        raise ValueError("no models to measure")
    for spec in models:  # the same checks as parse_models, for specs built by hand
        parse_models(f"{spec.alpha}:{spec.resolution}", task)
    say = log or (lambda msg: None)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(timing.threads)
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="mnet_tradeoff_")
    folder = workdir or tmp.name
    os.makedirs(folder, exist_ok=True)
    try:
        images = _images(max(16, timing.batch), max(s.resolution for s in models), seed=1)
        runners: dict[str, Callable] = {}
        rows: dict[str, dict] = {}
        for i, spec in enumerate(models, 1):
            say(f"[tradeoff] {i}/{len(models)} {task} {spec.name}: build"
                + ("" if timing.backend == "pytorch" else ", export")
                + f" ({timing.backend} {timing.precision})")
            model, calib, cost = _build(spec, task, images)
            runners[spec.name], recorded = _runner(model, spec, task, timing, folder, calib,
                                                   cache)
            rows[spec.name] = dict(alpha=spec.alpha, resolution=spec.resolution, task=task,
                                   mult_adds=int(cost.mult_adds), params=int(cost.params),
                                   precision=timing.precision, batch=timing.batch,
                                   threads=timing.threads, **recorded)
        say(f"[tradeoff] timing {len(runners)} models together: {timing.rounds} rounds x "
            f"{timing.calls} calls")
        times = time_interleaved(runners, None, rounds=timing.rounds, calls=timing.calls,
                                 warmup=timing.warmup)
    finally:
        torch.set_num_threads(saved_threads)
        if tmp is not None:
            tmp.cleanup()
    out = []
    for name, row in rows.items():
        ms = [t * 1e3 for t in times[name]]
        out.append(Row(**row, latency_ms=round(statistics.median(ms), 4),
                       p90_ms=round(float(np.percentile(ms, 90)), 4),
                       min_ms=round(min(ms), 4), samples=len(ms)))
    return out


def _torch_runner(model, task: str, x) -> Callable:
    if task == "classify":
        fast = deploy(model)

        def run(_x):
            with torch.inference_mode():
                return fast(x)
        return run
    images = [im / 255.0 for im in x]

    def run_detector(_x):
        with torch.inference_mode():
            return model(images)
    return run_detector


def _export(model, spec: ModelSpec, task: str, precision: str, folder: str, calib) -> str:
    """The file to time: the fp32 export, or its int8 version calibrated on ``calib`` (the
    rendered images, as the model takes them)."""
    stem = os.path.join(folder, f"{task}_{spec.name}")
    if task == "classify":
        fp32 = export_onnx(model, stem + "_fp32.onnx", resolution=spec.resolution)
        if precision != "int8":
            return fp32
        # the graph of quantize_int8_accurate (7-bit weights, classifier fp32): the same kernels
        return quantize_int8(fp32, stem + "_int8.onnx", calib.numpy(), keep_fp32=("last",),
                             reduce_range=True)
    fp32 = stem + "_fp32.onnx"
    export_detector(model, fp32)
    if precision != "int8":
        return fp32
    return quantize_int8(fp32, stem + "_int8.onnx", calib.numpy(), op_types=DETECTOR_OP_TYPES)
