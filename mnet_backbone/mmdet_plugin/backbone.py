"""``MobileNetV1`` in mmdet's MODELS registry: the OpenMMLab backbone (registered by this face's
``__init__``), with mmdet's conventions: mmcv layer configs, ``init_cfg``, a tuple of features."""
from ..openmmlab.backbone import MobileNetV1

__all__ = ['MobileNetV1']
