"""ImageNet-pretrained MobileNetV1 weights: registry, download, conversion, loading.

One loader serves every front end (plain PyTorch, the torchvision builders, mmdet's ``init_cfg``
through the ``mnet://<entry>`` checkpoint scheme)::

    from mnet_backbone.weights import mobilenet_v1, load_weights, ENTRIES
    model = mobilenet_v1(weights="keras_1.0_224")            # downloads, converts, caches
    backbone = mobilenet_v1(weights="timm_1.0_224_ra4", num_classes=10, backbone_only=True)
    load_weights(model, "mobilenet_1_0_224_tf.h5")          # a local file of any source
    model = mobilenet_v1(weights="mobilenet_v1_1.0_224.tgz", drop_background=True)  # TF graph

Weights trained in TF/Keras need TF "SAME" padding and BN eps 1e-3: :func:`mobilenet_v1` builds
the model with them, :func:`load_weights` switches an existing model to them (with a warning).
Google's TF-slim graphs have a 1001-class head (class 0 = background); ``drop_background=True``
gives the 1000 ImageNet classes.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Mapping, Optional, Tuple, Union

from torch import Tensor, nn

from ..model import ACTIVATIONS, MobileNetV1
from .convert import (BACKGROUND_CLASSES, SOURCE_MODEL_KWARGS, SOURCES, convert_file,
                      convert_to_file, drop_background, from_keras, from_plain, from_sequential,
                      from_timm, read_keras_h5)
from .entries import ENTRIES, WeightEntry, get_entry, register
from .hub import (CorruptWeightsError, HashMismatchError, IncompatibleWeightsError,
                  UnknownEntryError, WeightsDownloadError, WeightsError, cache_dir,
                  cached_conversion)
from .tf_graph import MissingGraphError, from_tf_graph, imagenet_graph_path, read_tf_graph

__all__ = ["WeightEntry", "ENTRIES", "get_entry", "register", "load_state_dict", "load_weights",
           "mobilenet_v1", "resolve_weights", "apply_model_kwargs", "check_fit", "convert_file",
           "convert_to_file", "from_keras", "from_timm", "from_sequential", "from_plain",
           "read_keras_h5", "read_tf_graph", "from_tf_graph", "drop_background",
           "imagenet_graph_path", "cache_dir", "SOURCES", "WeightsError", "UnknownEntryError",
           "WeightsDownloadError", "HashMismatchError", "CorruptWeightsError",
           "IncompatibleWeightsError", "MissingGraphError"]

WeightsLike = Union[WeightEntry, str, "os.PathLike[str]", Mapping[str, Tensor]]


def _convert_entry_file(source: str):
    def convert(path: str) -> Dict[str, Tensor]:
        return convert_file(path, source)[0]
    return convert


def load_state_dict(entry_or_name, progress: bool = True,
                    check_hash: bool = True) -> Dict[str, Tensor]:
    """The state dict (this package's keys) of a registered entry.

    Downloaded to the torch hub cache on first use (progress bar on stderr, SHA-256 checked when
    the entry has one), converted once and cached as ``<entry>.pth``.
    """
    entry = get_entry(entry_or_name)
    return cached_conversion(entry, _convert_entry_file(entry.source), progress, check_hash)


def resolve_weights(weights: WeightsLike, progress: bool = True, check_hash: bool = True,
                    drop_background: bool = False) -> Tuple[Dict[str, Tensor], dict, str]:
    """``(state_dict, model_kwargs, description)`` of an entry, entry name, file or state dict.

    ``drop_background``: a TF-slim 1001-class head becomes the 1000 ImageNet classes (any other
    head is an error, see :func:`~mnet_backbone.weights.convert.drop_background`).
    """
    state_dict, model_kwargs, what = _resolve_weights(weights, progress, check_hash)
    if drop_background:
        state_dict = _drop_background(state_dict, what)
        what = f"{what} (background class dropped)"
    return state_dict, model_kwargs, what


_drop_background = drop_background  # hidden by the arguments of the same name below


def _resolve_weights(weights: WeightsLike, progress: bool,
                     check_hash: bool) -> Tuple[Dict[str, Tensor], dict, str]:
    if isinstance(weights, WeightEntry) or (isinstance(weights, str) and weights in ENTRIES):
        entry = get_entry(weights)
        return (load_state_dict(entry, progress, check_hash), dict(entry.model_kwargs),
                f"weights {entry.name!r}")
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.exists(os.path.expanduser(path)):
            raise UnknownEntryError(
                f"weights {path!r} are neither a registered entry nor an existing file; valid "
                f"entries: {', '.join(ENTRIES)}")
        state_dict, model_kwargs, source = convert_file(path)
        return state_dict, model_kwargs, f"{source} weights from {path}"
    if isinstance(weights, Mapping):
        from .convert import detect_source, unwrap
        state_dict = unwrap(dict(weights))
        source = detect_source(state_dict)
        converted = {"timm": from_timm, "sequential": from_sequential,
                     "plain": from_plain}[source](state_dict)
        return converted, dict(SOURCE_MODEL_KWARGS[source]), f"{source} state dict"
    raise TypeError(f"weights must be a WeightEntry, an entry name, a file path or a state dict, "
                    f"got {type(weights).__name__}")


def _conv_units(model: nn.Module):
    """The core's ConvBNAct units (duck-typed, so mmdet's subclass works the same)."""
    return [m for m in model.modules()
            if hasattr(m, "pad_same") and hasattr(m, "conv") and hasattr(m, "stride")]


def apply_model_kwargs(model: nn.Module, model_kwargs: Mapping, what: str = "these weights",
                       warn: bool = True) -> list:
    """Switch an existing model to the padding and BN eps ``model_kwargs`` ask for.

    ``tf_padding`` and ``bn_eps`` are changed in place (returned as a list of what changed, with a
    warning when ``warn``); an activation that differs cannot be switched and raises
    :class:`IncompatibleWeightsError`.
    """
    changed = []
    units = _conv_units(model)
    activation = model_kwargs.get("activation")
    if activation is not None and units:
        wanted = ACTIVATIONS[activation]
        actual = type(units[0].act)
        if not isinstance(units[0].act, wanted):
            raise IncompatibleWeightsError(
                f"{what} were trained with {wanted.__name__} but the model uses "
                f"{actual.__name__}; build it with activation={activation!r} (mmdet: "
                f"act_cfg=dict(type={wanted.__name__!r}))")
    tf_padding = model_kwargs.get("tf_padding")
    if tf_padding is not None and bool(getattr(model, "tf_padding", False)) != tf_padding:
        for unit in units:
            unit.pad_same = tf_padding and unit.stride > 1
            k = unit.kernel_size
            unit.conv.padding = (0, 0) if unit.pad_same else (k // 2, k // 2)
        model.tf_padding = tf_padding
        changed.append(f"tf_padding={tf_padding}")
    eps = model_kwargs.get("bn_eps")
    if eps is not None:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if any(m.eps != eps for m in norms):
            for m in norms:
                m.eps = eps
            changed.append(f"bn_eps={eps}")
    if changed and warn:
        warnings.warn(f"load_weights: {what} need {', '.join(changed)}; switched the model to "
                      f"them (build it with these settings to skip this)", UserWarning,
                      stacklevel=3)
    return changed


def _alpha_hint(state_dict: Mapping[str, Tensor]) -> str:
    stem = state_dict.get("stages.0.0.conv.weight")
    if stem is None:
        return ""
    return f" (the weights' stem has {stem.shape[0]} channels: alpha={stem.shape[0] / 32:g})"


def check_fit(model: nn.Module, state_dict: Mapping[str, Tensor], what: str,
               strict: bool) -> None:
    """Raise IncompatibleWeightsError at the first layer whose shape differs, and (strict) at
    the first missing or unexpected key."""
    own = model.state_dict()
    for key, value in own.items():
        theirs = state_dict.get(key)
        if theirs is not None and tuple(theirs.shape) != tuple(value.shape):
            hint = (" - another num_classes: build the model with num_classes="
                    f"{theirs.shape[0]}, or pass backbone_only=True for a new classifier"
                    + (" (a TF-slim head, class 0 = background: drop_background=True gives the "
                       f"{theirs.shape[0] - 1} ImageNet classes)"
                       if theirs.shape[0] == BACKGROUND_CLASSES else "")
                    if key.startswith("fc.") else
                    f" - another width multiplier{_alpha_hint(state_dict)}; the model has "
                    f"alpha={getattr(model, 'alpha', '?')}")
            raise IncompatibleWeightsError(
                f"{what} do not fit the model: first mismatch at {key}: weights "
                f"{tuple(theirs.shape)}, model {tuple(value.shape)}{hint}")
    if not strict:
        return
    missing = [k for k in own if k not in state_dict]
    if missing:
        hint = (" - the weights have no classifier: pass backbone_only=True"
                if missing[0].startswith("fc.") else "")
        raise IncompatibleWeightsError(f"{what} lack {len(missing)} of the model's entries, the "
                                       f"first is {missing[0]}{hint}")
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        hint = (" - the model has no classifier (num_classes=0): pass backbone_only=True"
                if unexpected[0].startswith("fc.") else
                " - another variant (shallow/Conv MobileNet) or another network")
        raise IncompatibleWeightsError(f"{what} have {len(unexpected)} entries the model does "
                                       f"not, the first is {unexpected[0]}{hint}")


def load_weights(model: nn.Module, weights: WeightsLike, backbone_only: bool = False,
                 strict: bool = True, progress: bool = True, check_hash: bool = True,
                 drop_background: bool = False):
    """Load ``weights`` (an entry, entry name, file of any supported source, or state dict).

    The model is switched to the padding and BN eps the weights need (see
    :func:`apply_model_kwargs`). ``backbone_only`` leaves the classifier out (detection, or a new
    ``num_classes``); ``drop_background`` loads a TF-slim 1001-class head as the 1000 ImageNet
    classes. Shapes are checked first: weights for another alpha or num_classes raise
    :class:`IncompatibleWeightsError` naming the first mismatched layer and both shapes.
    Returns ``model.load_state_dict``'s result.
    """
    state_dict, model_kwargs, what = resolve_weights(weights, progress, check_hash,
                                                     drop_background)
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        own = model.state_dict()
        if strict and any(k.startswith("fc.") for k in own):
            state_dict.update({k: v for k, v in own.items() if k.startswith("fc.")})
    check_fit(model, state_dict, what, strict)
    apply_model_kwargs(model, model_kwargs, what)
    return model.load_state_dict(state_dict, strict=strict)


def mobilenet_v1(weights: Optional[WeightsLike] = None, progress: bool = True,
                 backbone_only: bool = False, drop_background: bool = False,
                 **kwargs) -> MobileNetV1:
    """A core :class:`~mnet_backbone.model.MobileNetV1`, optionally with pretrained weights.

    With an entry (or its name), ``alpha``, ``num_classes`` and the settings the weights need
    (``entry.model_kwargs``: TF padding, BN eps, activation) come from the entry; passing a
    different value is an :class:`IncompatibleWeightsError`, except ``num_classes`` with
    ``backbone_only=True`` (a new classifier on the pretrained backbone). With a file path the
    settings recorded for its source are used the same way (TF graphs: read from the graph).
    Google's TF graphs have 1001 classes (class 0 = background): pass ``num_classes=1001``, or
    ``drop_background=True`` for the 1000 ImageNet classes.
    """
    if weights is None:
        if backbone_only or drop_background:
            raise ValueError("backbone_only=True / drop_background=True need weights")
        return MobileNetV1(**kwargs)
    drop = drop_background
    if isinstance(weights, WeightEntry) or (isinstance(weights, str) and weights in ENTRIES):
        entry = get_entry(weights)
        required = dict(alpha=entry.alpha, num_classes=entry.num_classes - int(drop),
                        **entry.model_kwargs)
        what = f"weights {entry.name!r}"
    else:
        state_dict, model_kwargs, what = resolve_weights(weights, progress,
                                                         drop_background=drop)
        required = dict(model_kwargs)
        weights, drop = state_dict, False  # converted (and the background dropped) once
    if backbone_only:
        required.pop("num_classes", None)
    for key, value in required.items():
        if key in kwargs and kwargs[key] != value:
            raise IncompatibleWeightsError(
                f"{what} need {key}={value!r}, but {key}={kwargs[key]!r} was given; leave it "
                f"out" + (" (or pass backbone_only=True for a new classifier)"
                          if key == "num_classes" else ""))
    model = MobileNetV1(**{**kwargs, **required})
    load_weights(model, weights, backbone_only=backbone_only, progress=progress,
                 drop_background=drop)
    return model
