# SGD with warm-up and cosine decay. As the paper advises, depthwise filters get no weight decay
# (they have so few parameters that decay only hurts them).
max_epochs = 120
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True,
         eta_min=0)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.015, momentum=0.9, weight_decay=4.0e-5),
    paramwise_cfg=dict(dwconv_decay_mult=0.))

# custom_hooks: the runtime's (NonFiniteGuardHook checks every step's loss, where mmdet's
# CheckInvalidLossHook checked every 50th after the step, and would end a run the guard's 'skip'
# policy keeps going).
# base_batch_size = (8 GPUs) x (24 samples per GPU), for --auto-scale-lr
auto_scale_lr = dict(enable=False, base_batch_size=192)
