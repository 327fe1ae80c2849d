# The SGD option: TF-slim's own MobileNetV1 training script (nets/mobilenet_v1_train.py): plain
# gradient descent (no momentum), lr 0.045 at batch 64, x0.94 every 2.5 epochs (a staircase in TF;
# here the same rate applied per epoch, 0.94^(1/2.5)). Epochs, weight decay (4e-5 on all but
# depthwise filters, BN parameters and biases) and batch are the RMSprop recipe's.
_base_ = './rmsprop_tf_imagenet.py'

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='SGD', lr=0.045, momentum=0.0, weight_decay=4e-5))
param_scheduler = [dict(type='ExponentialLR', by_epoch=True, gamma=0.94 ** (1 / 2.5))]
