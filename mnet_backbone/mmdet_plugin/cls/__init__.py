"""Classification with mmengine's Runner, without mmpretrain: the pieces the ``mnet_cls_*``
configs use, registered in mmdet's registries (the runtime's ``default_scope='mmdet'``), so
``tools/train.py`` and ``tools/test.py`` run them as they run the detectors.

* ``ImageClassifier`` (model): registered backbone (the core ``MobileNetV1``) + ``LinearClsHead``
  (global pool, dropout, linear), ``loss`` / ``predict`` / ``tensor`` modes;
* ``ImageFolderDataset``: ``<class>/*.jpg`` folders (ImageNet ``train/<wnid>/*.JPEG``) or a list
  file with labels; ``RandomResizedCrop``, ``ResizeEdge``, ``PackClsInputs`` transforms;
* ``Accuracy`` metric (``accuracy/top1``, ``accuracy/top5``);
* ``RMSpropTF`` optimizer (TensorFlow's RMSprop, the paper's);
* hooks: ``BackboneSettingsHook``, ``ClsNumClassesCheckHook``, ``ClsVisualizationHook``.
"""
from .data import (ClassificationDataError, ClsDataSample, ImageFolderDataset, PackClsInputs,
                   RandomResizedCrop, ResizeEdge, UnreadableImageError)
from .hooks import BackboneSettingsHook, ClsNumClassesCheckHook, ClsVisualizationHook
from .metric import Accuracy, true_class_rank
from .model import ImageClassifier, LinearClsHead, core_to_classifier_keys
from .optim import RMSpropTF

__all__ = ['ImageClassifier', 'LinearClsHead', 'core_to_classifier_keys', 'ImageFolderDataset',
           'ClsDataSample', 'RandomResizedCrop', 'ResizeEdge', 'PackClsInputs', 'Accuracy',
           'true_class_rank', 'RMSpropTF', 'BackboneSettingsHook', 'ClsNumClassesCheckHook',
           'ClsVisualizationHook', 'ClassificationDataError', 'UnreadableImageError']
