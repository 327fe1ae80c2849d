# MobileNetV1-1.0 ImageNet classifier in mmpretrain's terms: the core network (registered
# backbone) + global average pooling + a 1000-way linear layer; no auxiliary heads.
# head.in_channels is written at alpha 1 (Table 1); with another backbone alpha or out_indices it
# follows the backbone (logged). TF-slim/Keras put dropout 1e-3 before the classifier (keep
# probability 0.999); mmpretrain's LinearClsHead has none, and one activation in a thousand is
# left out here.
# Input: RGB scaled to [-1, 1] (mean = std = 127.5), as TF-slim, Keras and timm trained
# MobileNetV1, so the released weights (mnet://<entry>) need no other preprocessing.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
                           to_rgb=True),
    backbone=dict(
        type='MobileNetV1',
        alpha=1.0,
        out_indices=(4,),
        # TF-slim's BN epsilon; Keras weights need it (and TF padding: switched on when they
        # are loaded), timm's are switched to 1e-5 the same way
        norm_cfg=dict(type='BN', eps=1e-3),
        act_cfg=dict(type='ReLU6')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        # the paper: no label smoothing
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
