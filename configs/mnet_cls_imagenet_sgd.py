# MobileNetV1-1.0 at 224 px, trained with TF-slim's SGD script settings instead of RMSprop.
_base_ = [
    '_base_/models/mnet_cls.py', '_base_/datasets/imagenet.py',
    '_base_/schedules/sgd_tf_imagenet.py', '_base_/cls_runtime.py'
]
