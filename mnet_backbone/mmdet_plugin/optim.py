"""Deprecated path: moved to :mod:`mnet_backbone.openmmlab.optim` (mmengine level,
shared by the faces)."""
from .._moved import moved_to

__getattr__ = moved_to(__name__, 'mnet_backbone.openmmlab.optim')
