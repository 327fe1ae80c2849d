"""What the mmdet and mmpretrain faces share, at the level of mmengine and mmcv only.

* :class:`.backbone.MobileNetV1` (``OpenMMLabMobileNetV1`` here): the core with mmcv layer
  configs and ``init_cfg`` (the mmdet face registers it, the mmpretrain face a subclass);
* the ``mnet://`` checkpoint scheme (:mod:`.pretrained`);
* mmengine 0.10.x reading Runner checkpoints with the package's safe reader
  (:mod:`.checkpoint`, undo with :func:`restore_mmengine_checkpoints`);
* in mmengine's root registries, so both libraries' configs find them: ``CheckedRunner`` and
  ``SafeCheckpointHook`` (:mod:`.runner`), ``NonFiniteGuardHook`` (:mod:`.guards`),
  ``CPUAmpOptimWrapper`` (:mod:`.optim`);
* all-or-nothing registration (:mod:`.registry`) and undoable ``__init__`` patches
  (:mod:`.init_patch`);
* what ``tools/train.py`` and ``tools/test.py`` do (:mod:`.commands`, imported by the tools).
"""
from mmengine.registry import HOOKS, OPTIM_WRAPPERS, RUNNERS

from .backbone import MobileNetV1 as OpenMMLabMobileNetV1
from .checkpoint import allow_mmengine_checkpoints, restore_mmengine_checkpoints
from .guards import NonFiniteGuardHook
from .optim import CPUAmpOptimWrapper
from .pretrained import SCHEME, load_from_mnet  # noqa: F401  (registers the mnet:// scheme)
from .registry import RegistryConflictError, register
from .runner import CheckedRunner, SafeCheckpointHook

__all__ = ['OpenMMLabMobileNetV1', 'CheckedRunner', 'SafeCheckpointHook', 'NonFiniteGuardHook',
           'CPUAmpOptimWrapper', 'RegistryConflictError', 'register', 'SCHEME',
           'allow_mmengine_checkpoints', 'restore_mmengine_checkpoints']

REGISTERED = ((RUNNERS, CheckedRunner), (HOOKS, SafeCheckpointHook), (HOOKS, NonFiniteGuardHook),
              (OPTIM_WRAPPERS, CPUAmpOptimWrapper))
register(REGISTERED, 'mmengine', tested='0.10.7')
# mmengine 0.10.x reads local checkpoints with the package's safe reader.
allow_mmengine_checkpoints()
