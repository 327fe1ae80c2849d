"""Deprecated path: moved to :mod:`mnet_backbone.openmmlab.commands` (the command lines of
``tools/train.py`` and ``tools/test.py``, for detectors and classifiers alike)."""
from .._moved import moved_to

__getattr__ = moved_to(__name__, 'mnet_backbone.openmmlab.commands')
