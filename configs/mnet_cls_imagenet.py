# MobileNetV1-1.0 at 224 px on ImageNet-1k with the paper's recipe (RMSprop as in TensorFlow, no
# weight decay on depthwise filters, no label smoothing or auxiliary heads, light augmentation),
# built from mmpretrain's parts (default_scope='mmpretrain') and this package's MobileNetV1.
#   python tools/train.py configs/mnet_cls_imagenet.py            (data in data/imagenet/)
#   python tools/test.py configs/mnet_cls_imagenet.py mnet://keras_1.0_224   (released weights)
#   python <mmpretrain>/.mim/tools/train.py configs/mnet_cls_imagenet.py   (mmpretrain's tools;
#   <mmpretrain>: python -c "import mmpretrain, os; print(os.path.dirname(mmpretrain.__file__))")
# Variants: _a075/_a050/_a025 (width), _r192/_r160/_r128 (resolution), _sgd (SGD option).
_base_ = [
    '_base_/models/mnet_cls.py', '_base_/datasets/imagenet.py',
    '_base_/schedules/rmsprop_tf_imagenet.py', '_base_/cls_runtime.py'
]
