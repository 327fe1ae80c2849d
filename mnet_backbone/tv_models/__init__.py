"""torchvision face of mnet-backbone: MobileNetV1 as a native torchvision model.

Imported by ``import mnet_backbone`` when torchvision is installed. It then

* registers ``mobilenet_v1`` and the detection builders ``ssd300_mobilenet_v1``,
  ``ssdlite320_mobilenet_v1``, ``fasterrcnn_mobilenet_v1_fpn`` and
  ``fasterrcnn_mobilenet_v1_320_fpn`` with torchvision's model registry, so
  ``torchvision.models.get_model``, ``list_models``, ``get_model_builder`` and
  ``get_model_weights`` know them;
* sets them, with their weights enums, on ``torchvision.models`` and
  ``torchvision.models.detection`` (so
  ``torchvision.models.get_weight("MobileNet_V1_Weights.DEFAULT")`` works too).

Names that torchvision or another package already uses are left alone (a ``RuntimeWarning`` says
so). ``list_models(module=torchvision.models)`` filters by the builder's defining module, so it
does not list these; ``list_models(module=mnet_backbone.tv_models)`` lists exactly them.
"""
import torchvision.models
import torchvision.models.detection

from . import _registry
from ._registry import ModelRegistrationError
from .classification import MobileNet_V1_Weights, UnknownWeightsError, mobilenet_v1
from .detection import (BUILDERS as _DETECTION_BUILDERS, WEIGHTS_ENUMS as _DETECTION_ENUMS,
                        FasterRCNN_MobileNet_V1_320_FPN_Weights,
                        FasterRCNN_MobileNet_V1_FPN_Weights, MobileNetV1Features, MobileNetV1FPN,
                        MobileNetV1LastStage, PointwiseSSDHead, SSD300_MobileNet_V1_Weights,
                        SSDLite320_MobileNet_V1_Weights, fasterrcnn_mobilenet_v1_320_fpn,
                        fasterrcnn_mobilenet_v1_fpn, mobilenet_v1_backbone, ssd300_mobilenet_v1,
                        ssdlite320_mobilenet_v1)

__all__ = [
    "mobilenet_v1", "MobileNet_V1_Weights",
    "ssd300_mobilenet_v1", "ssdlite320_mobilenet_v1", "fasterrcnn_mobilenet_v1_fpn",
    "fasterrcnn_mobilenet_v1_320_fpn", "SSD300_MobileNet_V1_Weights",
    "SSDLite320_MobileNet_V1_Weights", "FasterRCNN_MobileNet_V1_FPN_Weights",
    "FasterRCNN_MobileNet_V1_320_FPN_Weights", "mobilenet_v1_backbone",
    "MobileNetV1Features", "MobileNetV1FPN", "MobileNetV1LastStage", "PointwiseSSDHead",
    "ModelRegistrationError", "UnknownWeightsError", "BUILDERS", "install", "uninstall",
]

BUILDERS = (mobilenet_v1,) + _DETECTION_BUILDERS


def _names():
    """(torchvision module, attribute, object) for every name this face adds to torchvision."""
    names = [(torchvision.models, "mobilenet_v1", mobilenet_v1),
             (torchvision.models, "MobileNet_V1_Weights", MobileNet_V1_Weights)]
    names += [(torchvision.models.detection, fn.__name__, fn) for fn in _DETECTION_BUILDERS]
    names += [(torchvision.models.detection, enum.__name__, enum) for enum in _DETECTION_ENUMS]
    return names


def install():
    """Register the builders with torchvision (idempotent; conflicts are skipped with a warning).

    Returns the refusal messages (empty when everything was registered)."""
    return _registry.install(BUILDERS, _names())


def uninstall():
    """Undo :func:`install`: remove this package's builders and names from torchvision only."""
    for fn in BUILDERS:
        _registry.unregister(fn.__name__, fn)
    for module, name, obj in _names():
        if _registry._same_origin(getattr(module, name, None), obj):
            delattr(module, name)


install()
