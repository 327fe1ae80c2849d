"""Weights in this package's layout, with what they need from a model, and applying them.

:class:`LoadedWeights` is what loading any weights spec gives (see
:func:`mnet_backbone.weights.load.load`): the state dict, the model settings the weights force,
their source and a description for messages. A registered entry's tensors are downloaded when
first used, so its settings are checked against a caller's arguments before anything is
downloaded. :meth:`LoadedWeights.apply` checks that they fit a model
(:func:`mnet_backbone.state_dicts.check_state_dict`, worded for weights), switches the model to
their padding and BN eps (:func:`~mnet_backbone.weights.settings.apply_model_kwargs`) and
loads them;
:meth:`LoadedWeights.load_into` checks and loads into a model built with their settings.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, Mapping, Optional, Tuple

from torch import Tensor, nn

from ..state_dicts import Misfit, check_state_dict
from .hub import IncompatibleWeightsError
from .layout import BACKGROUND_CLASSES
from .settings import apply_model_kwargs

__all__ = ["LoadedWeights", "check_fit"]


@dataclasses.dataclass(frozen=True)
class LoadedWeights:
    """Weights converted to this package's keys; :attr:`state_dict` is read (a registered entry:
    downloaded) on first use."""

    read: Callable[[], Dict[str, Tensor]] = dataclasses.field(repr=False, compare=False)
    model_kwargs: Dict  # the core MobileNetV1 settings they need (tf_padding, bn_eps, ...)
    source: str         # one of mnet_backbone.weights.convert.SOURCES
    description: str    # "weights 'keras_1.0_224'", "keras weights from w.h5", ...
    # What a registered entry fixes besides model_kwargs; None: the tensors' shapes decide.
    alpha: Optional[float] = None
    num_classes: Optional[int] = None

    @classmethod
    def of(cls, state_dict: Dict[str, Tensor], model_kwargs: Mapping, source: str,
           description: str) -> "LoadedWeights":
        """Weights whose tensors are at hand."""
        return cls(lambda: state_dict, dict(model_kwargs), source, description)

    @functools.cached_property
    def state_dict(self) -> Dict[str, Tensor]:
        return self.read()

    def without_background(self) -> "LoadedWeights":
        """A 1000-class ImageNet classifier from a TF-slim 1001-class one (output 0,
        "background", removed: output ``i`` becomes ImageNet class ``i - 1``); an error for any
        other head."""
        weight = self.state_dict.get("fc.weight")
        if weight is None or weight.shape[0] != BACKGROUND_CLASSES:
            found = ("no classifier" if weight is None
                     else f"a {weight.shape[0]}-class classifier")
            raise IncompatibleWeightsError(
                f"drop_background=True needs a {BACKGROUND_CLASSES}-class head whose class 0 is "
                f"background (TF-slim / Google's TF releases); {self.description} have {found}")
        state_dict = dict(self.state_dict)
        state_dict["fc.weight"] = weight[1:].clone()
        if "fc.bias" in state_dict:
            state_dict["fc.bias"] = state_dict["fc.bias"][1:].clone()
        return dataclasses.replace(
            self, read=lambda: state_dict,
            num_classes=None if self.num_classes is None else self.num_classes - 1,
            description=f"{self.description} (background class dropped)")

    def without_classifier(self) -> "LoadedWeights":
        """The backbone's weights alone (``fc.*`` left out)."""
        backbone = {k: v for k, v in self.state_dict.items() if not k.startswith("fc.")}
        return dataclasses.replace(self, read=lambda: backbone, num_classes=None)

    def apply(self, model: nn.Module, backbone_only: bool = False, strict: bool = True,
              drop_background: bool = False):
        """Check that the weights fit ``model`` (an :class:`IncompatibleWeightsError` names the
        first mismatched layer, both shapes and the likely cause), switch it to their settings
        (with a warning) and load them; returns ``model.load_state_dict``'s result.

        ``backbone_only`` leaves the classifier out (detection, or a new ``num_classes``);
        ``drop_background`` loads a TF-slim 1001-class head as the 1000 ImageNet classes
        (:meth:`without_background`).
        """
        weights, state_dict = _fitting(self, model, backbone_only, strict, drop_background)
        apply_model_kwargs(model, weights.model_kwargs, weights.description, stacklevel=4)
        return model.load_state_dict(state_dict, strict=strict)

    def load_into(self, model: nn.Module, backbone_only: bool = False,
                  drop_background: bool = False):
        """:meth:`apply` for a model built with these weights' settings
        (:func:`mnet_backbone.weights.build_model`): checked and loaded, nothing to switch."""
        state_dict = _fitting(self, model, backbone_only, True, drop_background)[1]
        return model.load_state_dict(state_dict)


