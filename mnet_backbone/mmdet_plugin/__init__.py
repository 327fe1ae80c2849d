"""MMDetection 3.x face of mnet-backbone: registry classes and the fixes mmengine/mmdet need.

Imported by ``import mnet_backbone`` when mmdet is installed, so a config only needs
``custom_imports=dict(imports=['mnet_backbone'], allow_failed_imports=False)``.
"""
from .backbone import MobileNetV1
from .checkpoint import allow_mmengine_checkpoints
from .heads import SSDHeadPatched
from .optim import CPUAmpOptimWrapper
from .pretrained import load_from_mnet  # noqa: F401  (registers the mnet:// scheme)
from . import cls  # noqa: F401  (classifier, folder data set, accuracy, RMSpropTF)

allow_mmengine_checkpoints()

__all__ = ["MobileNetV1", "SSDHeadPatched", "CPUAmpOptimWrapper", "allow_mmengine_checkpoints"]
