"""``MobileNetV1`` in mmpretrain's MODELS registry: the core model with mmpretrain's conventions.

The layers come from the core (:mod:`mnet_backbone.model`) through
:class:`mnet_backbone.openmmlab.backbone.MobileNetV1`, which translates the OpenMMLab conventions
mmdet and mmpretrain share (mmcv ``conv_cfg`` / ``norm_cfg`` / ``act_cfg``, ``init_cfg`` with
``mnet://`` or file weights, ``frozen_stages``, ``norm_eval``, ``with_cp``, a tuple of
features). What differs in mmpretrain is said here: the default output is the last
stage only, ``out_indices`` may count from the end (``-1``) or be one int, as in mmpretrain's
ResNet, and checkpoints in the core's layout load into mmpretrain's ``ImageClassifier``.
"""
from typing import Sequence, Union

from ..model import TABLE_1
from ..openmmlab.backbone import MobileNetV1 as OpenMMLabMobileNetV1
from ..weights.loaded import check_fit

__all__ = ['MobileNetV1', 'core_to_classifier_keys', 'normalize_out_indices']

NUM_STAGES = len(TABLE_1)


def normalize_out_indices(out_indices: Union[int, Sequence[int]]) -> tuple:
    """mmpretrain's ``out_indices`` (an int or ints, negative ones counted from the last stage)
    as the core's stage indices 0..4."""
    indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
    if not indices or any(isinstance(i, bool) or not isinstance(i, int)
                          or not -NUM_STAGES <= i < NUM_STAGES for i in indices):
        raise ValueError(f'MobileNetV1: out_indices must be stage indices in 0..{NUM_STAGES - 1} '
                         f'(or -{NUM_STAGES}..-1 from the last stage), got {out_indices!r}')
    return tuple(i % NUM_STAGES for i in indices)


def core_to_classifier_keys(state_dict: dict, prefix: str = '') -> bool:
    """Rename the core model's keys (``stages.*``, ``fc.*``) under ``prefix`` to those of
    mmpretrain's ``ImageClassifier`` (``backbone.stages.*``, ``head.fc.*``) in place; True if
    anything was renamed. Converted weights, ``mnet://`` entries and
    ``mnet_backbone.MobileNetV1().state_dict()`` are in the core's layout."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    rel = [k[len(prefix):] for k in keys]
    if not any(r.startswith('stages.') for r in rel) or any(
            r.startswith(('backbone.', 'head.')) for r in rel):
        return False
    for key, r in zip(keys, rel):
        if r.startswith('stages.'):
            state_dict[prefix + 'backbone.' + r] = state_dict.pop(key)
        elif r.startswith('fc.'):
            state_dict[prefix + 'head.' + r] = state_dict.pop(key)
    return True


class MobileNetV1(OpenMMLabMobileNetV1):
    """MobileNetV1 backbone for mmpretrain (the core model, built from mmcv layer configs).

    Args:
        alpha: width multiplier (channels ``max(int(c * alpha), 8)``).
        out_indices: stages to return (0-4 or -5..-1; strides 2, 4, 8, 16, 32; channels 64,
            128, 256, 512, 1024 times alpha). Default: the last stage, what a classifier uses.
        frozen_stages: stages 0..frozen_stages are frozen (-1: none).
        **kwargs: the OpenMMLab backbone's arguments (``conv_cfg``, ``norm_cfg``, ``act_cfg``,
            ``norm_eval``, ``with_cp``, ``separable``, ``shallow``, ``tf_padding``,
            ``init_cfg``), see :class:`mnet_backbone.openmmlab.backbone.MobileNetV1`.
    """

    def __init__(self, alpha: float = 1.0, out_indices: Union[int, Sequence[int]] = (4,),
                 frozen_stages: int = -1, **kwargs):
        super().__init__(alpha=alpha, out_indices=normalize_out_indices(out_indices),
                         frozen_stages=frozen_stages, **kwargs)

    def _checkpoint_filter(self, state_dict, prefix, *args) -> None:
        # mmpretrain's ImageClassifier registers this as a load_state_dict pre-hook of the whole
        # classifier (its hook for backbone-specific checkpoint layouts), so every load into it
        # (load_from, init_cfg on the classifier, mmpretrain's tools and apis) takes core-layout
        # files, and a backbone of another width is an error naming alpha: mmengine loads with
        # strict=False and would only log the mismatch.
        core_to_classifier_keys(state_dict, prefix)
        start = prefix + 'backbone.'
        own = {k[len(start):]: v for k, v in state_dict.items() if k.startswith(start)}
        check_fit(self, own, "the checkpoint's weights", strict=False)
