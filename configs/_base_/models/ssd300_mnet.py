# SSD300 on MobileNetV1, the paper's COCO detector (Table 13): the stride-16 (512*alpha) and
# stride-32 (1024*alpha) features plus four extra layers, 6 maps of 19, 10, 5, 3, 2, 1 cells.
#
# Widths are written at alpha 1. With type='MobileNetV1' the build sets the neck's in_channels,
# its out_channels and the head's in_channels from the backbone's alpha and out_indices, and
# scales the extra layers (512, 256, 256, 128) like the backbone (mnet_backbone.model.
# detector_widths, as TF's ssd_mobilenet_v1), so `model.backbone.alpha=0.5` alone gives
# SSD300-MobileNetV1-0.5 (the same network as torchvision's ssd300_mobilenet_v1(alpha=0.5)).
norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        # RGB to [-1, 1], the input every ImageNet weight of mnet_backbone.weights was trained
        # with (Keras and timm: mean = std = 0.5) and TF's SSD-MobileNet preprocessing, so
        # init_cfg=dict(type='Pretrained', checkpoint='mnet://keras_1.0_224') fits as it is.
        type='DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='MobileNetV1',
        alpha=1.0,
        out_indices=(3, 4),
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6')),
    neck=dict(
        type='SSDNeck',
        in_channels=(512, 1024),
        out_channels=(512, 1024, 512, 256, 256, 128),
        level_strides=(2, 2, 2, 2),
        level_paddings=(1, 1, 1, 1),
        l2_norm_scale=None,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6')),
    bbox_head=dict(
        # mmdet 3.3.0's SSDHead cannot predict (no loss_cls); see mnet_backbone.mmdet_plugin.
        type='SSDHeadPatched',
        in_channels=(512, 1024, 512, 256, 256, 128),
        num_classes=80,
        # 1x1 class/box predictors as TF's SSD-MobileNet, the model of the paper's Table 13.
        predictor_kernel_size=1,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            input_size=300,
            basesize_ratio_range=(0.2, 0.9),
            strides=[16, 32, 64, 100, 150, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2])),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.02,
        max_per_img=200))
