"""The one place that turns the model settings weights need into a model, for every face: into a
new model's arguments, or onto a model that already exists.

* :func:`required_kwargs`: the core ``MobileNetV1`` arguments weights fix (an entry, or loaded
  weights).
* :func:`merge_kwargs`: those merged into a caller's arguments (missing ones filled in, a differing
  one an error whose type and wording the caller chooses, ``bn_eps`` passed on to a
  ``norm_layer``).
* :func:`apply_model_kwargs`: an existing model switched to the padding and BN eps they need.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, Mapping, Sequence

from torch import nn

from ..model import ACTIVATIONS
from .hub import IncompatibleWeightsError

__all__ = ["Mismatch", "incompatible", "required_kwargs", "fill_kwargs", "merge_kwargs",
           "apply_model_kwargs"]

# ``mismatch(what, key, wanted, given)``: the exception for an argument that differs from the one
# the weights (described by ``what``) need. Faces pass their own (torchvision: its ValueError).
Mismatch = Callable[[str, str, Any, Any], Exception]


def incompatible(what: str, key: str, wanted: Any, given: Any) -> IncompatibleWeightsError:
    """The core's wording (:func:`mnet_backbone.weights.mobilenet_v1`)."""
    return IncompatibleWeightsError(
        f"{what} need {key}={wanted!r}, but {key}={given!r} was given; leave it out"
        + (" (or pass backbone_only=True for a new classifier)" if key == "num_classes" else ""))


def required_kwargs(weights: Any, backbone_only: bool = False,
                    drop_background: bool = False) -> Dict[str, Any]:
    """The core arguments ``weights`` fix (a :class:`~mnet_backbone.weights.WeightEntry` or
    :class:`~mnet_backbone.weights.loaded.LoadedWeights`), in the order they are checked:
    ``alpha`` and ``num_classes`` where the weights say (left out with ``backbone_only``; one
    fewer with ``drop_background``), then their ``model_kwargs``."""
    required: Dict[str, Any] = {}
    if weights.alpha is not None:
        required["alpha"] = weights.alpha
    if weights.num_classes is not None:
        required["num_classes"] = weights.num_classes - int(drop_background)
    required.update(weights.model_kwargs or {})
    if backbone_only:
        required.pop("num_classes", None)
    return required


def fill_kwargs(kwargs: Mapping[str, Any], required: Mapping[str, Any],
                what: str = "these weights", mismatch: Mismatch = incompatible,
                check_first: Sequence[str] = ()) -> Dict[str, Any]:
    """``kwargs`` with the ``required`` ones filled in; a given one that differs raises
    ``mismatch(what, key, wanted, given)``, checked in ``required``'s order after the keys of
    ``check_first`` (a face's convention: torchvision checks ``num_classes`` first)."""
    out = dict(kwargs)
    order = [k for k in check_first if k in required] + [k for k in required
                                                          if k not in check_first]
    for key in order:
        value = required[key]
        if key in out and out[key] != value:
            raise mismatch(what, key, value, out[key])
        out[key] = value
    return out


def merge_kwargs(kwargs: Mapping[str, Any], required: Mapping[str, Any],
                 what: str = "these weights", mismatch: Mismatch = incompatible,
                 check_first: Sequence[str] = ()) -> Dict[str, Any]:
    """:func:`fill_kwargs`, then a given ``norm_layer`` gets ``eps=bn_eps``."""
    out = fill_kwargs(kwargs, required, what, mismatch, check_first)
    if out.get("norm_layer") is not None and "bn_eps" in out:
        # The core ignores bn_eps when given a norm_layer: a custom or frozen norm would lose the
        # trained epsilon. (partial of a partial flattens, so applying it twice is harmless.)
        out["norm_layer"] = functools.partial(out["norm_layer"], eps=out["bn_eps"])
    return out


def _conv_units(model: nn.Module):
    """The core's ConvBNAct units (duck-typed, so mmdet's subclass works the same)."""
    return [m for m in model.modules()
            if hasattr(m, "tf_same_padding") and hasattr(m, "conv") and hasattr(m, "stride")]


def apply_model_kwargs(model: nn.Module, model_kwargs: Mapping, what: str = "these weights",
                       warn: bool = True, stacklevel: int = 2) -> list:
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
            same = tf_padding and unit.stride > 1
            unit.tf_same_padding = same
            k = unit.kernel_size
            unit.conv.padding = (0, 0) if same else (k // 2, k // 2)
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
                      stacklevel=stacklevel)
    return changed
