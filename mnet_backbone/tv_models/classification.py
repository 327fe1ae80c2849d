"""``mobilenet_v1`` for torchvision: the weights enum and the classifier builder.

One enum member per checkpoint of :data:`mnet_backbone.weights.ENTRIES` (``KERAS_1_0_224`` for
entry ``keras_1.0_224``), plus ``DEFAULT``. Each member is a torchvision ``Weights`` whose meta
follows torchvision's schema; downloading, verifying and converting is left to
:func:`mnet_backbone.weights.load_state_dict`.

The enum is built when this module is imported: entries registered later with
:func:`mnet_backbone.weights.register` are not members (``make_weights_enum(ENTRIES)`` builds an
enum that has them).

No ``from __future__ import annotations`` here: ``torchvision.models.get_model_weights`` reads
the enum from the builder's *evaluated* ``weights`` annotation.
"""
import functools
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .. import weights as _weights
from ..weights import settings as _settings
from ..cost import count
from ..model import MIN_INPUT_SIZE, MobileNetV1
from . import _compat

_TV = _compat.load()

__all__ = ["MobileNet_V1_Weights", "mobilenet_v1", "make_weights_enum", "entry_model_kwargs",
           "UnknownWeightsError"]

# Core arguments that the cost counter understands too (the rest do not change the count).
_COST_KWARGS = ("separable", "shallow")


class UnknownWeightsError(KeyError, ValueError):
    """A weights name that the enum does not have (a ``KeyError``, as in torchvision)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def member_name(entry_name: str) -> str:
    """Enum member name of a weights entry: ``keras_1.0_224`` -> ``KERAS_1_0_224``."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", entry_name).strip("_").upper()
    if not name or not name[0].isalpha():
        name = "W_" + name
    return name


def entry_model_kwargs(entry: Any) -> Dict[str, Any]:
    """Core ``MobileNetV1`` arguments a checkpoint needs (width and its ``model_kwargs``)."""
    return _settings.required_kwargs(entry, backbone_only=True)


def torchvision_mismatch(weights: Any, what: str, param: str, expected: Any,
                         given: Any) -> ValueError:
    """torchvision's error for an argument the weights fix (``what`` is the core's description,
    unused: torchvision names the enum member)."""
    hint = ""
    if param == "num_classes":
        hint = (" Build the model with the weights' classes and replace `model.fc` "
                "(or use the weights as a backbone) to train on other classes.")
    source = f" by {weights!r}" if weights is not None else ""
    return ValueError(f"The parameter '{param}' expected value {expected!r} but got "
                      f"{given!r} instead (fixed{source}).{hint}")


def _categories(num_classes: int) -> List[str]:
    imagenet = list(_TV._IMAGENET_CATEGORIES)
    if num_classes == len(imagenet):
        return imagenet
    if num_classes == len(imagenet) + 1:  # TF-slim checkpoints: class 0 is "background"
        return ["background"] + imagenet
    raise ValueError(f"no category names for a {num_classes}-class ImageNet checkpoint")


def _num_params(entry: Any) -> int:
    kwargs = entry_model_kwargs(entry)
    return _count_params(entry.num_classes, tuple(sorted(kwargs.items(), key=lambda kv: kv[0])))


@functools.lru_cache(maxsize=None)
def _count_params(num_classes: int, kwargs: Tuple[Tuple[str, Any], ...]) -> int:
    # The real module, built on the meta device: no memory, no initialisation cost.
    with torch.device("meta"):
        model = MobileNetV1(num_classes=num_classes, **dict(kwargs))
    return sum(p.numel() for p in model.parameters())


def _gflops(entry: Any) -> float:
    """torchvision's ``_ops``: multiply-adds (its counter counts one op per MAC) in billions."""
    extra = {k: v for k, v in entry_model_kwargs(entry).items() if k in _COST_KWARGS}
    cost = count(entry.alpha, entry.resolution, num_classes=entry.num_classes, **extra)
    return round(cost.mult_adds / 1e9, 3)


def _transforms(entry: Any) -> functools.partial:
    kwargs = dict(crop_size=entry.resolution, resize_size=int(entry.resolution / entry.crop_pct),
                  mean=tuple(entry.mean), std=tuple(entry.std))
    interpolation = getattr(entry, "interpolation", None)
    if interpolation:
        from torchvision.transforms import InterpolationMode
        kwargs["interpolation"] = InterpolationMode(interpolation)
    return functools.partial(_TV.ImageClassification, **kwargs)


def weights_meta(entry: Any) -> Dict[str, Any]:
    """torchvision ``Weights.meta`` of one entry (only keys torchvision's schema permits)."""
    # Only the accuracies the source publishes; a missing one is left out, never guessed.
    metrics = {key: value for key, value in (("acc@1", entry.top1), ("acc@5", entry.top5))
               if value is not None}
    notes = []
    if entry.top1 is None:
        notes.append("The source publishes no ImageNet accuracy for these weights, so "
                     "`_metrics` holds no `acc@1`/`acc@5`.")
    elif entry.top5 is None:
        notes.append("The source publishes no top-5 accuracy, so `acc@5` is left out.")
    file_size = getattr(entry, "file_size_mb", None)
    if file_size is None:
        notes.append("The checkpoint's file size is not recorded (`_file_size` is None).")
    docs = (f"{(entry.docs or '').strip()} Published by {entry.source} ({entry.url}) under "
            f"{entry.license}; accuracies are the ones the source reports for ImageNet-1K "
            f"validation at {entry.resolution}px. Loaded through "
            f"mnet_backbone.weights.load_state_dict({entry.name!r}).")
    return {
        "categories": _categories(entry.num_classes),
        "num_params": _num_params(entry),
        "min_size": (MIN_INPUT_SIZE, MIN_INPUT_SIZE),
        "recipe": entry.recipe,
        "license": entry.license,
        "_metrics": {"ImageNet-1K": metrics},
        "_ops": _gflops(entry),
        "_file_size": file_size,
        "_docs": " ".join([docs.strip()] + notes),
    }


