# MobileNetV1-0.25 at 224 px (the paper's Table 6); the head's width follows the backbone.
_base_ = './mnet_cls_imagenet.py'
model = dict(backbone=dict(alpha=0.25))
