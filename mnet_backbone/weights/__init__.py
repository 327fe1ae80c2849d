"""ImageNet-pretrained MobileNetV1 weights: registry, download, conversion, loading.

One loader serves every front end (plain PyTorch, the torchvision builders, mmdet's ``init_cfg``
through the ``mnet://<entry>`` checkpoint scheme)::

    from mnet_backbone.weights import mobilenet_v1, load_weights, ENTRIES
    model = mobilenet_v1(weights="keras_1.0_224")            # downloads, converts, caches
    backbone = mobilenet_v1(weights="timm_1.0_224_ra4", num_classes=10, backbone_only=True)
    load_weights(model, "mobilenet_1_0_224_tf.h5")          # a local file of any source
    model = mobilenet_v1(weights="mobilenet_v1_1.0_224.tgz", drop_background=True)  # TF graph
    model = mobilenet_v1(weights="https://host/mobilenet_1_0_224_tf.h5")  # downloaded once

What a weights spec is (entry, file, URL, state dict) is decided in one place,
:mod:`~mnet_backbone.weights.resolve`; the model settings weights need are applied in one place,
:mod:`~mnet_backbone.weights.settings`.

Weights trained in TF/Keras need TF "SAME" padding and BN eps 1e-3: :func:`mobilenet_v1` builds
the model with them, :func:`load_weights` switches an existing model to them (with a warning).
Google's TF-slim graphs have a 1001-class head (class 0 = background); ``drop_background=True``
gives the 1000 ImageNet classes.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from torch import Tensor, nn

from ..model import MobileNetV1
from .convert import (SOURCES, convert_file, convert_to_file, drop_background, from_keras,
                      from_plain, from_sequential, from_timm, read_keras_h5)
from .entries import ENTRIES, WeightEntry, get_entry, register
from .hub import (CorruptWeightsError, HashMismatchError, IncompatibleWeightsError,
                  UnknownEntryError, WeightsDownloadError, WeightsError, cache_dir,
                  cached_conversion)
from .resolve import Located, WeightsLike, locate, resolve_weights
from .settings import (Mismatch, apply_model_kwargs, check_fit, incompatible, merge_kwargs,
                       required_kwargs)
from .tf_graph import MissingGraphError, from_tf_graph, imagenet_graph_path, read_tf_graph

__all__ = ["WeightEntry", "ENTRIES", "get_entry", "register", "load_state_dict", "load_weights",
           "mobilenet_v1", "build_model", "resolve_weights", "locate", "Located",
           "apply_model_kwargs", "check_fit", "required_kwargs", "merge_kwargs", "convert_file",
           "convert_to_file", "from_keras", "from_timm", "from_sequential", "from_plain",
           "read_keras_h5", "read_tf_graph", "from_tf_graph", "drop_background",
           "imagenet_graph_path", "cache_dir", "SOURCES", "WeightsError", "UnknownEntryError",
           "WeightsDownloadError", "HashMismatchError", "CorruptWeightsError",
           "IncompatibleWeightsError", "MissingGraphError"]


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


def _load(model: nn.Module, state_dict: Mapping[str, Tensor], model_kwargs: Mapping, what: str,
          backbone_only: bool, strict: bool):
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        own = model.state_dict()
        if strict and any(k.startswith("fc.") for k in own):
            state_dict.update({k: v for k, v in own.items() if k.startswith("fc.")})
    check_fit(model, state_dict, what, strict)
    apply_model_kwargs(model, model_kwargs, what)
    return model.load_state_dict(state_dict, strict=strict)


def load_weights(model: nn.Module, weights: WeightsLike, backbone_only: bool = False,
                 strict: bool = True, progress: bool = True, check_hash: bool = True,
                 drop_background: bool = False):
    """Load ``weights`` (an entry, entry name, URL, file of any supported source, or state dict;
    see :func:`locate`).

    The model is switched to the padding and BN eps the weights need (see
    :func:`apply_model_kwargs`). ``backbone_only`` leaves the classifier out (detection, or a new
    ``num_classes``); ``drop_background`` loads a TF-slim 1001-class head as the 1000 ImageNet
    classes. Shapes are checked first: weights for another alpha or num_classes raise
    :class:`IncompatibleWeightsError` naming the first mismatched layer and both shapes.
    Returns ``model.load_state_dict``'s result.
    """
    state_dict, model_kwargs, what = resolve_weights(weights, progress, check_hash,
                                                     drop_background)
    return _load(model, state_dict, model_kwargs, what, backbone_only, strict)


def build_model(weights: Optional[WeightsLike], kwargs: Mapping[str, Any], *,
                progress: bool = True, backbone_only: bool = False,
                drop_background: bool = False, mismatch: Mismatch = incompatible) -> MobileNetV1:
    """The one builder behind every face's ``mobilenet_v1``: :func:`mobilenet_v1` with the
    core's arguments as the dict ``kwargs`` and ``mismatch`` choosing the error for an argument
    the weights fix otherwise (see :func:`~mnet_backbone.weights.settings.merge_kwargs`)."""
    if weights is None:
        if backbone_only or drop_background:
            raise ValueError("backbone_only=True / drop_background=True need weights")
        return MobileNetV1(**kwargs)
    located = locate(weights)
    if located.kind == "entry":
        # Checked before anything is downloaded; the state dict is loaded after the build.
        required = required_kwargs(located.entry, backbone_only, drop_background)
        what, resolved = f"weights {located.entry.name!r}", None
    else:
        resolved = resolve_weights(located, progress, drop_background=drop_background)
        required, what = dict(resolved[1]), resolved[2]
        if backbone_only:
            required.pop("num_classes", None)
    model = MobileNetV1(**merge_kwargs(kwargs, required, what, mismatch))
    if resolved is None:
        load_weights(model, located, backbone_only=backbone_only, progress=progress,
                     drop_background=drop_background)
    else:
        _load(model, resolved[0], resolved[1], what, backbone_only, strict=True)
    return model


def mobilenet_v1(weights: Optional[WeightsLike] = None, progress: bool = True,
                 backbone_only: bool = False, drop_background: bool = False,
                 **kwargs) -> MobileNetV1:
    """A core :class:`~mnet_backbone.model.MobileNetV1`, optionally with pretrained weights.

    With an entry (or its name), ``alpha``, ``num_classes`` and the settings the weights need
    (``entry.model_kwargs``: TF padding, BN eps, activation) come from the entry; passing a
    different value is an :class:`IncompatibleWeightsError`, except ``num_classes`` with
    ``backbone_only=True`` (a new classifier on the pretrained backbone). With a file path or URL
    the settings recorded for its source are used the same way (TF graphs: read from the graph).
    Google's TF graphs have 1001 classes (class 0 = background): pass ``num_classes=1001``, or
    ``drop_background=True`` for the 1000 ImageNet classes. A given ``norm_layer`` gets the
    weights' ``bn_eps``.
    """
    return build_model(weights, kwargs, progress=progress, backbone_only=backbone_only,
                       drop_background=drop_background)