def _fitting(weights: LoadedWeights, model: nn.Module, backbone_only: bool, strict: bool,
             drop_background: bool) -> Tuple[LoadedWeights, Dict[str, Tensor]]:
    """The weights as they meet ``model`` (background dropped, the model's own classifier for
    ``backbone_only``) and their state dict, checked to fit it."""
    if drop_background:
        weights = weights.without_background()
    state_dict = weights.state_dict
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        if strict:  # the model's own classifier stays
            state_dict.update({k: v for k, v in model.state_dict().items()
                               if k.startswith("fc.")})
    check_fit(model, state_dict, weights.description, strict)
    return weights, state_dict


def _alpha_hint(state_dict: Mapping[str, Tensor]) -> str:
    stem = state_dict.get("stages.0.0.conv.weight")
    if stem is None:
        return ""
    return f" (the weights' stem has {stem.shape[0]} channels: alpha={stem.shape[0] / 32:g})"


def _misfit_error(model: nn.Module, state_dict: Mapping[str, Tensor], what: str,
                 misfit: Misfit) -> IncompatibleWeightsError:
    """The weights' wording of a misfit: the first mismatched layer with both shapes (else the
    first missing, else the first unexpected key) and what to change."""
    if misfit.shapes:
        key, theirs, own = misfit.shapes[0]
        hint = (" - another num_classes: build the model with num_classes="
                f"{theirs[0]}, or pass backbone_only=True for a new classifier"
                + (" (a TF-slim head, class 0 = background: drop_background=True gives the "
                   f"{theirs[0] - 1} ImageNet classes)" if theirs[0] == BACKGROUND_CLASSES
                   else "")
                if key.startswith("fc.") else
                f" - another width multiplier{_alpha_hint(state_dict)}; the model has "
                f"alpha={getattr(model, 'alpha', '?')}")
        return IncompatibleWeightsError(f"{what} do not fit the model: first mismatch at {key}: "
                                        f"weights {theirs}, model {own}{hint}")
    if misfit.missing:
        first = misfit.missing[0]
        hint = (" - the weights have no classifier: pass backbone_only=True"
                if first.startswith("fc.") else "")
        return IncompatibleWeightsError(f"{what} lack {len(misfit.missing)} of the model's "
                                        f"entries, the first is {first}{hint}")
    first = misfit.unexpected[0]
    hint = (" - the model has no classifier (num_classes=0): pass backbone_only=True"
            if first.startswith("fc.") else
            " - another variant (shallow/Conv MobileNet) or another network")
    return IncompatibleWeightsError(f"{what} have {len(misfit.unexpected)} entries the model "
                                    f"does not, the first is {first}{hint}")


def check_fit(model: nn.Module, state_dict: Mapping[str, Tensor], what: str,
              strict: bool = True) -> None:
    """:func:`~mnet_backbone.state_dicts.check_state_dict` in the weights' wording
    (the first misfit named); ``strict=False`` checks the shapes of the keys both have."""
    check_state_dict(model, state_dict, what, strict=strict,
                     explain=lambda misfit: _misfit_error(model, state_dict, what, misfit))
