"""The one place that applies the model settings weights need, for every face.

* :func:`required_kwargs`: the core ``MobileNetV1`` arguments an entry fixes.
* :func:`merge_kwargs`: those merged into a caller's arguments (missing ones filled in, a differing
  one an error whose type and wording the caller chooses, ``bn_eps`` passed on to a
  ``norm_layer``).
* :func:`apply_model_kwargs` / :func:`check_fit`: switch / check a model that already exists.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, Mapping

from torch import Tensor, nn

from ..model import ACTIVATIONS
from .convert import BACKGROUND_CLASSES
from .hub import IncompatibleWeightsError

__all__ = ["Mismatch", "incompatible", "required_kwargs", "fill_kwargs", "merge_kwargs",
           "apply_model_kwargs", "check_fit"]

# ``mismatch(what, key, wanted, given)``: the exception for an argument that differs from the one
# the weights (described by ``what``) need. Faces pass their own (torchvision: its ValueError).
Mismatch = Callable[[str, str, Any, Any], Exception]


def incompatible(what: str, key: str, wanted: Any, given: Any) -> IncompatibleWeightsError:
    """The core's wording (:func:`mnet_backbone.weights.mobilenet_v1`)."""
    return IncompatibleWeightsError(
        f"{what} need {key}={wanted!r}, but {key}={given!r} was given; leave it out"
        + (" (or pass backbone_only=True for a new classifier)" if key == "num_classes" else ""))


def required_kwargs(entry: Any, backbone_only: bool = False,
                    drop_background: bool = False) -> Dict[str, Any]:
    """``alpha``, ``num_classes`` (left out with ``backbone_only``; one fewer with
    ``drop_background``) and the entry's ``model_kwargs``, in that order."""
    required = dict(alpha=entry.alpha, num_classes=entry.num_classes - int(drop_background),
                    **dict(getattr(entry, "model_kwargs", None) or {}))
    if backbone_only:
        del required["num_classes"]
    return required


def fill_kwargs(kwargs: Mapping[str, Any], required: Mapping[str, Any],
                what: str = "these weights", mismatch: Mismatch = incompatible) -> Dict[str, Any]:
    """``kwargs`` with the ``required`` ones filled in; a given one that differs raises
    ``mismatch(what, key, wanted, given)`` (checked in ``required``'s order)."""
    out = dict(kwargs)
    for key, value in required.items():
        if key in out and out[key] != value:
            raise mismatch(what, key, value, out[key])
        out[key] = value
    return out


def merge_kwargs(kwargs: Mapping[str, Any], required: Mapping[str, Any],
                 what: str = "these weights", mismatch: Mismatch = incompatible) -> Dict[str, Any]:
    """:func:`fill_kwargs`, then a given ``norm_layer`` gets ``eps=bn_eps``."""
    out = fill_kwargs(kwargs, required, what, mismatch)
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
                      stacklevel=3)
    return changed


def _alpha_hint(state_dict: Mapping[str, Tensor]) -> str:
    stem = state_dict.get("stages.0.0.conv.weight")
    if stem is None:
        return ""
    return f" (the weights' stem has {stem.shape[0]} channels: alpha={stem.shape[0] / 32:g})"


def _dropped_on_load(key: str, own: Mapping[str, Tensor]) -> bool:
    """A ``num_batches_tracked`` that the model's norm keeps none of (FrozenBatchNorm2d, which
    drops it while loading); torch's own load still refuses it for any other module."""
    prefix, _, name = key.rpartition(".")
    return name == "num_batches_tracked" and f"{prefix}.running_mean" in own


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
    unexpected = [k for k in state_dict if k not in own and not _dropped_on_load(k, own)]
    if unexpected:
        hint = (" - the model has no classifier (num_classes=0): pass backbone_only=True"
                if unexpected[0].startswith("fc.") else
                " - another variant (shallow/Conv MobileNet) or another network")
        raise IncompatibleWeightsError(f"{what} have {len(unexpected)} entries the model does "
                                       f"not, the first is {unexpected[0]}{hint}")
