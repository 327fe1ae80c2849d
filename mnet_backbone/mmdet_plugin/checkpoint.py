"""Let torch>=2.6's safe ``torch.load`` read mmengine's own Runner checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, which refuses what every Runner checkpoint stores in its message hub:
``HistoryBuffer`` objects, the numpy arrays inside them, and the ``getattr`` reductions of their
statistics methods. ``--resume`` then fails with "Unsupported global: ... HistoryBuffer".

Rather than turning safe loading off, the local-file checkpoint loader of mmengine is replaced by
one that still loads with ``weights_only=True`` but allows exactly those types, and only while it
reads a checkpoint (the process-wide allow-list is left alone).
"""
import os.path as osp

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader


def _numpy_globals():
    multiarray = (getattr(np, '_core', None) or np.core).multiarray
    names = [multiarray._reconstruct, np.ndarray, np.dtype]
    if hasattr(multiarray, 'scalar'):
        names.append(multiarray.scalar)
    # Each dtype pickles as its own class (numpy >= 1.25: numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return names


MMENGINE_CHECKPOINT_GLOBALS = [HistoryBuffer, getattr, *_numpy_globals()]


def load_runner_checkpoint(filename: str, map_location=None):
    """``torch.load`` with ``weights_only=True`` that accepts mmengine's checkpoint contents."""
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        return torch.load(filename, map_location=map_location, weights_only=True)


def load_from_local_safe(filename, map_location):
    """mmengine's local-file checkpoint loader, reading Runner checkpoints safely."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_runner_checkpoint(filename, map_location)


def allow_mmengine_checkpoints() -> None:
    """Install the loader for local paths (idempotent; no-op where torch has no safe_globals)."""
    if hasattr(torch.serialization, 'safe_globals'):
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
