# The SGD option: TF-slim's own MobileNetV1 training script (nets/mobilenet_v1_train.py): plain
# gradient descent (no momentum), lr 0.045 at batch 64, x0.94 every 2.5 epochs (a staircase in TF;
# here the same rate applied per epoch, 0.94^(1/2.5)), L2 weight decay 4e-5 on all but depthwise
# filters, BN parameters and biases, as in the RMSprop recipe.
max_epochs = 100
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.045, momentum=0.0, weight_decay=4e-5),
    paramwise_cfg=dict(dwconv_decay_mult=0., norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [dict(type='ExponentialLR', by_epoch=True, gamma=0.94 ** (1 / 2.5))]
auto_scale_lr = dict(enable=False, base_batch_size=64)
