# Runtime of the classification configs: mmpretrain's scope and visualizer over the shared
# runtime, plus the hooks of this package's classification face.
_base_ = './default_runtime.py'

# mnet_backbone.mmpretrain_plugin is named so that a missing mmpretrain (or a face that could not
# register) stops here with one message naming the extra, not later as an unknown type.
custom_imports = dict(imports=['mnet_backbone', 'mnet_backbone.mmpretrain_plugin'],
                      allow_failed_imports=False)
default_scope = 'mmpretrain'

default_hooks = dict(
    # test images with true / predicted class: tools/test.py --show-dir DIR (either tool set)
    visualization=dict(_delete_=True, type='VisualizationHook', enable=False))
custom_hooks = [
    # checkpoints record the backbone's padding / BN eps; load_from and tools/test.py restore
    # them, load core-layout weights, and load the ImageNet classifier of mnet://<entry> when
    # the class counts match
    dict(type='BackboneSettingsHook'),
    # a data set whose class count differs from model.head.num_classes is an error
    dict(type='ClsNumClassesCheckHook'),
    # a NaN / inf loss stops the run; non-finite weights are never saved (as the detectors')
    dict(type='NonFiniteGuardHook', policy='stop'),
]
visualizer = dict(type='UniversalVisualizer')  # vis_backends and name: the shared runtime's
