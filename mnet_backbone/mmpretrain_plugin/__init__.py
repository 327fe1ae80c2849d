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

It shares the mmdet face's ``mnet://`` loader and checkpoint fix, so it needs mmdet too (the
``cls`` extra installs both).
"""
import importlib.util

_EXTRA = "pip install -e '.[cls]' (or bash tools/install.sh)"
for _needed in ('mmpretrain', 'mmdet'):
    if importlib.util.find_spec(_needed) is None:
        raise ImportError(f'mnet_backbone: the classification face (configs/mnet_cls_*.py) '
                          f'needs {_needed}, which is not installed: {_EXTRA}')

# After the check above, so that a missing package is the message naming the extra.
from mmpretrain.registry import DATASETS, HOOKS, MODELS, OPTIMIZERS  # noqa: E402

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


class RegistryConflictError(ImportError):
    """A name this face registers is taken in mmpretrain's registry by another class."""


def _qualname(cls) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


def register(entries=REGISTERED) -> None:
    """Register every entry, or none: a name another class holds is an error listing each.

    mmpretrain's registries fill lazily, so their modules are imported first: a name a later
    mmpretrain adds is then seen here, not as a crash inside mmpretrain's own import.
    """
    for registry, _ in entries:
        registry.import_from_location()
    taken = [f"{registry.name} registry: {cls.__name__!r} is {_qualname(other)}"
             for registry, cls in entries
             for other in [registry.module_dict.get(cls.__name__)]
             if other is not None and _qualname(other) != _qualname(cls)]
    if taken:
        raise RegistryConflictError(
            'mnet_backbone: mmpretrain already has ' + '; '.join(taken) + '. Nothing was '
            'registered; use an mmpretrain version without these names (tested: 1.2.0)')
    for registry, cls in entries:
        # force: the same class again (a module reload) replaces its earlier registration.
        registry.register_module(module=cls, force=True)


register()
# The head's in_channels follows the backbone's alpha (mmpretrain 1.2.x; undo with
# unpatch_classifiers()).
patch_classifiers()
