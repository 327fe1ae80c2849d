"""ONNX and TorchScript export of the BN-folded model, classifier or multi-scale backbone.

:func:`export_onnx` writes one self-contained ``.onnx`` file (opset 18 by default, dynamic batch,
BN folded into the convolutions, no ``BatchNormalization`` node) with torch's exporter, and
:func:`verify_onnx` runs it in ONNX Runtime against the original PyTorch model.
:func:`export_torchscript` scripts the folded model (``torch.jit.load`` gives it back without this
package). ``features=True`` exports the backbone: one output per stage of ``out_indices``
(named ``stage{i}``, strides 2, 4, 8, 16, 32 for i = 0..4).

onnx / onnxruntime (and onnxscript, which torch's exporter uses) are imported on use.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from ..files import atomic_path
from ..model import MIN_INPUT_SIZE, MobileNetV1
from .fold import fold_bn

__all__ = ["export_onnx", "verify_onnx", "export_torchscript", "verify_torchscript",
           "output_names", "ort_session", "OnnxCheck", "MIN_OPSET", "DEFAULT_OPSET",
           "check_export_settings"]

MIN_OPSET = 17
DEFAULT_OPSET = 18


class _Features(nn.Module):
    """The backbone face for export: a tuple of the ``out_indices`` feature maps."""

    def __init__(self, net: MobileNetV1):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.net.forward_features(x))


class _Classifier(nn.Module):
    """The core's classifier forward (subclasses such as mmdet's may override ``forward``)."""

    def __init__(self, net: MobileNetV1):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return MobileNetV1.forward(self.net, x)


def output_names(model: MobileNetV1, features: bool) -> List[str]:
    if features:
        return [f"stage{i}" for i in model.out_indices]
    return ["logits" if not isinstance(model.fc, nn.Identity) else "pooled"]


def _exportable(model: MobileNetV1, features: bool, fold: bool) -> nn.Module:
    net = fold_bn(model) if fold else model
    return (_Features(net) if features else _Classifier(net)).eval()


def export_onnx(model: MobileNetV1, path: str, *, features: bool = False, resolution: int = 224,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = True, fold: bool = True) -> str:
    """Export ``model`` (BN folded, eval) to ``path``; returns ``path``.

    The input is ``input`` of shape (batch, C, resolution, resolution), batch dynamic unless
    ``dynamic_batch=False``. ``resolution`` may be an int or an (H, W) pair.
    """
    import onnx

    h, w = check_export_settings(resolution, opset)
    module = _exportable(model, features, fold)
    x = torch.zeros(2 if dynamic_batch else 1, model.in_channels, h, w)
    names = output_names(model, features)
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset,
                                    input_names=["input"], output_names=names, verbose=False,
                                    report=False, **kwargs)
    proto = program.model_proto
    if dynamic_batch:  # a readable name for the dynamic axis
        for value in list(proto.graph.input) + list(proto.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    ops = {node.op_type for node in proto.graph.node}
    if fold and "BatchNormalization" in ops:
        raise RuntimeError("BatchNormalization left in the exported graph after folding")
    with atomic_path(path) as tmp:  # onnx.save wants a name
        onnx.save(proto, tmp, save_as_external_data=False)
    return path


def check_export_settings(resolution, opset: int) -> Tuple[int, int]:
    """(height, width) of ``resolution`` (an int or a pair) once it and ``opset`` are checked:
    the one check of :func:`export_onnx`'s settings, which its command line runs before any
    work."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET} (torch's ONNX exporter), got "
                         f"{opset!r}")
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if min(h, w) < MIN_INPUT_SIZE:
        raise ValueError(f"resolution must be at least {MIN_INPUT_SIZE} px (MobileNetV1 "
                         f"downsamples 32x), got {resolution!r}")
    return h, w


