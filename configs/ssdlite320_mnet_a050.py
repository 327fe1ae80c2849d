# SSDLite320 with MobileNetV1-0.5.
_base_ = './ssdlite320_mnet.py'
model = dict(
    backbone=dict(alpha=0.5),
    neck=dict(in_channels=(256, 512), out_channels=(256, 512, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(256, 512, 512, 256, 256, 128)))
