# Runtime of the classification configs: the shared runtime plus the classifier's hooks.
_base_ = './default_runtime.py'

default_hooks = dict(
    # tools/test.py --show-dir DIR: test images with true / predicted class
    visualization=dict(_delete_=True, type='ClsVisualizationHook'))
custom_hooks = [
    # checkpoints record the backbone's padding / BN eps; load_from and tools/test.py restore
    # them, and load the ImageNet classifier of mnet://<entry> when the class counts match
    dict(type='BackboneSettingsHook'),
    # a data set whose class count differs from model.head.num_classes is an error
    dict(type='ClsNumClassesCheckHook'),
]
