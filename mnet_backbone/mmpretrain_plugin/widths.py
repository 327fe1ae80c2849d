"""The classifier head's width follows the MobileNetV1 backbone in mmpretrain's ImageClassifier.

Classification configs write ``head.in_channels=1024``, MobileNetV1-1.0's last stage (Table 1);
the backbone's ``alpha`` and ``out_indices`` are the only knobs (``--cfg-options
model.backbone.alpha=0.5`` alone gives MobileNetV1-0.5), as in the mmdet face's detectors. When
an ``ImageClassifier`` is built with ``type='MobileNetV1'`` as its backbone and no neck or a
channel-keeping pooling neck (``GlobalAveragePooling``, ``GeneralizedMeanPooling``), the head's
``in_channels`` is set to the channels of the backbone's last output
(:func:`mnet_backbone.model.stage_channels`, the rule every face uses), on a copy of the config
dict, logging the change; a written value that is no MobileNetV1 width gets a warning. Without
this, another alpha fails at the first forward with a matrix shape error.

How it reaches mmpretrain: :func:`patch_classifiers` wraps ``ImageClassifier.__init__`` of
mmpretrain 1.2.x; other backbones and necks pass through untouched, no registry entry changes,
:func:`unpatch_classifiers` restores the original. Other mmpretrain versions are not patched (a
warning says so); configs then write ``head.in_channels`` for their alpha.
"""
import copy
import inspect
import logging
import warnings

from mmengine.logging import print_log
from mmpretrain.registry import MODELS

from ..model import stage_channels
from ..openmmlab.init_patch import InitPatch
from ..openmmlab.registry import config_class
from .backbone import MobileNetV1, normalize_out_indices

SUPPORTED_MMPRETRAIN = '1.2.'
# Necks whose output has the backbone's channels.
POOLING_NECKS = ('GlobalAveragePooling', 'GeneralizedMeanPooling')
_PATCH = InitPatch()


def _backbone_args(backbone: dict):
    """``alpha`` and stage indices of a MobileNetV1 backbone config (class defaults applied)."""
    defaults = inspect.signature(MobileNetV1.__init__).parameters
    alpha = backbone.get('alpha', defaults['alpha'].default)
    out_indices = backbone.get('out_indices', defaults['out_indices'].default)
    return alpha, normalize_out_indices(out_indices)


def resolve_head(backbone, neck, head):
    """``head`` with ``in_channels`` following a MobileNetV1 ``backbone`` (a copy when changed)."""
    cls = config_class(backbone, MODELS)
    if cls is None or not issubclass(cls, MobileNetV1) or not isinstance(head, dict):
        return head
    neck_cls = config_class(neck, MODELS)
    if neck is not None and getattr(neck_cls, '__name__', None) not in POOLING_NECKS:
        return head  # the neck decides the head's input width
    head_cls = config_class(head, MODELS)
    if head_cls is None or 'in_channels' not in inspect.signature(head_cls.__init__).parameters:
        return head
    alpha, out_indices = _backbone_args(backbone)
    channels = stage_channels(alpha, out_indices)[-1]
    written = head.get('in_channels')
    if written == channels:
        return head
    foreign = written is not None and written not in (set(stage_channels(1.0))
                                                      | set(stage_channels(alpha)))
    print_log(f'widths follow the backbone: model.head.in_channels {written} -> {channels} '
              f'(MobileNetV1(alpha={alpha}, out_indices={out_indices}))'
              + (f'; {written} is no MobileNetV1 width, the config was written for another '
                 f'backbone' if foreign else ''),
              logger='current', level=logging.WARNING if foreign else logging.INFO)
    head = copy.deepcopy(head)
    head['in_channels'] = channels
    return head


def _rewrite_head(arguments: dict) -> None:
    if arguments.get('head') is not None:
        arguments['head'] = resolve_head(arguments.get('backbone'), arguments.get('neck'),
                                         arguments['head'])


def patch_classifiers() -> bool:
    """Install the head-width rule into mmpretrain's ``ImageClassifier`` (idempotent). Returns
    whether it is active: only mmpretrain 1.2.x is patched."""
    import mmpretrain
    if not mmpretrain.__version__.startswith(SUPPORTED_MMPRETRAIN):
        warnings.warn(f'mnet_backbone: mmpretrain {mmpretrain.__version__} is not '
                      f'{SUPPORTED_MMPRETRAIN}x, so the classifier head does not follow the '
                      f'MobileNetV1 backbone: write model.head.in_channels for your alpha',
                      stacklevel=2)
        return False
    from mmpretrain.models.classifiers import ImageClassifier
    _PATCH.install(ImageClassifier, _rewrite_head)
    return True


def unpatch_classifiers() -> None:
    """Restore mmpretrain's own ``ImageClassifier.__init__``."""
    _PATCH.undo()
