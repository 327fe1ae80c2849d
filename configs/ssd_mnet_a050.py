# SSD300 with MobileNetV1-0.5: only alpha changes. The neck and head widths follow the backbone
# (mnet_backbone.model.detector_widths): backbone maps 256, 512; extra layers 512, 256, 256, 128
# at alpha 1 -> 256, 128, 128, 64, as TF's ssd_mobilenet_v1 scales them with depth_multiplier.
_base_ = './ssd_mnet.py'
model = dict(backbone=dict(alpha=0.5))
