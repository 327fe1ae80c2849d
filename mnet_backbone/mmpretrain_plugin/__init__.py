"""mmpretrain face of mnet-backbone: MobileNetV1 classifiers with mmpretrain's own pieces.

Imported by ``import mnet_backbone`` when mmpretrain is installed; the classification configs
also name it in ``custom_imports``, so a missing mmpretrain is one error naming the extra. The
configs use mmpretrain's ``ImageClassifier``, ``GlobalAveragePooling``, ``LinearClsHead``,
``ImageNet``, transforms, ``PackInputs`` and ``Accuracy``; this face adds, in mmpretrain's
registries, only what mmpretrain lacks:

* ``MobileNetV1`` (MODELS): the core model (:mod:`.backbone`);
* ``RMSpropTF`` (OPTIMIZERS): TensorFlow's RMSprop, the paper's optimizer (:mod:`.optim`);
* ``ImageFolderDataset`` (DATASETS): ``CustomDataset`` with checked folders (:mod:`.data`);
* ``BackboneSettingsHook``, ``ClsNumClassesCheckHook`` (HOOKS): checkpoints carry the
  backbone's padding / BN eps; a class-count mismatch is an error (:mod:`.hooks`);
* the head's ``in_channels`` follows the backbone's alpha (:mod:`.widths`, mmpretrain 1.2.x).

What it shares with the mmdet face (the ``mnet://`` loader, the checkpoint fix, the Runner and
hooks) is :mod:`mnet_backbone.openmmlab`, which needs mmengine and mmcv only: mmdet is not
needed.
"""
import importlib.util

_EXTRA = "pip install -e '.[cls]' (or bash tools/install.sh)"
if importlib.util.find_spec('mmpretrain') is None:
    raise ImportError(f'mnet_backbone: the classification face (configs/mnet_cls_*.py) '
                      f'needs mmpretrain, which is not installed: {_EXTRA}')

# After the check above, so that a missing package is the message naming the extra.
from mmpretrain.registry import DATASETS, HOOKS, MODELS, OPTIMIZERS  # noqa: E402

from ..openmmlab import RegistryConflictError  # noqa: E402
from ..openmmlab import register as _register  # noqa: E402
from .backbone import MobileNetV1  # noqa: E402
from .data import ClassificationDataError, ImageFolderDataset, UnreadableImageError  # noqa: E402
from .hooks import BackboneSettingsHook, ClsNumClassesCheckHook  # noqa: E402
from .optim import RMSpropTF  # noqa: E402
from .widths import patch_classifiers, unpatch_classifiers  # noqa: E402

__all__ = [
    'REGISTERED',
    'BackboneSettingsHook',
    'ClassificationDataError',
    'ClsNumClassesCheckHook',
    'ImageFolderDataset',
    'MobileNetV1',
    'RMSpropTF',
    'RegistryConflictError',
    'UnreadableImageError',
    'patch_classifiers',
    'unpatch_classifiers',
]

REGISTERED = ((MODELS, MobileNetV1), (OPTIMIZERS, RMSpropTF), (DATASETS, ImageFolderDataset),
              (HOOKS, BackboneSettingsHook), (HOOKS, ClsNumClassesCheckHook))


def register(entries=REGISTERED) -> None:
    """Register every entry in mmpretrain's registries, or none (see
    :func:`mnet_backbone.openmmlab.register`)."""
    _register(entries, 'mmpretrain', tested='1.2.0')


register()
# The head's in_channels follows the backbone's alpha (mmpretrain 1.2.x; undo with
# unpatch_classifiers()).
patch_classifiers()
