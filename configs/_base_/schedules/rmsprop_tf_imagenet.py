# The paper's recipe: RMSprop as TensorFlow computes it ("trained in TensorFlow using RMSprop ...
# similar to Inception V3"): RMSpropTF with decay (alpha) 0.9, momentum 0.9 and epsilon 1.0 inside
# the square root, accumulator starting at 1 (Inception V3; TF-slim train_image_classifier.py),
# lr 0.045 x 0.94 every 2 epochs (Inception V3).
# Weight decay: L2 4e-5 (TF-slim's MobileNet arg scope) on the full and pointwise convolutions and
# the classifier weights; none on depthwise filters (the paper: "very little or no weight decay";
# mmengine finds them by groups == in_channels), BN parameters or biases (TF-slim regularizes
# neither). No label smoothing, no auxiliary heads (the paper), no warm-up (TF-slim has none).
# Not published, chosen here: 100 epochs (lr ends at 0.94^50 = 4.5 % of its start) and the batch
# for lr 0.045: 64 (TF-slim's MobileNet script); --auto-scale-lr scales lr to the total batch.
max_epochs = 100
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='RMSpropTF', lr=0.045, alpha=0.9, momentum=0.9, eps=1.0,
                   weight_decay=4e-5),
    paramwise_cfg=dict(dwconv_decay_mult=0., norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [dict(type='StepLR', by_epoch=True, step_size=2, gamma=0.94)]
auto_scale_lr = dict(enable=False, base_batch_size=64)
