"""One small converter per weight source, each returning this package's state dict (its keys:
:mod:`~mnet_backbone.weights.layout`), looked up in one table, :data:`CONVERTERS`, by source.

* ``keras``: :func:`from_keras` - Keras applications HDF5 (``conv1``, ``conv_dw_N``,
  ``conv_pw_N``, ``*_bn``, ``conv_preds``), read by layer name and weight order (Keras 2 and
  Keras 3 legacy files name the weights differently), with :func:`read_keras_h5`.
* ``timm``: :func:`from_timm` - timm ``mobilenetv1_*`` (``conv_stem``, ``bn1``,
  ``blocks.S.I.{conv_dw,bn1,conv_pw,bn2}``, ``classifier``).
* ``sequential``: :func:`from_sequential` - the ``nn.Sequential`` MobileNet of many repositories
  (``model.N.{0,1,3,4}`` + ``fc``).
* ``plain``: :func:`from_plain` - this package's own state dicts, possibly saved from a wrapper
  (``module.``, ``_orig_mod.``) or inside a detector (``backbone.``).
* ``tf_graph``: :func:`~mnet_backbone.weights.tf_graph.from_tf_graph` - TF-slim frozen graphs
  (``.pb``, or Google's release ``.tgz`` holding ``*_frozen.pb``), read without TensorFlow by
  :mod:`mnet_backbone.weights.graph_def`; the settings come from the graph's own ops.

:func:`convert_file` reads a file of any of them, :func:`convert_state_dict` a state dict in
memory; both give :class:`~mnet_backbone.weights.loaded.LoadedWeights`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .entries import KERAS_MODEL_KWARGS, TIMM_MODEL_KWARGS
from .hub import CorruptWeightsError, IncompatibleWeightsError, load_checkpoint
from .layout import block_prefixes, put_bn
from .loaded import LoadedWeights
from .graph_def import is_tf_graph_path, read_tf_graph
from .tf_graph import from_tf_graph

__all__ = ["CONVERTERS", "SOURCES", "Converter", "read_keras_h5", "from_keras", "from_timm",
           "from_sequential", "from_plain", "convert_file", "convert_state_dict"]

KERAS_SUFFIXES = (".h5", ".hdf5")


# --- Keras -------------------------------------------------------------------------------------

def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str) -> Dict[str, list]:
    """``{layer name: [arrays in the layer's weight order]}`` of a legacy Keras HDF5 file.

    Reads ``model.save_weights('x.h5')`` files of Keras 2 (layers at the root, weights named like
    ``conv_dw_1/depthwise_kernel:0``) and ``model.save('x.h5')`` files of Keras 2 and 3 (layers
    under ``model_weights``, Keras 3 names like ``conv_dw_1/kernel``): each layer's
    ``weight_names`` attribute gives the order, whatever the names are.
    """
    try:
        import h5py
        import numpy as np
    except ImportError:
        raise ImportError("reading Keras .h5 weights needs h5py: pip install h5py") from None
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                if "layers" in f and "vars" in f:
                    raise CorruptWeightsError(
                        f"{path} is a Keras 3 native '.weights.h5' file, which names layers by "
                        f"class, not by MobileNet layer; save the model as legacy HDF5 instead: "
                        f"model.save('mobilenet.h5')")
                raise CorruptWeightsError(f"{path} is an HDF5 file but not Keras weights (no "
                                          f"'layer_names'); expected a Keras MobileNet .h5 file")
            layers = {}
            for name in root.attrs["layer_names"]:
                group = root[_text(name)]
                names = [_text(n) for n in group.attrs.get("weight_names", [])]
                layers[_text(name)] = [np.asarray(group[n]) for n in names]
            return layers
    except CorruptWeightsError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CorruptWeightsError(
            f"cannot read {path} as a Keras HDF5 file ({type(exc).__name__}: {exc}); the file is "
            f"corrupt or truncated. Download it again.") from None


def from_keras(layers: Dict[str, list]) -> Dict[str, Tensor]:
    """Keras applications MobileNet weights (from :func:`read_keras_h5`) to a state dict.

    Keras kernels are (kh, kw, in, out), depthwise ones (kh, kw, in, 1), channels-last; the
    classifier ``conv_preds`` is a 1x1 convolution with bias. Files saved without the top
    (``*_no_top.h5``) give no ``fc`` keys.
    """
    def take(name: str, count: int) -> List[Tensor]:
        if name not in layers:
            raise CorruptWeightsError(
                f"the Keras file has no layer {name!r}: not a keras.applications.MobileNet "
                f"(v1) file? Its layers start with {list(layers)[:6]}")
        arrays = layers[name]
        if len(arrays) != count:
            raise CorruptWeightsError(f"Keras layer {name!r} holds {len(arrays)} weights, "
                                      f"expected {count}")
        return [torch.from_numpy(a.copy()) for a in arrays]

    out: Dict[str, Tensor] = {}
    blocks = block_prefixes()
    (kernel,) = take("conv1", 1)
    out[f"{blocks[0]}.conv.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
    put_bn(out, f"{blocks[0]}.bn", *take("conv1_bn", 4))  # gamma, beta, moving mean, variance
    for n, prefix in enumerate(blocks[1:], start=1):
        (dw,) = take(f"conv_dw_{n}", 1)
        kh, kw, channels, mult = dw.shape
        out[f"{prefix}.dw.conv.weight"] = dw.permute(2, 3, 0, 1).reshape(channels * mult, 1,
                                                                         kh, kw).contiguous()
        put_bn(out, f"{prefix}.dw.bn", *take(f"conv_dw_{n}_bn", 4))
        (pw,) = take(f"conv_pw_{n}", 1)
        out[f"{prefix}.pw.conv.weight"] = pw.permute(3, 2, 0, 1).contiguous()
        put_bn(out, f"{prefix}.pw.bn", *take(f"conv_pw_{n}_bn", 4))
    if "conv_preds" in layers:
        kernel, bias = take("conv_preds", 2)
        out["fc.weight"] = kernel.reshape(-1, kernel.shape[-1]).t().contiguous()
        out["fc.bias"] = bias
    return out


# --- timm --------------------------------------------------------------------------------------

_TIMM_LAYERS = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}


def from_timm(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """timm ``mobilenetv1_100`` / ``mobilenetv1_125`` state dict to this package's keys.

    timm's stem is ``conv_stem`` + ``bn1`` and its first stage holds only the 64-channel block,
    which is block 1 of the core's stage 0.
    """
    stem = block_prefixes()[0]
    out: Dict[str, Tensor] = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head == "conv_stem":
            out[f"{stem}.conv.{rest}"] = value
        elif head == "bn1":
            out[f"{stem}.bn.{rest}"] = value
        elif head == "classifier":
            out[f"fc.{rest}"] = value
        elif head == "blocks" and rest.count(".") >= 3 and rest.split(".")[2] in _TIMM_LAYERS:
            stage, index, layer, name = rest.split(".", 3)
            index = int(index) + 1 if stage == "0" else int(index)
            out[f"stages.{stage}.{index}.{_TIMM_LAYERS[layer]}.{name}"] = value
        else:
            raise IncompatibleWeightsError(
                f"timm key {key!r} has no counterpart in MobileNetV1: only timm's "
                f"mobilenetv1_100 / mobilenetv1_125 convert (not the head-conv 'h' variants)")
    return out


# --- nn.Sequential MobileNet of many repositories ----------------------------------------------

_SEQUENTIAL_LAYERS = {"0": "dw.conv", "1": "dw.bn", "3": "pw.conv", "4": "pw.bn"}


def from_sequential(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """``model.N.{0,1,3,4}`` + ``fc`` layout to this package's keys.

    ``model.0`` is the stem (conv ``.0``, BN ``.1``); ``model.N`` (N = 1..13) a separable block
    (depthwise conv ``.0``, BN ``.1``, ReLU ``.2``, pointwise conv ``.3``, BN ``.4``, ReLU ``.5``).
    These repositories usually use ReLU, not ReLU6: build the model with ``activation="relu"``.
    """
    blocks = block_prefixes()
    out: Dict[str, Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".", 3)
        if parts[0] == "fc":
            out[key] = value
            continue
        if (parts[0] != "model" or len(parts) != 4 or not parts[1].isdigit()
                or int(parts[1]) >= len(blocks)):
            raise IncompatibleWeightsError(
                f"key {key!r} is not of the sequential MobileNet layout model.N.{{0,1,3,4}} + fc "
                f"(N = 0..{len(blocks) - 1})")
        n, layer, name = int(parts[1]), parts[2], parts[3]
        if n == 0 and layer in ("0", "1"):
            out[f"{blocks[0]}.{'conv' if layer == '0' else 'bn'}.{name}"] = value
        elif n > 0 and layer in _SEQUENTIAL_LAYERS:
            out[f"{blocks[n]}.{_SEQUENTIAL_LAYERS[layer]}.{name}"] = value
        else:
            raise IncompatibleWeightsError(f"key {key!r}: layer {layer} of model.{n} holds no "
                                           f"weights in the sequential MobileNet layout")
    return out


# --- this package ------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def from_plain(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """This package's keys, without ``module.``/``_orig_mod.`` prefixes; from a detector
    checkpoint (keys ``backbone.stages...``), the backbone's weights."""
    out = dict(state_dict)
    for prefix in _WRAPPER_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    if not any(k.startswith("stages.") for k in out) and any(k.startswith("backbone.stages.")
                                                            for k in out):
        out = {k[len("backbone."):]: v for k, v in out.items() if k.startswith("backbone.")}
    return out


def _unwrap(checkpoint) -> Dict[str, Tensor]:
    """The state dict inside a checkpoint (``state_dict``, ``model`` or ``model_state_dict``
    entries of training checkpoints), wrapper prefixes removed."""
    if not isinstance(checkpoint, dict):
        raise CorruptWeightsError(f"expected a state dict, got a {type(checkpoint).__name__}")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state_dict = {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}
    if not state_dict:
        raise CorruptWeightsError(f"no tensors in the checkpoint (keys: {list(checkpoint)[:8]})")
    return from_plain(state_dict) if any(
        k.startswith(p) for k in state_dict for p in _WRAPPER_PREFIXES) else state_dict


def _detect_source(state_dict: Dict[str, Tensor]) -> str:
    """``"plain"``, ``"timm"`` or ``"sequential"``, from the keys."""
    keys = list(state_dict)
    if any(k.startswith(("stages.", "backbone.stages.")) for k in keys):
        return "plain"
    if any(k.startswith("conv_stem.") for k in keys):
        return "timm"
    if any(k.startswith("model.0.0.") for k in keys):
        return "sequential"
    raise IncompatibleWeightsError(
        f"cannot tell which MobileNetV1 layout these weights use (first keys: {keys[:4]}); "
        f"expected this package's (stages.*), timm's (conv_stem, blocks.*) or the sequential one "
        f"(model.N.*); give the source explicitly if it is one of them")


def _read_file(path: str):
    """The raw contents of a state-dict file: a safetensors dict or a (weights-only) torch
    checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError("reading .safetensors weights needs safetensors: "
                              "pip install safetensors") from None
        try:
            return load_file(path)
        except Exception as exc:  # SafetensorError, OSError, ...
            raise CorruptWeightsError(
                f"cannot read {path} as safetensors ({exc}); the file is corrupt or truncated. "
                f"Download it again.") from None
    # A weights-only torch checkpoint (also an mmengine Runner one); anything else is one
    # UnreadableCheckpointError naming what the file is.
    return load_checkpoint(path)


def _read_keras_file(path: str) -> Dict[str, list]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    return read_keras_h5(path)


def _keras(layers: Dict[str, list]) -> Tuple[Dict[str, Tensor], dict]:
    return from_keras(layers), dict(KERAS_MODEL_KWARGS)


def _tf_graph(nodes) -> Tuple[Dict[str, Tensor], dict]:
    state_dict, model_kwargs, _ = from_tf_graph(nodes)
    return state_dict, model_kwargs


def _keyed(convert: Callable[[Dict[str, Tensor]], Dict[str, Tensor]], model_kwargs: Mapping):
    def run(state_dict: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], dict]:
        return convert(state_dict), dict(model_kwargs)
    return run


@dataclass(frozen=True)
class Converter:
    """How the weights of one source become this package's state dict and the model settings
    they need."""

    convert: Callable[[Any], Tuple[Dict[str, Tensor], dict]]  # what ``read`` gives -> both
    # A file format of the source's own, told by its name (None: a torch or safetensors state
    # dict, whose source is told by its keys).
    read: Optional[Callable[[str], Any]] = None
    is_its_file: Callable[[str], bool] = lambda path: False
    file_kind: str = ""  # the file format in words, for errors


CONVERTERS: Dict[str, Converter] = {
    "keras": Converter(_keras, _read_keras_file, lambda p: p.lower().endswith(KERAS_SUFFIXES),
                       "a Keras HDF5 file"),
    "timm": Converter(_keyed(from_timm, TIMM_MODEL_KWARGS)),
    # {}: the settings are not known from the file
    "sequential": Converter(_keyed(from_sequential, {})),
    "plain": Converter(_keyed(from_plain, {})),
    # The graph's own ops give the settings (TF-slim's are TF_GRAPH_MODEL_KWARGS).
    "tf_graph": Converter(_tf_graph, read_tf_graph, is_tf_graph_path,
                          "a TensorFlow graph (or release archive)"),
}
SOURCES = tuple(CONVERTERS)


def _check_source(source: Optional[str]) -> None:
    if source is not None and source not in CONVERTERS:
        raise ValueError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")


def convert_state_dict(checkpoint, source: Optional[str] = None, name: str = "the state dict",
                       origin: str = "state dict") -> LoadedWeights:
    """A state dict (or a checkpoint holding one) of any keyed source: ``source`` is checked, or
    detected from the keys when None. Settings this package recorded with the weights
    (:func:`~mnet_backbone.weights.load.convert_to_file`'s ``meta``) are theirs. ``name`` is how
    errors name the weights; the description is ``"<source> <origin>"``."""
    _check_source(source)
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    state_dict = _unwrap(checkpoint)
    detected = _detect_source(state_dict)
    if source is not None and source != detected:
        raise IncompatibleWeightsError(
            f"{name} was given as {source!r} weights but its keys are of the {detected!r} layout "
            f"(first keys: {list(state_dict)[:3]}); use --from {detected} / source={detected!r}")
    state_dict, model_kwargs = CONVERTERS[detected].convert(state_dict)
    if isinstance(meta, dict) and meta.get("format") == "mnet_backbone":
        model_kwargs = dict(meta.get("model_kwargs") or {})
        detected = meta.get("source", detected)
    return LoadedWeights.of(state_dict, model_kwargs, detected, f"{detected} {origin}")


def convert_file(path: str, source: Optional[str] = None,
                 given: Optional[str] = None) -> LoadedWeights:
    """Read and convert a weights file of any source.

    ``source`` (one of :data:`SOURCES`) is detected when not given: ``.h5``/``.hdf5`` files are
    Keras, ``.pb``/``.tgz``/``.tar.gz`` TF frozen graphs, others are told apart by their keys.
    The settings are those the weights need (for this package's own checkpoints, those recorded
    in them; for TF graphs, those of the graph's ops). ``given`` is how the caller named the
    file (the description quotes it).
    """
    _check_source(source)
    path = os.path.expanduser(path)
    own = next((name for name, c in CONVERTERS.items() if c.is_its_file(path)), None)
    if own is not None and source not in (None, own):
        raise IncompatibleWeightsError(f"{path} is {CONVERTERS[own].file_kind}, not {source!r} "
                                       f"weights; use --from {own} / source={own!r}")
    source = source or own
    converter = CONVERTERS.get(source)
    if converter is None or converter.read is None:
        return convert_state_dict(_read_file(path), source, path, f"weights from {given or path}")
    state_dict, model_kwargs = converter.convert(converter.read(path))
    return LoadedWeights.of(state_dict, model_kwargs, source,
                            f"{source} weights from {given or path}")
