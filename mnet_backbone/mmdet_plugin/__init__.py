"""MMDetection 3.x face of mnet-backbone: registry classes and the fixes mmengine/mmdet need.

Imported by ``import mnet_backbone`` when mmdet is installed, so a config only needs
``custom_imports=dict(imports=['mnet_backbone'], allow_failed_imports=False)``.
"""
from .backbone import MobileNetV1
from .checkpoint import allow_mmengine_checkpoints, restore_mmengine_checkpoints
from .heads import SSDHeadPatched
from .optim import CPUAmpOptimWrapper
from .pretrained import load_from_mnet  # noqa: F401  (registers the mnet:// scheme)
# Registered for the configs: CheckedCocoDataset, CheckedLoadImageFromFile, CheckedCocoMetric
# (mmdet's registries), NonFiniteGuardHook, SafeCheckpointHook, CheckedRunner (mmengine's).
from . import data_checks, guards, runner  # noqa: F401
from .widths import patch_detectors, unpatch_detectors

# mmengine 0.10.x reads local checkpoints with the package's safe reader (undo:
# restore_mmengine_checkpoints()).
allow_mmengine_checkpoints()
# Neck/head widths follow the MobileNetV1 backbone's alpha and out_indices (mmdet 3.3.x; see
# mnet_backbone.mmdet_plugin.widths, undo with unpatch_detectors()).
patch_detectors()

__all__ = ["MobileNetV1", "SSDHeadPatched", "CPUAmpOptimWrapper", "allow_mmengine_checkpoints",
           "restore_mmengine_checkpoints", "patch_detectors", "unpatch_detectors"]