def ort_session(path: str, threads: int = 0, optimization: str = "all"):
    """An ONNX Runtime CPU session (``threads`` intra-op threads, 0 = ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxCheck:
    """Largest absolute and relative difference per output, ONNX Runtime vs PyTorch."""

    outputs: Dict[str, Tuple[float, float]]  # name -> (max |diff|, max |diff| / max |ref|)
    shapes: Dict[str, Tuple[int, ...]]

    @property
    def max_abs(self) -> float:
        return max(a for a, _ in self.outputs.values())

    @property
    def max_rel(self) -> float:
        return max(r for _, r in self.outputs.values())


def _reference_outputs(model: MobileNetV1, x: Tensor, features: bool) -> List[Tensor]:
    """The eval-mode outputs an export must reproduce (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return model.forward_features(x) if features else [MobileNetV1.forward(model, x)]
    finally:
        model.train(was_training)


@torch.no_grad()
def verify_onnx(path: str, model: MobileNetV1, x: Tensor, *, features: bool = False,
                atol: float = 1e-4, threads: int = 0) -> OnnxCheck:
    """Run the exported file in ONNX Runtime and compare with the (unfolded) eval model.

    Raises ``AssertionError`` when an output differs by more than ``atol`` relative to the
    output's largest magnitude (floor 1), or when shapes or output counts differ.
    """
    refs = _reference_outputs(model, x, features)
    session = ort_session(path, threads)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    names = [o.name for o in session.get_outputs()]
    if len(got) != len(refs):
        raise AssertionError(f"{path}: {len(got)} outputs, PyTorch gives {len(refs)}")
    outputs, shapes = {}, {}
    for name, ref, out in zip(names, refs, got):
        if tuple(ref.shape) != tuple(out.shape):
            raise AssertionError(f"{path}: output {name} has shape {out.shape}, PyTorch "
                                 f"{tuple(ref.shape)}")
        diff = float((torch.from_numpy(out) - ref).abs().max())
        scale = float(ref.abs().max())
        outputs[name] = (diff, diff / max(scale, 1e-12))
        shapes[name] = tuple(out.shape)
        if diff > atol * max(scale, 1.0):
            raise AssertionError(f"{path}: output {name} differs from PyTorch by {diff:.3g} "
                                 f"(largest |value| {scale:.3g}, tolerance {atol})")
    return OnnxCheck(outputs, shapes)


# What MobileNetV1.__init__ records besides its layers (kept readable on the scripted module).
_CORE_SETTINGS = ("alpha", "in_channels", "out_indices", "frozen_stages", "norm_eval",
                  "tf_padding", "out_channels", "num_features")


class _ScriptCore(nn.Module):
    """A model's layers (shared) and settings under the core's own forwards, for scripting.

    TorchScript compiles the methods of the module's class: a face's subclass would export its
    own ``forward`` (mmdet's returns the features, as a tuple, which does not script) instead of
    the core's classifier, and mmengine's ``BaseModule`` properties do not script at all. These
    are MobileNetV1's forwards, whatever the model's class.
    """

    forward = MobileNetV1.forward
    forward_features = MobileNetV1.forward_features
    forward_head = MobileNetV1.forward_head

    def __init__(self, net: MobileNetV1):
        super().__init__()
        self.stages, self.avgpool, self.dropout, self.fc = (net.stages, net.avgpool, net.dropout,
                                                             net.fc)
        for name in _CORE_SETTINGS:
            setattr(self, name, getattr(net, name))


class _ScriptFeatures(nn.Module):
    """TorchScript form of the backbone face: ``forward`` returns the list of feature maps."""

    def __init__(self, net: MobileNetV1):
        super().__init__()
        self.net = _ScriptCore(net)

    def forward(self, x: Tensor) -> List[Tensor]:
        return self.net.forward_features(x)


def export_torchscript(model: MobileNetV1, path: str, *, features: bool = False,
                       fold: bool = True) -> str:
    """Script the (BN-folded) model and save it; ``torch.jit.load(path)`` runs it anywhere.

    The classifier module keeps ``forward_features`` as a method; ``features=True`` saves a
    module whose ``forward`` returns the list of ``out_indices`` feature maps.
    """
    net = fold_bn(model) if fold else copy.deepcopy(model).eval()
    module = _ScriptFeatures(net) if features else _ScriptCore(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module.eval())
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.jit.save(scripted, path)
    return path


@torch.no_grad()
def verify_torchscript(path: str, model: MobileNetV1, x: Tensor, *, features: bool = False,
                       atol: float = 1e-4) -> float:
    """Largest |difference| of the saved TorchScript module vs the eval model (raises > atol)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(path)
    refs = _reference_outputs(model, x, features)
    got = loaded(x)
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    worst = 0.0
    for ref, out in zip(refs, got):
        diff = float((out - ref).abs().max())
        if diff > atol * max(float(ref.abs().max()), 1.0):
            raise AssertionError(f"{path}: TorchScript output differs by {diff:.3g}")
        worst = max(worst, diff)
    if len(got) != len(refs):
        raise AssertionError(f"{path}: {len(got)} outputs, PyTorch gives {len(refs)}")
    return worst