def _default_entry(entries: Sequence[Any]) -> Optional[Any]:
    """The best full-size model: highest top-1 at alpha 1.0 and 224px, else highest overall."""
    rated = [e for e in entries if e.top1 is not None]
    if not rated:
        return entries[0] if entries else None
    full = [e for e in rated if e.alpha == 1.0 and e.resolution == 224]
    return max(full or rated, key=lambda e: e.top1)


class _MobileNetV1WeightsBase(_TV.WeightsEnum):
    """torchvision ``WeightsEnum`` whose members know their :class:`WeightEntry`."""

    @property
    def entry(self) -> Any:
        """The :class:`mnet_backbone.weights.WeightEntry` behind this member."""
        return type(self)._entries[self.name]

    @classmethod
    def from_entry(cls, entry: Any) -> "_MobileNetV1WeightsBase":
        """The member of a weights entry (or entry name)."""
        name = entry if isinstance(entry, str) else entry.name
        for member in cls:
            if member.entry.name == name:
                return member
        raise UnknownWeightsError(f"no {cls.__name__} member for weights entry {name!r}; "
                                  f"entries: {[m.entry.name for m in cls]}")

    @classmethod
    def verify(cls, obj: Any) -> Any:
        if type(obj) is str and obj.replace(cls.__name__ + ".", "") not in cls.__members__:
            raise UnknownWeightsError(
                f"{cls.__name__} has no weights {obj!r}; available: {list(cls.__members__)}")
        return super().verify(obj)

    def get_state_dict(self, progress: bool = True, check_hash: bool = True,
                       **kwargs: Any) -> Dict[str, torch.Tensor]:
        """Core-format state dict: downloaded, verified, converted and cached by
        :func:`mnet_backbone.weights.load_state_dict`."""
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        return _weights.load_state_dict(self.entry, progress=progress, check_hash=check_hash)


def make_weights_enum(entries: Union[Mapping[str, Any], Iterable[Any]],
                      name: str = "MobileNet_V1_Weights", module: Optional[str] = None) -> type:
    """A ``WeightsEnum`` with one member per entry (a list, or a dict of them by name) and
    ``DEFAULT``: the highest published top-1 at alpha 1.0 and 224px."""
    entries = list(entries.values() if isinstance(entries, Mapping) else entries)
    members: List[Tuple[str, Any]] = []
    by_name: Dict[str, Any] = {}
    for entry in entries:
        key = member_name(entry.name)
        if key in by_name:
            raise ValueError(f"weights entries {by_name[key].name!r} and {entry.name!r} both map "
                             f"to enum member {key}")
        by_name[key] = entry
        members.append((key, _TV.Weights(url=entry.url, transforms=_transforms(entry),
                                         meta=weights_meta(entry))))
    default = _default_entry(entries)
    if default is not None:
        members.append(("DEFAULT", dict(members)[member_name(default.name)]))
    enum = _MobileNetV1WeightsBase(name, members, module=module or __name__, qualname=name)
    enum._entries = by_name
    return enum


MobileNet_V1_Weights = make_weights_enum(_weights.ENTRIES)
MobileNet_V1_Weights.__doc__ = (
    "ImageNet-1K weights for :func:`mobilenet_v1`, one member per "
    ":data:`mnet_backbone.weights.ENTRIES` entry, plus ``DEFAULT``.")


def mobilenet_v1(*, weights: Optional[MobileNet_V1_Weights] = None, progress: bool = True,
                 **kwargs: Any) -> MobileNetV1:
    """MobileNetV1 from `MobileNets <https://arxiv.org/abs/1704.04861>`_ (Howard et al. 2017).

    Args:
        weights (MobileNet_V1_Weights, optional): pretrained weights (see
            :class:`MobileNet_V1_Weights`); they fix ``num_classes``, ``alpha`` and the arguments
            their checkpoint needs (e.g. ``tf_padding``), which may be left out or must agree.
            Default: no pretrained weights.
        progress (bool): show a download progress bar.
        **kwargs: arguments of :class:`mnet_backbone.MobileNetV1` (``num_classes``, ``alpha``,
            ``dropout``, ``norm_layer``, ...).

    Example::

        >>> model = torchvision.models.get_model("mobilenet_v1", weights=None, alpha=0.5)
    """
    weights = MobileNet_V1_Weights.verify(weights)
    if weights is None:
        return _weights.build_model(None, kwargs)
    # torchvision's convention: num_classes comes from the weights' categories and is checked
    # before what else they fix (the one check: the weights' settings, in build_model)
    kwargs.setdefault("num_classes", len(weights.meta["categories"]))
    return _weights.build_model(weights.entry, kwargs, progress=progress,
                                mismatch=functools.partial(torchvision_mismatch, weights),
                                check_first=("num_classes",))
