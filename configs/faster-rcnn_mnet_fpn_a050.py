# Faster R-CNN + FPN on MobileNetV1-0.5.
_base_ = './faster-rcnn_mnet_fpn.py'
model = dict(backbone=dict(alpha=0.5), neck=dict(in_channels=[64, 128, 256, 512]))
