# Faster R-CNN + FPN on MobileNetV1-1.0 (the paper's second COCO detector), mmdet's 1x schedule.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py', '_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py', '_base_/default_runtime.py'
]
model = dict(
    # RGB to [-1, 1], as every ImageNet weight of mnet_backbone.weights (mean = std = 0.5).
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='MobileNetV1',
        alpha=1.0,
        out_indices=(1, 2, 3, 4),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    # At alpha 1; the build sets them from the backbone's alpha and out_indices.
    neck=dict(in_channels=[128, 256, 512, 1024]))
# The paper: little or no weight decay on the depthwise filters.
optim_wrapper = dict(paramwise_cfg=dict(dwconv_decay_mult=0.))
