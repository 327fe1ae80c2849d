"""MMDetection 3.x face of mnet-backbone: mmdet's names for the model and the fixes mmdet needs.

Imported by ``import mnet_backbone`` when mmdet is installed, so a config only needs
``custom_imports=dict(imports=['mnet_backbone'], allow_failed_imports=False)``. In mmdet's
registries: ``MobileNetV1`` and ``SSDHeadPatched`` (MODELS), and the checked COCO data set,
image loader and metric (:mod:`.data_checks`). What mmdet shares with mmpretrain (the
``mnet://`` scheme, the checkpoint fix, the Runner and hooks) is :mod:`mnet_backbone.openmmlab`.
"""
from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS

from ..openmmlab import (CPUAmpOptimWrapper, allow_mmengine_checkpoints, register,
                         restore_mmengine_checkpoints)
from .data_checks import CheckedCocoDataset, CheckedCocoMetric, CheckedLoadImageFromFile
from .backbone import MobileNetV1
from .heads import SSDHeadPatched
from .widths import patch_detectors, unpatch_detectors

__all__ = ["MobileNetV1", "SSDHeadPatched", "CPUAmpOptimWrapper", "allow_mmengine_checkpoints",
           "restore_mmengine_checkpoints", "patch_detectors", "unpatch_detectors"]

REGISTERED = ((MODELS, MobileNetV1), (MODELS, SSDHeadPatched), (DATASETS, CheckedCocoDataset),
              (TRANSFORMS, CheckedLoadImageFromFile), (METRICS, CheckedCocoMetric))
register(REGISTERED, 'mmdet', tested='3.3.0')
# Neck/head widths follow the MobileNetV1 backbone's alpha and out_indices (mmdet 3.3.x; see
# mnet_backbone.mmdet_plugin.widths, undo with unpatch_detectors()).
patch_detectors()
