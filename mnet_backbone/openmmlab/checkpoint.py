"""Let torch>=2.6's safe ``torch.load`` read mmengine's own Runner checkpoints, and name files
that are no checkpoint at all.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, which refuses what every Runner checkpoint stores in its message hub:
``HistoryBuffer`` objects, the numpy arrays inside them, and the ``getattr`` reductions of their
statistics methods. ``--resume`` then fails with "Unsupported global: ... HistoryBuffer".

Rather than turning safe loading off, the local-file checkpoint loader of mmengine is replaced by
the package's safe reader (:func:`mnet_backbone.weights.hub.load_checkpoint`, torch only), which
allows exactly those types while it reads a checkpoint (the process-wide allow-list is left
alone). Every local checkpoint mmengine reads goes through it (``tools/test.py``'s checkpoint,
``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``), so a truncated, empty or foreign
file is one :class:`~mnet_backbone.weights.hub.UnreadableCheckpointError` naming the file and
what it holds, not a zip-reader traceback or torch's advice to load it unsafely.
"""
import os.path as osp
import warnings

import torch
from mmengine.runner import CheckpointLoader

from ..weights.hub import UnreadableCheckpointError, load_checkpoint

__all__ = ["UnreadableCheckpointError", "load_runner_checkpoint", "load_from_local_safe",
           "allow_mmengine_checkpoints", "restore_mmengine_checkpoints"]


def load_runner_checkpoint(filename: str, map_location=None):
    """``torch.load`` with ``weights_only=True`` that accepts mmengine's checkpoint contents."""
    return load_checkpoint(filename, map_location)


def load_from_local_safe(filename, map_location):
    """mmengine's local-file checkpoint loader, reading Runner checkpoints safely."""
    filename = osp.expanduser(filename)
    if not osp.exists(filename):  # a folder is named by load_checkpoint
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint(filename, map_location)


# The mmengine releases whose local-file loader was read and is replaced (0.10.7 verified).
SUPPORTED_MMENGINE = '0.10.'
_replaced = None  # mmengine's own local-file loader while ours is installed


def allow_mmengine_checkpoints() -> bool:
    """Install the safe loader for local paths (idempotent); True when installed.

    Only on mmengine 0.10.x with a torch that has ``safe_globals`` (elsewhere a warning, and
    mmengine's loader stays). :func:`restore_mmengine_checkpoints` puts mmengine's back.
    """
    global _replaced
    import mmengine
    if not mmengine.__version__.startswith(SUPPORTED_MMENGINE) or \
            not hasattr(torch.serialization, 'safe_globals'):
        warnings.warn(f'mnet_backbone: mmengine {mmengine.__version__} / torch '
                      f'{torch.__version__} are not the versions whose checkpoint loader this '
                      f'package replaces (mmengine {SUPPORTED_MMENGINE}x, torch >= 2.6); '
                      f"mmengine's own loader stays", stacklevel=2)
        return False
    if _replaced is None:
        _replaced = CheckpointLoader._schemes['']
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    return True


def restore_mmengine_checkpoints() -> None:
    """Undo :func:`allow_mmengine_checkpoints`: mmengine's own local-file loader again."""
    global _replaced
    if _replaced is not None:
        CheckpointLoader.register_scheme(prefixes='', loader=_replaced, force=True)
        _replaced = None
