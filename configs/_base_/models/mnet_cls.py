# MobileNetV1-1.0 ImageNet classifier: the core network (registered backbone) + global average
# pool, dropout 1e-3 (TF-slim's keep probability 0.999) and a 1000-way linear layer. No
# auxiliary heads. Input: RGB scaled to [-1, 1] (mean = std = 127.5), as TF-slim, Keras and timm
# trained MobileNetV1, so the released weights (mnet://<entry>) need no other preprocessing.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
                           bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV1',
        alpha=1.0,
        out_indices=(4,),
        # TF-slim's BN epsilon; Keras weights need it (and TF padding: switched on when they
        # are loaded), timm's are switched to 1e-5 the same way
        norm_cfg=dict(type='BN', eps=1e-3),
        act_cfg=dict(type='ReLU6')),
    head=dict(type='LinearClsHead', num_classes=1000, dropout=1e-3))
