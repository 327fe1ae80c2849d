# Runtime shared by every config: registers mnet-backbone, logging, checkpoints, visualisation.
custom_imports = dict(imports=['mnet_backbone'], allow_failed_imports=False)
default_scope = 'mmdet'
# mmengine's Runner with checkpoints written whole (temporary file + rename), a resume that skips
# an unreadable newest checkpoint, and hook / loop keys checked at start-up
# (mnet_backbone.openmmlab.runner); mmdet's and mmpretrain's tools build it too.
runner_type = 'CheckedRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    # A NaN / inf loss stops the run before the step (policy='skip': skip the step) and
    # non-finite weights are never saved (mnet_backbone.openmmlab.guards).
    dict(type='NonFiniteGuardHook', policy='stop'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches nccl to gloo when there is no GPU.
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
# mmdet's own tools (analysis_tools/browse_dataset.py) build the visualizer from this dict and
# need its name. The name is global in a process: a second Runner in the same process gets the
# first one's visualizer (and its save_dir), so code that builds several Runners in one process
# sets visualizer.name per run (the tests do).
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
