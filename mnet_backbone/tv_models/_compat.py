"""The torchvision internals this face relies on, resolved in one place.

torchvision does not export its model registry (``torchvision.models._api.BUILTIN_MODELS`` and
``register_model``) nor a few helpers used here (ImageNet category names, the classification
preset transform, SSDLite building blocks). They are private and may move in a future release;
:func:`load` imports them all at once and turns a miss into one ``ImportError`` that says what is
missing. ``mnet_backbone/__init__.py`` turns that into a warning, so the core model stays usable.
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from types import SimpleNamespace

# (module, attribute) pairs this face needs from torchvision, private ones included.
REQUIRED = (
    ("torchvision.models._api", "BUILTIN_MODELS"),
    ("torchvision.models._api", "Weights"),
    ("torchvision.models._api", "WeightsEnum"),
    ("torchvision.models._meta", "_IMAGENET_CATEGORIES"),
    ("torchvision.transforms._presets", "ImageClassification"),
    ("torchvision.models.detection.ssd", "SSD"),
    ("torchvision.models.detection.ssd", "SSDHead"),
    ("torchvision.models.detection.ssd", "SSDScoringHead"),
    ("torchvision.models.detection.ssdlite", "SSDLiteHead"),
    ("torchvision.models.detection.ssdlite", "_extra_block"),
    ("torchvision.models.detection.ssdlite", "_normal_init"),
)


def load() -> SimpleNamespace:
    """The torchvision pieces in :data:`REQUIRED`, or an ``ImportError`` naming what is missing."""
    import torchvision

    found = {}
    missing = []
    for module_name, attr in REQUIRED:
        try:
            found[attr] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{module_name}.{attr} ({type(exc).__name__}: {exc})")
    if not missing and not isinstance(found["BUILTIN_MODELS"], MutableMapping):
        missing.append("torchvision.models._api.BUILTIN_MODELS (no longer a dict: "
                       f"{type(found['BUILTIN_MODELS']).__name__})")
    if missing:
        raise ImportError(
            f"mnet_backbone.tv_models cannot register MobileNetV1 with torchvision "
            f"{torchvision.__version__}: these private torchvision names moved or were removed: "
            + "; ".join(missing)
            + ". The core model (mnet_backbone.MobileNetV1) is unaffected; use it directly, or "
              "install a torchvision release this package supports (setup.py extras).")
    return SimpleNamespace(**found)
