"""The one place that turns the model settings weights need into a model's arguments, for every
face (a model that already exists is switched by
:func:`mnet_backbone.weights.loaded.apply_model_kwargs`).

* :func:`required_kwargs`: the core ``MobileNetV1`` arguments weights fix (an entry, or loaded
  weights).
* :func:`merge_kwargs`: those merged into a caller's arguments (missing ones filled in, a differing
  one an error whose type and wording the caller chooses, ``bn_eps`` passed on to a
  ``norm_layer``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Sequence

from .hub import IncompatibleWeightsError

__all__ = ["Mismatch", "incompatible", "required_kwargs", "fill_kwargs", "merge_kwargs"]

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
