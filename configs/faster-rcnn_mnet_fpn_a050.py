# Faster R-CNN + FPN on MobileNetV1-0.5: only alpha changes (the FPN's in_channels follow the
# backbone: 64, 128, 256, 512; its 256 output channels do not depend on alpha).
_base_ = './faster-rcnn_mnet_fpn.py'
model = dict(backbone=dict(alpha=0.5))
