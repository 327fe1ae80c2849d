"""``MobileNetV1`` in mmdet's MODELS registry: the OpenMMLab backbone under mmdet's name."""
from ..openmmlab.backbone import OpenMMLabMobileNetV1


class MobileNetV1(OpenMMLabMobileNetV1):
    __doc__ = OpenMMLabMobileNetV1.__doc__.replace('for OpenMMLab', 'for MMDetection', 1)
