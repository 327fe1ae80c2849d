"""The mobile runtimes: ExecuTorch ``.pte`` and LiteRT ``.tflite`` files, fp32 and int8, on XNNPACK.

:func:`export_program` is the one path from a module to a mobile file: ``torch.export`` at a fixed
input shape (batch 1, as phones run it), then

* ExecuTorch (``pip install 'mnet-backbone[mobile]'``): ``to_edge_transform_and_lower`` with the
  ``XnnpackPartitioner`` and ``to_executorch``; int8 through torchao's ``prepare_pt2e`` /
  ``convert_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``;
* LiteRT (``bash tools/install_litert.sh``): ``litert_torch.convert(...).export(...)``; int8
  through the same PT2E steps with litert-torch's ``PT2EQuantizer`` and its static QDQ conversion
  (``QuantConfig(pt2e_quantizer=...)``), which gives int8 kernels and may give the file int8
  inputs / outputs (:func:`load` quantizes and dequantizes them).

int8 uses symmetric per-channel int8 weights and per-tensor int8 activations whose ranges are
observed on calibration images (the user's: :func:`calibration_images` applies the same folder
checks as the ONNX path). :func:`export_classifier` exports the core model's classifier or its
backbone features (BN folded, any alpha / resolution); :mod:`.detector_mobile` the detectors.

:func:`load` opens a file in its runtime (``executorch.runtime`` / ``ai_edge_litert``'s
``Interpreter``, XNNPACK, ``threads``) and returns a :class:`~.backends.Runner`: numpy in, a list
of numpy outputs out, like the ONNX Runtime / OpenVINO runners. The files take one image at a
time; a batch runs image by image.

Errors: a runtime that is not installed is a :class:`MobileRuntimeNotInstalledError` naming what
to install; a model part the runtime cannot hold is one :class:`UnsupportedOperatorError` line
naming the operator and the part; files are written whole or not at all.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..files import atomic_write
from ..model import MobileNetV1
from .backends import BackendNotInstalledError, Runner, default_threads
from .data import calibration_files, normalize, read_images
from .equalize import bias_correct
from .export import _exportable, output_names

__all__ = ["RUNTIMES", "SUFFIXES", "PRECISIONS", "MobileRuntimeNotInstalledError",
           "UnsupportedOperatorError", "require_runtime", "runtime_of", "export_program",
           "export_classifier", "calibration_images", "load", "file_size_mb"]

RUNTIMES = ("executorch", "litert")
SUFFIXES = {"executorch": ".pte", "litert": ".tflite"}
PRECISIONS = ("fp32", "int8")
# What each runtime needs, to run a file and to write one (module names, for find_spec).
_NEEDS = {("executorch", "run"): ("executorch",), ("executorch", "export"): ("executorch",),
          ("litert", "run"): ("ai_edge_litert",),
          ("litert", "export"): ("ai_edge_litert", "litert_torch")}
_INSTALL = {"executorch": "pip install 'mnet-backbone[mobile]' (ExecuTorch 1.5.1)",
            "litert": "bash tools/install_litert.sh (the LiteRT runtime and the litert-torch "
                      "converter; pip install 'mnet-backbone[litert]' gives the runtime only)"}


class MobileRuntimeNotInstalledError(BackendNotInstalledError):
    """ExecuTorch or LiteRT is not installed (the message names the extra / script)."""


class UnsupportedOperatorError(ValueError):
    """A model part holds an operator the runtime cannot run (the message names both)."""


def require_runtime(runtime: str, *, export: bool = False) -> None:
    """Check ``runtime`` is known and installed (with its converter when ``export``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown mobile runtime {runtime!r}; choose one of {RUNTIMES}")
    missing = [m for m in _NEEDS[runtime, "export" if export else "run"]
               if importlib.util.find_spec(m) is None]
    if missing:
        raise MobileRuntimeNotInstalledError(
            f"{runtime} is not installed (no {', '.join(missing)}): {_INSTALL[runtime]}")


def runtime_of(path: str) -> str:
    """The runtime of a file, from its suffix (``.pte``: executorch, ``.tflite``: litert)."""
    for runtime, suffix in SUFFIXES.items():
        if path.lower().endswith(suffix):
            return runtime
    raise ValueError(f"{path!r}: a mobile file ends in .pte (ExecuTorch) or .tflite (LiteRT)")


def file_size_mb(path: str) -> float:
    return round(os.path.getsize(path) / 2 ** 20, 2)


@contextlib.contextmanager
def _quiet():
    """The converters print progress bars and log at INFO; keep the caller's output readable."""
    loggers = [logging.getLogger(n) for n in ("executorch", "torch", "torchao", "litert_torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _data_dependent_ops(program: torch.export.ExportedProgram) -> List[str]:
    """Operators whose output size depends on the data (e.g. NMS, nonzero): neither runtime can
    plan their memory ahead ("Cannot evaluate a finite upper bound ..." in ExecuTorch)."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    found = []
    for node in program.graph.nodes:
        val = node.meta.get("val")
        vals = val if isinstance(val, (list, tuple)) else [val]
        if node.op == "call_function" and any(
                isinstance(v, torch.Tensor) and free_unbacked_symbols(v.shape) for v in vals):
            name = str(node.target).replace(".default", "")
            if name not in found:
                found.append(name)
    return found


def _export(module: nn.Module, example: Tuple[Tensor, ...], runtime: str,
            part: str) -> torch.export.ExportedProgram:
    try:
        with _quiet():
            program = torch.export.export(module, example, strict=False)
    except Exception as exc:  # torch.export's own message is long; the first line names it
        raise UnsupportedOperatorError(f"{part}: torch.export failed, so {runtime} cannot hold "
                                       f"it: {_first_line(exc)}") from None
    ops = _data_dependent_ops(program)
    if ops:
        raise UnsupportedOperatorError(
            f"{part}: operator {ops[0]} has a data-dependent output size, which {runtime} cannot "
            f"plan; export the part before it and run it on the host (as the detectors do)")
    return program


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _quantizer(runtime: str, scope: Sequence[str], fp32_modules: Sequence[type]):
    """The runtime's PT2E quantizer: per-channel symmetric int8 weights, static activations,
    on the submodules named in ``scope`` only (everything when empty), ``fp32_modules`` left in
    fp32. A name must be a module the forward calls (PT2E matches the module call stack)."""
    if runtime == "executorch":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)
        quantizer = XNNPACKQuantizer()
    else:
        from litert_torch.quantize.pt2e_quantizer import (PT2EQuantizer,
                                                          get_symmetric_quantization_config)
        quantizer = PT2EQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    for kind in fp32_modules:
        quantizer.set_module_type(kind, None)
    annotate = quantizer.annotate
    # This instance only: after the runtime's own annotation, quantize a conv's output after its
    # ReLU6 (see _clamp_after_conv) and nothing outside ``scope``. (Both quantizers' own
    # set_module_name also skips the convs' weights, which have no module stack: measured, a
    # detector file stayed fp32.)
    quantizer.annotate = lambda model: _only_in(_clamp_after_conv(annotate(model)), scope)
    return quantizer


def _only_in(model: torch.fx.GraphModule, scope: Sequence[str]) -> torch.fx.GraphModule:
    """Drop the quantization of every operator not called inside a module named in ``scope``
    (nothing when ``scope`` is empty)."""
    if not scope:
        return model
    for node in model.graph.nodes:
        if node.op != "call_function" or _ANNOTATION not in node.meta:
            continue
        paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
        if not any(p == s or p.startswith(s + ".") for p in paths for s in scope):
            del node.meta[_ANNOTATION]
    return model


_ANNOTATION = "quantization_annotation"  # torchao's Q_ANNOTATION_KEY (litert-torch's too)
_CLAMPS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
_CONVS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def _clamp_after_conv(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Move the output quantization of each conv followed by a ReLU6 (``hardtanh``) to the
    ReLU6's output.

    Both PT2E quantizers fuse a conv with a following ReLU, not with ReLU6: they observe the
    conv's output before the clip, negative values and spikes above 6 included, and the ReLU6
    shares that grid. MobileNet's activations then get a fraction of the int8 levels (measured
    on Google's 1.0-224 weights: 7 dB logit SQNR, 55 % top-1 agreement). Observed after the clip,
    the grid covers [0, <= 6], as the TFLite converter and XNNPACK fuse the clip into the conv
    either way.
    """
    for node in model.graph.nodes:
        if node.target not in _CLAMPS or not node.args:
            continue
        conv = node.args[0]
        conv_ann = getattr(conv, "meta", {}).get(_ANNOTATION)
        if conv.target not in _CONVS or len(conv.users) != 1 or conv_ann is None or \
                conv_ann.output_qspec is None:
            continue
        node.meta[_ANNOTATION] = type(conv_ann)(input_qspec_map={},
                                                output_qspec=conv_ann.output_qspec,
                                                _annotated=True)
        conv_ann.output_qspec = None
    return model


def _quantize(program: torch.export.ExportedProgram, quantizer, calibration: Iterable[Tensor],
              litert: bool) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with _quiet():
        prepared = prepare_pt2e(program.module(), quantizer)
        seen = 0
        with torch.no_grad():
            for image in calibration:  # the program has batch 1: one image at a time
                prepared(image.unsqueeze(0) if image.dim() == 3 else image)
                seen += 1
        if not seen:
            raise ValueError("int8 needs at least one calibration image")
        # litert-torch converts Q/DQ pairs itself (its tests keep fold_quantize=False).
        return convert_pt2e(prepared, fold_quantize=not litert)


def _lower_executorch(program: torch.export.ExportedProgram, part: str) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        with _quiet():
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            return edge.to_executorch().buffer
    except Exception as exc:
        raise UnsupportedOperatorError(f"{part}: ExecuTorch cannot lower it: "
                                       f"{_first_line(exc)}") from None


def _convert_litert(module: nn.Module, example: Tuple[Tensor, ...], quantizer, part: str,
                    path: str) -> None:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    config = QuantConfig(pt2e_quantizer=quantizer) if quantizer is not None else None
    try:
        with _quiet():
            edge = litert_torch.convert(module, example, quant_config=config)
    except Exception as exc:
        raise UnsupportedOperatorError(f"{part}: LiteRT (litert-torch) cannot convert it: "
                                       f"{_first_line(exc)}") from None
    with _quiet():
        content = edge.model_content()
    with atomic_write(path) as f:  # the model's flatbuffer, whole or not at all
        f.write(content)


def export_program(module: nn.Module, example: Tuple[Tensor, ...], path: str,
                   runtime: Optional[str] = None, *, precision: str = "fp32",
                   calibration: Optional[Iterable[Tensor]] = None, part: str = "model",
                   quant_scope: Sequence[str] = (),
                   fp32_modules: Sequence[type] = ()) -> str:
    """Write ``module`` (eval mode) for ``runtime`` (default: from the suffix of ``path``).

    ``example``: the input tensors (their shapes are the file's). ``precision="int8"`` needs
    ``calibration``: input tensors (3-d images or 4-d batches of one) to observe activation
    ranges on. ``quant_scope``: quantize only these submodules (e.g. the network, not the box
    decoding; names of modules the forward calls); ``fp32_modules``: module types left in fp32.
    ``part`` names the model part in errors. Returns ``path``.
    """
    runtime = runtime or runtime_of(path)
    require_runtime(runtime, export=True)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} for {runtime}; choose one of "
                         f"{PRECISIONS}")
    if precision == "int8" and calibration is None:
        raise ValueError("int8 needs calibration images (--calib-dir)")
    if not path.lower().endswith(SUFFIXES[runtime]):
        raise ValueError(f"{path!r}: a {runtime} file ends in {SUFFIXES[runtime]}")
    module = module.eval()
    program = _export(module, example, runtime, part)
    quantizer = None
    if precision == "int8":
        quantizer = _quantizer(runtime, quant_scope, fp32_modules)
        quantized = _quantize(program, quantizer, calibration, runtime == "litert")
        if runtime == "executorch":
            program = _export(quantized, example, runtime, part)
        else:
            module = quantized
    if runtime == "executorch":
        buffer = _lower_executorch(program, part)
        with atomic_write(path) as f:
            f.write(buffer)
    else:
        _convert_litert(module, example, quantizer, part, path)
    return path


def calibration_images(calib_dir: str, resolution: int = 224, limit: int = 200
                       ) -> Tuple[Tensor, str]:
    """The user's calibration images for the classifier (normalised N x 3 x R x R, the same
    folder checks and preprocessing as the ONNX int8 path) and a line saying what was used."""

    files, skipped = calibration_files(calib_dir, limit)
    raw, bad = read_images(files, resolution)
    return normalize(raw), (f"{len(raw)} images from {calib_dir} ({skipped} non-image files, "
                            f"{bad} undecodable skipped)")


def export_classifier(model: MobileNetV1, path: str, runtime: Optional[str] = None, *,
                      features: bool = False, resolution: int = 224, precision: str = "fp32",
                      calibration: Optional[Tensor] = None, correct_bias: bool = True,
                      verify: bool = True, threads: int = 0) -> Dict[str, object]:
    """The core model's classifier (or, with ``features``, its backbone stages) as a mobile
    file: BN folded, input 1 x C x R x R (normalised as for the PyTorch model).

    int8 asks to keep the classifier (``nn.Linear``, 0.2 % of the mult-adds) in fp32, as the
    ONNX path does (ExecuTorch does; the LiteRT converter quantizes it anyway: 4.4 MB instead of
    7.1 MB for 1.0-224), and (``correct_bias``) first corrects the conv biases for the int8 rounding
    (:func:`~mnet_backbone.deploy.equalize.bias_correct`, as
    :func:`~mnet_backbone.deploy.quant.quantize_int8_accurate` does). ``calibration``:
    normalised images (e.g. from :func:`calibration_images`).
    Returns a summary: file, runtime, precision, size, and with ``verify`` the largest
    |difference| of the outputs vs the PyTorch model on two random inputs.
    """
    runtime = runtime or runtime_of(path)
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    module = _exportable(model, features, fold=True)
    if precision == "int8" and correct_bias and calibration is not None:
        # The rounding biases of the int8 weights (largest for the 9-weight depthwise kernels)
        # add up through the network; moving each conv's bias by its mean output error on the
        # calibration images is what makes int8 hold on real weights (see .equalize).
        module = _exportable(bias_correct(module.net, torch.as_tensor(calibration)), features,
                             fold=False)
    example = (torch.zeros(1, model.in_channels, h, w),)
    part = f"MobileNetV1 {'features' if features else 'classifier'}"
    export_program(module, example, path, runtime, precision=precision,
                   calibration=calibration, part=part, fp32_modules=(nn.Linear,))
    summary: Dict[str, object] = {"file": path, "runtime": runtime, "precision": precision,
                                  "size_mb": file_size_mb(path),
                                  "outputs": output_names(model, features)}
    if verify:
        runner = load(path, threads=threads, precision=precision)
        x = torch.randn(2, model.in_channels, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = module(x)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        got = runner(x.numpy())
        summary["max_abs_diff_vs_pytorch"] = max(
            float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
    return summary


# --- runners ---------------------------------------------------------------------------------

def _batched(run_one, shape: Sequence[int]):
    """Run a batch-1 program on a batch, image by image (the input shape is the file's)."""
    want = tuple(int(d) for d in shape[1:])

    def run(x: np.ndarray) -> List[np.ndarray]:
        if x.ndim != len(shape) or tuple(x.shape[1:]) != want:
            raise ValueError(f"input of shape {tuple(x.shape)}; this file takes "
                             f"(batch, {', '.join(map(str, want))})")
        outs = [run_one(x[i:i + 1]) for i in range(len(x))]
        return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]

    return run


def _executorch_runner(path: str, precision: str, threads: int,
                       names: Optional[Sequence[str]]) -> Runner:
    from executorch.extension.pybindings.portable_lib import (_threadpool_get_thread_count,
                                                              _unsafe_reset_threadpool)
    from executorch.runtime import Runtime

    with _quiet():
        method = Runtime.get().load_program(path).load_method("forward")
    meta = method.metadata
    shape = list(meta.input_tensor_meta(0).sizes())
    count = meta.num_outputs()

    def run_one(x: np.ndarray) -> List[np.ndarray]:
        # XNNPACK's thread pool is one per process: size it for this runner's call.
        if _threadpool_get_thread_count() != threads:
            _unsafe_reset_threadpool(threads)
        return [o.numpy() for o in method.execute([torch.from_numpy(x)])]

    return Runner("executorch", precision, path, threads, "input",
                  list(names) if names else [f"output{i}" for i in range(count)],
                  _batched(run_one, shape))


def _litert_runner(path: str, precision: str, threads: int,
                   names: Optional[Sequence[str]]) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        interpreter = Interpreter(model_path=path, num_threads=threads)  # XNNPACK by default
        interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()

    def quantize(x: np.ndarray, detail) -> np.ndarray:
        scale, zero = detail["quantization"]
        if detail["dtype"] in (np.int8, np.uint8) and scale:
            info = np.iinfo(detail["dtype"])
            return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
        return x.astype(detail["dtype"])

    def dequantize(y: np.ndarray, detail) -> np.ndarray:
        scale, zero = detail["quantization"]
        if detail["dtype"] in (np.int8, np.uint8) and scale:
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y

    def run_one(x: np.ndarray) -> List[np.ndarray]:
        interpreter.set_tensor(inp["index"], quantize(x, inp))
        interpreter.invoke()
        return [dequantize(interpreter.get_tensor(o["index"]), o) for o in outs]

    # The converter orders outputs by name (output_0, output_1, ...): sort to the module's order.
    outs = sorted(outs, key=lambda o: _output_number(o["name"]))
    return Runner("litert", precision, path, threads, inp["name"],
                  list(names) if names else [f"output{i}" for i in range(len(outs))],
                  _batched(run_one, inp["shape"]))


def _output_number(name: str) -> int:
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return int(digits[-1]) if digits else 0


def load(path: str, threads: int = 0, output_names: Optional[Sequence[str]] = None,
         precision: str = "fp32") -> Runner:
    """Open a ``.pte`` (ExecuTorch) or ``.tflite`` (LiteRT) file on XNNPACK with ``threads``
    threads (default: torch's); ``output_names`` names the outputs (default output0, ...);
    ``precision`` is what the file holds (recorded on the runner)."""
    runtime = runtime_of(path)
    require_runtime(runtime)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}")
    threads = threads or default_threads()
    make = _executorch_runner if runtime == "executorch" else _litert_runner
    return make(path, precision, threads, output_names)
