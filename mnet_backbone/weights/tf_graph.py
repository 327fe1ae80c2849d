"""TensorFlow frozen graphs of TF-slim's MobileNetV1 to this package's weights, and the real
ImageNet graph cached locally.

Google released its MobileNetV1 ImageNet models as ``mobilenet_v1_<alpha>_<res>.tgz`` archives
holding ``mobilenet_v1_<alpha>_<res>_frozen.pb``: a ``GraphDef`` whose variables are ``Const``
nodes (``MobilenetV1/Conv2d_0/weights``, ``.../BatchNorm/{gamma,beta,moving_mean,
moving_variance}``, ``MobilenetV1/Logits/Conv2d_1c_1x1/{weights,biases}``, a 1001-class head
whose class 0 is "background"). TF's ``retrain.py`` graphs built on them hold the same nodes (and
a retrained layer outside ``MobilenetV1/``, which is ignored).

The file is read without TensorFlow by :mod:`mnet_backbone.weights.graph_def`
(:func:`~mnet_backbone.weights.graph_def.read_tf_graph`); :func:`from_tf_graph` turns its nodes
into this package's state dict and reads the settings the weights need *from the graph itself*:
the padding of its convolutions (``SAME`` -> ``tf_padding=True``), the BatchNorm epsilon
(``FusedBatchNorm*`` ``epsilon`` attribute or the ``batchnorm/add/y`` constant of unfused BN)
and the activation (``Relu6``/``Relu`` nodes).
The width multiplier is detected from the constant shapes and every layer is checked against it.

:func:`imagenet_graph_path` is the locally cached real graph the tests use (Google's
``mobilenet_v1_1.0_224`` ImageNet weights, shipped inside the MIT-licensed PyPI package
``nudity`` 0.2.3 as ``nudity/files/retrained_graph.pb``); ``bash tools/install.sh`` or
``python -m mnet_backbone.weights --fetch-imagenet-graph`` puts it there once.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..files import atomic_write
from ..model import TABLE_1, plan_blocks
from .graph_def import GraphNode, OpaqueTensor
from .hub import IncompatibleWeightsError, WeightsError, sha256sum
from .layout import block_prefixes, put_bn

__all__ = ["TF_GRAPH_MODEL_KWARGS", "from_tf_graph", "imagenet_graph_path", "fetch_imagenet_graph",
           "graph_cache_dir", "IMAGENET_GRAPH", "MissingGraphError"]

# What TF-slim's mobilenet_v1_arg_scope trains with; from_tf_graph reads them from each graph.
TF_GRAPH_MODEL_KWARGS = {"tf_padding": True, "bn_eps": 1e-3, "activation": "relu6"}


# --- GraphDef nodes -> this package's state dict ----------------------------------------------

_STEM_WEIGHTS = "MobilenetV1/Conv2d_0/weights"
_LOGITS = "MobilenetV1/Logits/Conv2d_1c_1x1"


def _layer_names() -> List[Tuple[str, int, bool]]:
    """``(TF-slim layer name, stride, depthwise)`` of the 27 convolutions in network order."""
    out = []
    rows = [row for stage in TABLE_1 for row in stage]
    out.append(("Conv2d_0", rows[0][2], False))
    for n, (_, _, stride) in enumerate(rows[1:], start=1):
        out.append((f"Conv2d_{n}_depthwise", stride, True))
        out.append((f"Conv2d_{n}_pointwise", 1, False))
    return out


def _other_network(nodes: Dict[str, GraphNode]) -> str:
    scopes: Dict[str, int] = {}
    for name in nodes:
        scope = name.split("/", 1)[0]
        scopes[scope] = scopes.get(scope, 0) + 1
    top = sorted(scopes.items(), key=lambda kv: -kv[1])[:5]
    return (f"its {len(nodes)} nodes are in the scopes "
            f"{', '.join(f'{s} ({n})' for s, n in top) or 'none'}")


def _find_root(nodes: Dict[str, GraphNode]) -> str:
    """The scope prefix of the MobilenetV1 variables ('' or e.g. 'FeatureExtractor/')."""
    roots = [name[:-len(_STEM_WEIGHTS)] for name, node in nodes.items()
             if name.endswith(_STEM_WEIGHTS) and node.op == "Const"]
    if len(roots) == 1:
        return roots[0]
    if len(roots) > 1:
        raise IncompatibleWeightsError(f"the graph holds {len(roots)} MobileNetV1 networks "
                                       f"(scopes {roots}); expected one")
    conv_ops = sum(node.op in ("Conv2D", "DepthwiseConv2dNative") for node in nodes.values())
    hint = (" (the name of a TF-slim MobileNetV1 variable; is it a quantized or TFLite-prepared "
            "graph, or another network?)")
    raise IncompatibleWeightsError(
        f"not a TF-slim MobileNetV1 graph: no Const node {_STEM_WEIGHTS!r}{hint}; "
        f"{_other_network(nodes)}, {conv_ops} convolutions")


def _const(nodes: Dict[str, GraphNode], name: str, required: bool = True) -> Optional[np.ndarray]:
    node = nodes.get(name)
    if node is None:
        if not required:
            return None
        raise IncompatibleWeightsError(
            f"the MobileNetV1 graph has no node {name!r} ({len(nodes)} nodes): the file may be "
            f"truncated, or it is a variant this reader does not know (quantized or BN-folded "
            f"graphs are not supported)")
    value = node.attrs.get("value")
    if node.op != "Const" or value is None:
        raise IncompatibleWeightsError(f"graph node {name!r} is a {node.op!r} node, not a "
                                       f"constant: freeze the graph first (freeze_graph)")
    if isinstance(value, OpaqueTensor):
        raise IncompatibleWeightsError(f"graph constant {name!r} is {value.dtype_name} "
                                       f"{value.shape}; only float32/float64 weights convert "
                                       f"(quantized graphs are not supported)")
    return np.asarray(value, dtype=np.float32)


def _ops_of(nodes: Dict[str, GraphNode], layer: str) -> List[GraphNode]:
    """The op nodes of a layer: TF-slim puts them under ``.../MobilenetV1/<layer>/...`` (the
    variables' scope, sometimes doubled as ``MobilenetV1/MobilenetV1/<layer>``)."""
    key = f"MobilenetV1/{layer}/"
    return [node for name, node in nodes.items() if key in name and node.op != "Const"
            and node.op != "Identity"]


def _f32(value) -> float:
    """A float32 attribute as the shortest decimal that is that float32 (1e-3, not 0.0010000000475),
    so the settings read from a graph equal the ones written by hand."""
    return float(str(np.float32(value)))


def _bn_eps(nodes: Dict[str, GraphNode], layer: str, ops: List[GraphNode]) -> float:
    for node in ops:
        if node.op.startswith("FusedBatchNorm"):
            eps = node.attrs.get("epsilon")
            if not isinstance(eps, float):
                raise IncompatibleWeightsError(f"{node.name} ({node.op}) has no epsilon")
            return _f32(eps)
    key = f"MobilenetV1/{layer}/BatchNorm/batchnorm/add/y"
    for name, node in nodes.items():
        if name.endswith(key) and node.op == "Const":  # unfused BN: var + eps, rsqrt, ...
            value = node.attrs.get("value")
            if isinstance(value, np.ndarray) and value.size == 1:
                return _f32(value.reshape(()))
    raise IncompatibleWeightsError(
        f"cannot find the BatchNorm epsilon of MobileNetV1 layer {layer} (no FusedBatchNorm "
        f"node and no '.../{layer}/BatchNorm/batchnorm/add/y' constant; found the ops "
        f"{sorted({n.op for n in ops}) or 'none'})")


def _detect_alpha(channels: List[int]) -> float:
    """The width multiplier whose plan gives exactly ``channels`` (27 convolution outputs)."""
    last = channels[-1]
    for alpha in (round(last / 1024, 2), round(last / 1024, 3), last / 1024):
        if alpha <= 0:
            continue
        plan = [b for stage in plan_blocks(alpha) for b in stage]
        expected = [plan[0].out_channels]
        for block in plan[1:]:
            expected += [block.in_channels, block.out_channels]
        if expected == channels:
            return alpha
    raise IncompatibleWeightsError(
        f"the graph's layer widths {channels[:5]}...{channels[-2:]} are not MobileNetV1's at any "
        f"width multiplier (Conv2d_13_pointwise has {last} filters: alpha {last / 1024:g} would "
        f"give {[b.out_channels for s in plan_blocks(max(last / 1024, 1e-3)) for b in s][:5]}...)")


def from_tf_graph(nodes: Dict[str, GraphNode], alpha: Optional[float] = None
                  ) -> Tuple[Dict[str, Tensor], dict, dict]:
    """TF-slim MobileNetV1 graph nodes to ``(state_dict, model_kwargs, info)``.

    Kernels are HWIO, depthwise ones (kh, kw, in, 1); the classifier ``Conv2d_1c_1x1`` is a 1x1
    convolution with bias (1001 classes in Google's releases, class 0 = background: see
    :meth:`mnet_backbone.weights.loaded.LoadedWeights.without_background`); graphs without it
    give no ``fc`` keys. A missing ``gamma`` is TF-slim's ``scale=False`` (1). ``model_kwargs``
    are read from the graph (padding, BN epsilon, activation); ``info`` holds the detected
    ``alpha`` and ``num_classes``.
    ``alpha``, when given, must be the graph's.
    """
    root = _find_root(nodes)
    prefix = f"{root}MobilenetV1/"
    fake_quant = [n for n in nodes.values() if n.op.startswith("FakeQuant")]
    if fake_quant:
        raise IncompatibleWeightsError(
            f"a quantization-aware graph ({len(fake_quant)} FakeQuant nodes, e.g. "
            f"{fake_quant[0].name}): not supported; use the float release of the same model "
            f"(mobilenet_v1_<alpha>_<res>.tgz, not *_quant.tgz)")
    blocks = block_prefixes()
    layers = _layer_names()
    out: Dict[str, Tensor] = {}
    channels: List[int] = []
    eps_seen, padding_seen, acts_seen = {}, {}, {}
    for index, (layer, stride, depthwise) in enumerate(layers):
        block = blocks[(index + 1) // 2]
        if depthwise:
            kernel = _const(nodes, f"{prefix}{layer}/depthwise_weights")
            if kernel.ndim != 4 or kernel.shape[3] != 1:
                raise IncompatibleWeightsError(f"{prefix}{layer}/depthwise_weights has shape "
                                               f"{list(kernel.shape)}, expected (3, 3, C, 1)")
            kh, kw, c, _ = kernel.shape
            weight = torch.from_numpy(kernel.transpose(2, 3, 0, 1).reshape(c, 1, kh, kw).copy())
            key = f"{block}.dw"
        else:
            kernel = _const(nodes, f"{prefix}{layer}/weights")
            if kernel.ndim != 4:
                raise IncompatibleWeightsError(f"{prefix}{layer}/weights has shape "
                                               f"{list(kernel.shape)}, expected 4-D HWIO")
            weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            key = block if index == 0 else f"{block}.pw"
        channels.append(int(weight.shape[0]))
        out[f"{key}.conv.weight"] = weight
        bn = f"{prefix}{layer}/BatchNorm/"
        beta = _const(nodes, bn + "beta")
        gamma = _const(nodes, bn + "gamma", required=False)
        gamma = np.ones_like(beta) if gamma is None else gamma
        put_bn(out, f"{key}.bn", *(torch.from_numpy(np.ascontiguousarray(a)) for a in (
            gamma, beta, _const(nodes, bn + "moving_mean"), _const(nodes, bn + "moving_variance"))))
        ops = _ops_of(nodes, layer)
        convs = [n for n in ops if n.op in ("Conv2D", "DepthwiseConv2dNative")]
        if not convs:
            raise IncompatibleWeightsError(
                f"the graph has the weights of {prefix}{layer} but no Conv2D/"
                f"DepthwiseConv2dNative node using them: not a frozen inference graph")
        for conv in convs:
            strides = list(conv.attrs.get("strides") or [])
            if strides and strides[1:3] != [stride, stride]:
                raise IncompatibleWeightsError(
                    f"{conv.name} has strides {strides}, MobileNetV1's {layer} has stride "
                    f"{stride}: not a MobileNetV1 graph (or a dilated/output-stride variant)")
            if conv.attrs.get("data_format", b"NHWC") not in (b"NHWC",):
                raise IncompatibleWeightsError(f"{conv.name} uses data_format "
                                               f"{conv.attrs['data_format']!r}; expected NHWC")
            conv_padding = bytes(conv.attrs.get("padding", b"?")).decode("utf8", "replace")
            padding_seen.setdefault(conv_padding, layer)
        eps_seen.setdefault(_bn_eps(nodes, layer, ops), layer)
        acts = {n.op for n in ops if n.op in ("Relu6", "Relu")}
        if len(acts) != 1:
            raise IncompatibleWeightsError(
                f"MobileNetV1 layer {layer} has activation ops {sorted(acts) or 'none'}; "
                f"expected one Relu6 (or Relu)")
        acts_seen.setdefault(acts.pop(), layer)
    detected = _detect_alpha(channels)
    if alpha is not None and abs(alpha - detected) > 1e-6:
        raise IncompatibleWeightsError(
            f"the graph is MobileNetV1 alpha={detected:g} (Conv2d_0 has {channels[0]} filters, "
            f"Conv2d_13_pointwise {channels[-1]}), not the alpha={alpha:g} asked for")
    for what, seen in (("paddings", padding_seen), ("BatchNorm epsilons", eps_seen),
                       ("activations", acts_seen)):
        if len(seen) != 1:
            raise IncompatibleWeightsError(
                f"the graph's layers use different {what}: "
                f"{', '.join(f'{v!r} (first at {k})' for v, k in seen.items())}; the model has "
                f"one setting for all layers")
    padding = next(iter(padding_seen))
    if padding != "SAME":
        raise IncompatibleWeightsError(f"the graph's convolutions use {padding!r} padding; "
                                       f"TF-slim MobileNetV1 uses 'SAME' (tf_padding=True)")
    model_kwargs = {"tf_padding": True, "bn_eps": next(iter(eps_seen)),
                    "activation": {"Relu6": "relu6", "Relu": "relu"}[next(iter(acts_seen))]}
    logits_w = _const(nodes, f"{root}{_LOGITS}/weights", required=False)
    num_classes = 0
    if logits_w is not None:
        if logits_w.ndim != 4 or logits_w.shape[:3] != (1, 1, channels[-1]):
            raise IncompatibleWeightsError(
                f"{root}{_LOGITS}/weights has shape {list(logits_w.shape)}, expected "
                f"(1, 1, {channels[-1]}, classes)")
        num_classes = int(logits_w.shape[3])
        out["fc.weight"] = torch.from_numpy(logits_w.reshape(-1, num_classes).T.copy())
        biases = _const(nodes, f"{root}{_LOGITS}/biases", required=False)
        out["fc.bias"] = (torch.from_numpy(biases.copy()) if biases is not None
                          else torch.zeros(num_classes))
    info = {"alpha": detected, "num_classes": num_classes, "scope": prefix}
    return out, model_kwargs, info


# --- the real ImageNet graph, cached locally (tests, examples) ------------------------------------

@dataclass(frozen=True)
class _CachedGraph:
    package: str
    version: str
    member: str          # path of the graph inside the package's sdist
    sha256: str          # of the graph file
    license: str
    docs: str


IMAGENET_GRAPH = _CachedGraph(
    package="nudity", version="0.2.3", member="nudity-0.2.3/nudity/files/retrained_graph.pb",
    sha256="3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735", license="MIT",
    docs="A TF retrain.py graph on Google's mobilenet_v1_1.0_224 (TF-slim, 2017 release): its "
         "MobilenetV1/* constants are Google's ImageNet weights with the 1001-class head "
         "(class 0 = background), input 224x224 RGB in [-1, 1]; the retrained two-class layer "
         "(final_training_ops/*) is outside MobilenetV1/ and not used.")


class MissingGraphError(WeightsError, FileNotFoundError):
    """The cached real graph is not there (or is not the expected file)."""


def graph_cache_dir() -> str:
    """``$MNET_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/mnet-backbone`` + ``/tf_graphs``."""
    base = os.environ.get("MNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnet-backbone")
    return os.path.join(base, "tf_graphs")


def _cached_graph_file() -> str:
    g = IMAGENET_GRAPH
    return os.path.join(graph_cache_dir(), f"{g.package}-{g.version}-{os.path.basename(g.member)}")


_HOW_TO_GET = ("run `bash tools/install.sh` once, or `python -m mnet_backbone.weights "
               "--fetch-imagenet-graph` (pip downloads the PyPI package nudity==0.2.3 and "
               "extracts retrained_graph.pb; nothing is downloaded at test time)")


def imagenet_graph_path(check_hash: bool = True) -> str:
    """Path of the locally cached TF frozen graph with Google's MobileNetV1 1.0/224 ImageNet
    weights (1001 classes); :class:`MissingGraphError` says how to get it when it is missing."""
    path = _cached_graph_file()
    if not os.path.isfile(path):
        raise MissingGraphError(f"the real MobileNetV1 ImageNet graph is not cached at {path}: "
                                f"{_HOW_TO_GET}")
    if check_hash and sha256sum(path) != IMAGENET_GRAPH.sha256:
        raise MissingGraphError(f"{path} is not the expected file (SHA-256 {sha256sum(path)}, "
                                f"expected {IMAGENET_GRAPH.sha256}); delete it and {_HOW_TO_GET}")
    return path


def fetch_imagenet_graph(sdist: Optional[str] = None) -> str:
    """Put the real graph into the cache once (``pip download`` of the package, or the sdist
    ``.tar.gz`` given); checked by SHA-256 and written atomically. Returns its path."""
    dst = _cached_graph_file()
    if os.path.isfile(dst) and sha256sum(dst) == IMAGENET_GRAPH.sha256:
        return dst
    g = IMAGENET_GRAPH
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                                "--no-binary", ":all:", "-d", tmp, f"{g.package}=={g.version}"],
                               check=True)
            except subprocess.CalledProcessError as exc:
                raise WeightsError(
                    f"pip download {g.package}=={g.version} failed (exit {exc.returncode}; "
                    f"offline, or no package index?); download the sdist on a connected "
                    f"machine and pass it: python -m mnet_backbone.weights --sdist "
                    f"{g.package}-{g.version}.tar.gz") from None
            found = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
            if len(found) != 1:
                raise WeightsError(f"pip download of {g.package}=={g.version} gave {found}")
            sdist = os.path.join(tmp, found[0])
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.extractfile(g.member)
            if member is None:
                raise WeightsError(f"{sdist} holds no {g.member}")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            data = member.read()
            actual = hashlib.sha256(data).hexdigest()
            if actual != g.sha256:
                raise WeightsError(f"{g.member} of {sdist} has SHA-256 {actual}, expected "
                                   f"{g.sha256}")
            with atomic_write(dst) as f:
                f.write(data)
    return dst

