"""ImageNet-pretrained MobileNetV1 weights: registry, download, conversion, loading.

One loader serves every front end (plain PyTorch, the torchvision builders, mmdet's ``init_cfg``
through the ``mnet://<entry>`` checkpoint scheme)::

    from mnet_backbone.weights import mobilenet_v1, load_weights, ENTRIES
    model = mobilenet_v1(weights="keras_1.0_224")            # downloads, converts, caches
    backbone = mobilenet_v1(weights="timm_1.0_224_ra4", num_classes=10, backbone_only=True)
    load_weights(model, "mobilenet_1_0_224_tf.h5")          # a local file of any source
    model = mobilenet_v1(weights="mobilenet_v1_1.0_224.tgz", drop_background=True)  # TF graph
    model = mobilenet_v1(weights="https://host/mobilenet_1_0_224_tf.h5")  # downloaded once

One descent, each step in one module: :func:`~mnet_backbone.weights.spec.locate` says what a
spec is (entry, file, URL, state dict); :func:`~mnet_backbone.weights.load.load` gets it (entries
through the cache of :mod:`~mnet_backbone.weights.hub` when their tensors are first used, files
through the converter of their source in :data:`~mnet_backbone.weights.convert.CONVERTERS`) as
one :class:`~mnet_backbone.weights.loaded.LoadedWeights`;
:mod:`~mnet_backbone.weights.settings` turns the settings they need into a new model's
arguments; ``LoadedWeights.load_into`` checks that they fit that model (``apply``: any model,
switched to their settings) and loads them.

Weights trained in TF/Keras need TF "SAME" padding and BN eps 1e-3: :func:`mobilenet_v1` builds
the model with them, :func:`load_weights` switches an existing model to them (with a warning).
Google's TF-slim graphs have a 1001-class head (class 0 = background); ``drop_background=True``
gives the 1000 ImageNet classes.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from torch import nn

from ..model import MobileNetV1
from . import load as _load
from .entries import ENTRIES, WeightEntry, get_entry, register
from .hub import (CorruptWeightsError, HashMismatchError, IncompatibleWeightsError,
                  UnknownEntryError, WeightsDownloadError, WeightsError, cache_dir)
from .load import convert_to_file, load_state_dict
from .loaded import LoadedWeights
from .settings import Mismatch, apply_model_kwargs, incompatible, merge_kwargs, required_kwargs
from .spec import Located, WeightsLike, locate
from .tf_graph import MissingGraphError, imagenet_graph_path

__all__ = ["WeightEntry", "ENTRIES", "get_entry", "register", "locate", "Located",
           "load_state_dict", "load_weights", "build_model", "mobilenet_v1",
           "apply_model_kwargs", "convert_to_file", "imagenet_graph_path", "cache_dir",
           "WeightsError", "UnknownEntryError", "WeightsDownloadError", "HashMismatchError",
           "CorruptWeightsError", "IncompatibleWeightsError", "MissingGraphError"]


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
    located = locate(weights)
    loaded = _load.load(located, progress, check_hash)
    return loaded.apply(model, backbone_only, strict, drop_background)


def build_model(weights: Optional[WeightsLike], kwargs: Mapping[str, Any], *,
                progress: bool = True, backbone_only: bool = False,
                drop_background: bool = False, mismatch: Mismatch = incompatible,
                check_first: Sequence[str] = ()) -> MobileNetV1:
    """The one builder behind every face's ``mobilenet_v1``: :func:`mobilenet_v1` with the
    core's arguments as the dict ``kwargs``; ``mismatch`` chooses the error for an argument the
    weights fix otherwise, ``check_first`` the arguments checked before the others (see
    :func:`~mnet_backbone.weights.settings.merge_kwargs`).

    Locate, load, build, load into: an entry's settings are known before anything is downloaded
    (a mismatch fails first, its tensors are downloaded after the build); a file, URL or state
    dict is read first, for the settings it holds.
    """
    if weights is None:
        if backbone_only or drop_background:
            raise ValueError("backbone_only=True / drop_background=True need weights")
        return MobileNetV1(**kwargs)
    located = locate(weights)
    loaded: LoadedWeights = _load.load(located, progress)
    required = required_kwargs(loaded, backbone_only, drop_background)
    model = MobileNetV1(**merge_kwargs(kwargs, required, loaded.description, mismatch,
                                       check_first))
    loaded.load_into(model, backbone_only, drop_background)
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
