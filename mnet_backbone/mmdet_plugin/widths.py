"""Neck and head widths that follow the MobileNetV1 backbone in mmdet detectors.

The rule (one owner: :func:`mnet_backbone.model.detector_widths`): a detector config writes its
widths at alpha 1, as Table 1 does. When a detector is built with ``type='MobileNetV1'`` as its
backbone, the widths that must equal the backbone's outputs are set from the backbone's
``alpha`` and ``out_indices``, and SSD's extra layers scale with alpha like the backbone
(TF's ``ssd_mobilenet_v1``, the paper's SSD, applies ``depth_multiplier`` to them too):

* ``SSDNeck``: ``in_channels`` = the backbone's outputs; ``out_channels`` = those + the extra
  layers (the written ones after the backbone entries, scaled by alpha); with more backbone
  levels than written, the last extra layers are dropped (the head keeps its level count) and
  the head's anchor strides follow the backbone's strides; ``bbox_head.in_channels`` = the neck's.
* FPN-like necks (``FPN`` and its subclasses, ``ChannelMapper``): ``in_channels`` = the
  backbone's outputs; their own ``out_channels`` (256) do not depend on alpha. When
  ``out_indices`` changes the strides, the anchor strides of the heads and the RoI extractors'
  ``featmap_strides`` follow.
* No neck: a head's ``in_channels`` = the backbone's outputs.
* Any other neck: its ``in_channels`` must already match, else one error names both.

Every change is logged (what was written, what is used). A backbone that names ``mnet://``
weights whose input normalisation is not the detector's gets a warning naming both. A width that
cannot be derived is a ``ValueError`` at build time naming the backbone's output channels and the
keys to set, instead of a convolution shape error at the first forward.

How it reaches mmdet: :func:`patch_detectors` wraps ``SingleStageDetector.__init__`` and
``TwoStageDetector.__init__`` of mmdet 3.3.x (their subclasses, e.g. ``FasterRCNN``,
``RetinaNet``, included): before the original builds the parts, the config dicts are resolved
(copies; the config itself is not changed). Nothing else changes: other backbones pass through
untouched, no registry entry is replaced, :func:`unpatch_detectors` restores the originals. Other
mmdet versions are not patched (a warning says so); configs then must write every width.
"""
import copy
import inspect
import logging
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

from mmdet.registry import MODELS
from mmengine.logging import print_log

from ..model import STAGE_STRIDES, detector_widths, stage_channels
from ..openmmlab.init_patch import InitPatch
from ..openmmlab.registry import config_class
from ..weights import ENTRIES
from .backbone import MobileNetV1

SUPPORTED_MMDET = '3.3.'
_PATCH = InitPatch()


def _log(msg: str, warn: bool = False) -> None:
    print_log(msg, logger='current', level=logging.WARNING if warn else logging.INFO)


def _fmt(xs) -> str:
    return '(' + ', '.join(map(str, xs)) + ')'


def is_mnet_backbone(cfg) -> bool:
    cls = config_class(cfg, MODELS)
    return cls is not None and issubclass(cls, MobileNetV1)


def backbone_args(cfg: dict) -> Tuple[float, Tuple[int, ...]]:
    """``alpha`` and ``out_indices`` of a MobileNetV1 backbone config (with the class defaults)."""
    defaults = inspect.signature(MobileNetV1.__init__).parameters
    alpha = cfg.get('alpha', defaults['alpha'].default)
    out_indices = cfg.get('out_indices', defaults['out_indices'].default)
    try:
        out_indices = tuple(out_indices)
    except TypeError:
        out_indices = (out_indices,)
    return alpha, out_indices


def _where(alpha, out_indices) -> str:
    return f'MobileNetV1(alpha={alpha}, out_indices={tuple(out_indices)})'


def _is_subclass(cfg, names: Sequence[str]) -> bool:
    import mmdet.models.necks as necks
    cls = config_class(cfg, MODELS)
    bases = tuple(getattr(necks, n) for n in names if hasattr(necks, n))
    return cls is not None and issubclass(cls, bases)


def _mnet_widths(written, alpha) -> bool:
    """Whether ``written`` are MobileNetV1 stage widths (at alpha 1 or at ``alpha``), i.e. the
    config was written for this backbone, only for another alpha or out_indices."""
    known = set(stage_channels(1.0)) | set(stage_channels(alpha))
    return set(tuple(written)) <= known


# ---------------------------------------------------------------------------------------------
# SSD


def _resolve_ssd(alpha, out_indices, neck: dict, head: Optional[dict], head_key: str,
                 changes: List[str]) -> None:
    where = _where(alpha, out_indices)
    outputs = stage_channels(alpha, out_indices)
    if list(out_indices) != sorted(set(out_indices)):
        raise ValueError(f'{where}: SSD needs out_indices in increasing order (fine to coarse '
                         f'feature maps), got {tuple(out_indices)}')
    written_out = neck.get('out_channels')
    strides, paddings = neck.get('level_strides'), neck.get('level_paddings')
    if written_out is None or strides is None or paddings is None:
        raise ValueError(f'{where} feeds an SSDNeck: write model.neck.out_channels (backbone '
                         f'levels + extra layers, at alpha 1, e.g. (512, 1024, 512, 256, 256, '
                         f'128)), model.neck.level_strides and model.neck.level_paddings')
    written_out, strides, paddings = tuple(written_out), tuple(strides), tuple(paddings)
    if len(strides) != len(paddings) or len(strides) >= len(written_out):
        raise ValueError(f'model.neck: SSDNeck has {len(written_out)} output levels, '
                         f'{len(strides)} level_strides and {len(paddings)} level_paddings; '
                         f'write one stride and one padding per extra layer')
    written_in = neck.get('in_channels')
    n_written = len(written_out) - len(strides)
    levels = len(written_out)
    extras_at_1 = written_out[n_written:]
    k = len(out_indices)
    keys = ('model.neck.out_channels, model.neck.level_strides, model.neck.level_paddings '
            f'and {head_key}.anchor_generator.strides')
    if k < n_written or k >= levels:
        raise ValueError(
            f'{where} gives {k} feature map(s) of {_fmt(outputs)} channels, but the SSD head has '
            f'{levels} levels and the neck {len(extras_at_1)} extra layers written after '
            f'{n_written} backbone level(s): the head cannot use them. Use {n_written} to '
            f'{levels - 1} stages in out_indices (e.g. {tuple(range(5 - n_written, 5))}), or '
            f'write the extra layers for {k} backbone level(s): {keys}')
    anchors = (head or {}).get('anchor_generator') or {}
    written_strides = anchors.get('strides')
    keep = levels - k  # extra layers chain from the last backbone map: keep the first ones
    stage_strides = [STAGE_STRIDES[i] for i in out_indices]
    if written_strides is not None and len(written_strides) == levels:
        first = [s[0] if isinstance(s, (list, tuple)) else s for s in written_strides]
        last = first[n_written - 1]
        if stage_strides[-1] != last:
            raise ValueError(
                f'{where}: the extra layers are written to start after a stride-{last} map '
                f'(stage {STAGE_STRIDES.index(last) if last in STAGE_STRIDES else "?"}), '
                f'out_indices ends at stage {out_indices[-1]} (stride {stage_strides[-1]}). '
                f'End out_indices with that stage, or set {keys}')
        new_strides = stage_strides + first[n_written:n_written + keep]
        if new_strides != first:
            head['anchor_generator'] = dict(anchors, strides=new_strides)
            changes.append(f'{head_key}.anchor_generator.strides {first} -> {new_strides}')
    elif k != n_written:
        raise ValueError(f'{where} gives {k} feature maps where the config writes '
                         f'{n_written}; the anchor strides cannot follow: set {keys}')
    if keep < len(extras_at_1):
        extras_at_1, strides, paddings = extras_at_1[:keep], strides[:keep], paddings[:keep]
        changes.append(f'model.neck: the first {keep} of {levels - n_written} extra layers '
                       f'kept ({levels} levels in all)')
    widths = detector_widths(alpha, out_indices, extras_at_1)
    if written_in is not None and not _mnet_widths(written_in, alpha):
        _log(f'{where} outputs {_fmt(widths.backbone)} channels; model.neck.in_channels '
             f'{_fmt(written_in)} were written for another backbone and are replaced (widths '
             f'after MobileNetV1 follow its alpha and out_indices)', warn=True)
    if written_in is None or tuple(written_in) != widths.backbone:
        changes.append(f'model.neck.in_channels {written_in and _fmt(written_in)} -> '
                       f'{_fmt(widths.backbone)}')
    if widths.extras != extras_at_1:
        changes.append(f'SSD extra layers {_fmt(extras_at_1)} at alpha 1 -> '
                       f'{_fmt(widths.extras)} at alpha {alpha}')
    neck.update(in_channels=widths.backbone, out_channels=widths.levels,
                level_strides=strides, level_paddings=paddings)
    if head is not None:
        _set_head_inputs(head, head_key, widths.levels, changes)
        anchor_levels = len((head.get('anchor_generator') or {}).get('strides') or widths.levels)
        if anchor_levels != len(widths.levels):
            raise ValueError(f'{head_key}: the anchor generator has {anchor_levels} levels, the '
                             f'neck gives {len(widths.levels)} maps ({_fmt(widths.levels)} '
                             f'channels); make {head_key}.anchor_generator.strides (and ratios) '
                             f'one per map')


def _set_head_inputs(head: dict, head_key: str, channels, changes: List[str]) -> None:
    written = head.get('in_channels')
    if written is None or tuple(written) != tuple(channels):
        changes.append(f'{head_key}.in_channels {written and _fmt(written)} -> '
                       f'{_fmt(channels)}')
    head['in_channels'] = tuple(channels)


# ---------------------------------------------------------------------------------------------
# FPN-like necks


def _fpn_strides(neck: dict, out_indices) -> Optional[List[int]]:
    """Strides of an FPN's outputs (``end_level=-1``), or None when they cannot be told."""
    if neck.get('end_level', -1) != -1 or 'num_outs' not in neck:
        return None
    start = neck.get('start_level', 0)
    strides = [STAGE_STRIDES[i] for i in out_indices[start:]]
    while strides and len(strides) < neck['num_outs']:
        strides.append(strides[-1] * 2)
    return strides


def _follow_strides(cfg: Optional[dict], key: str, path: str, strides: List[int],
                    changes: List[str]) -> None:
    """Set ``cfg[key]`` (a per-level stride list) to ``strides[:len]`` where it has a length."""
    if not isinstance(cfg, dict) or cfg.get(key) is None:
        return
    written = list(cfg[key])
    if len(written) > len(strides):
        raise ValueError(f'{path}.{key} has {len(written)} levels, the neck gives '
                         f'{len(strides)} (strides {strides}); set {path}.{key}')
    new = [s if not isinstance(w, (list, tuple)) else [s, s]
           for w, s in zip(written, strides)]
    if new != written:
        cfg[key] = new
        changes.append(f'{path}.{key} {written} -> {new}')


def _resolve_fpn(alpha, out_indices, neck: dict, heads: Dict[str, Optional[dict]],
                 changes: List[str]) -> None:
    where = _where(alpha, out_indices)
    widths = detector_widths(alpha, out_indices)
    written = neck.get('in_channels')
    if written is not None and not _mnet_widths(written, alpha):
        _log(f'{where} outputs {_fmt(widths.backbone)} channels; model.neck.in_channels '
             f'{_fmt(written)} were written for another backbone and are replaced', warn=True)
    if written is None or tuple(written) != widths.backbone:
        changes.append(f'model.neck.in_channels {written and _fmt(written)} -> '
                       f'{_fmt(widths.backbone)}')
    neck['in_channels'] = list(widths.backbone)
    if written is None or len(written) == len(out_indices):
        return
    # out_indices changed the number of levels: the strides of what follows change too.
    strides = _fpn_strides(neck, out_indices)
    if strides is None:
        raise ValueError(f'{where} gives {len(out_indices)} maps where model.neck was written '
                         f'for {len(written)}; with end_level set the output strides cannot be '
                         f'derived: set model.neck.in_channels={list(widths.backbone)} and the '
                         f'heads\' strides')
    for path, head in heads.items():
        if not isinstance(head, dict):
            continue
        _follow_strides(head.get('anchor_generator'), 'strides', f'{path}.anchor_generator',
                        strides, changes)
        _follow_strides(head, 'strides', path, strides, changes)
        for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
            _follow_strides(head.get(extractor), 'featmap_strides', f'{path}.{extractor}',
                            strides, changes)


# ---------------------------------------------------------------------------------------------
# Entry points


def _check_other_neck(alpha, out_indices, neck: dict) -> None:
    written = neck.get('in_channels')
    if written is None:
        return
    outputs = stage_channels(alpha, out_indices)
    got = tuple(written) if isinstance(written, (list, tuple)) else (written,)
    if got != outputs:
        raise ValueError(
            f'model.neck (type {neck.get("type")!r}) takes in_channels={written!r}, but '
            f'{_where(alpha, out_indices)} outputs {_fmt(outputs)} channels. Set '
            f'model.neck.in_channels={list(outputs) if len(outputs) > 1 else outputs[0]} (the '
            f'widths of neck types other than SSDNeck, FPN and ChannelMapper are not derived)')


def resolve(backbone: dict, neck: Optional[dict], heads: Dict[str, Optional[dict]]):
    """Copies of ``neck`` and ``heads`` (``{'model.bbox_head': cfg, ...}``) whose widths follow a
    MobileNetV1 ``backbone`` config (see the module doc); unchanged when it is another backbone."""
    if not is_mnet_backbone(backbone):
        return neck, heads
    alpha, out_indices = backbone_args(backbone)
    detector_widths(alpha, out_indices)  # alpha/out_indices errors before anything else
    neck = copy.deepcopy(neck)
    heads = {k: copy.deepcopy(v) for k, v in heads.items()}
    changes: List[str] = []
    if neck is None:
        for path, head in heads.items():
            if isinstance(head, dict) and isinstance(head.get('in_channels'), (list, tuple)):
                _set_head_inputs(head, path, stage_channels(alpha, out_indices), changes)
    elif _is_subclass(neck, ['SSDNeck']):
        path, head = next(iter(heads.items()))
        _resolve_ssd(alpha, out_indices, neck, head, path, changes)
    elif _is_subclass(neck, ['FPN', 'ChannelMapper']):
        _resolve_fpn(alpha, out_indices, neck, heads, changes)
    else:
        _check_other_neck(alpha, out_indices, neck)
    if changes:
        _log(f'{_where(alpha, out_indices)}: widths follow the backbone: ' + '; '.join(changes))
    return neck, heads


def check_normalisation(backbone: dict, data_preprocessor: Optional[dict]) -> bool:
    """Warn (and return False) when the backbone names ``mnet://`` weights whose input
    normalisation is not the detector's ``data_preprocessor``'s (RGB, mean/std x 255)."""
    init = backbone.get('init_cfg')
    for cfg in (init if isinstance(init, (list, tuple)) else [init]):
        checkpoint = str(cfg.get('checkpoint', '')) if isinstance(cfg, dict) else ''
        name = checkpoint[len('mnet://'):] if checkpoint.startswith('mnet://') else None
        if cfg is None or cfg.get('type') != 'Pretrained' or name not in ENTRIES:
            continue
        entry = ENTRIES[name]
        want_mean = [round(255 * m, 3) for m in entry.mean]
        want_std = [round(255 * v, 3) for v in entry.std]
        pre = data_preprocessor or {}
        got_mean, got_std = pre.get('mean'), pre.get('std')
        same = (got_mean is not None and got_std is not None
                and all(abs(a - b) < 1e-3 for a, b in zip(list(got_mean) + list(got_std),
                                                          want_mean + want_std))
                and pre.get('bgr_to_rgb', False))
        if not same:
            _log(f'MobileNetV1 weights {name} were trained on RGB input normalised with '
                 f'mean={want_mean}, std={want_std}, but model.data_preprocessor has '
                 f'mean={got_mean}, std={got_std}, bgr_to_rgb={pre.get("bgr_to_rgb", False)}: '
                 f'set model.data_preprocessor.mean={want_mean}, std={want_std}, '
                 f'bgr_to_rgb=True for the input the weights expect', warn=True)
            return False
    return True


def _rewrite_widths(head_names: Sequence[str]):
    def rewrite(arguments: dict) -> None:
        backbone = arguments.get('backbone')
        if is_mnet_backbone(backbone):
            check_normalisation(backbone, arguments.get('data_preprocessor'))
            heads = {f'model.{name}': arguments.get(name) for name in head_names}
            neck, heads = resolve(backbone, arguments.get('neck'), heads)
            if 'neck' in arguments or neck is not None:
                arguments['neck'] = neck
            for name in head_names:
                if arguments.get(name) is not None:
                    arguments[name] = heads[f'model.{name}']
    return rewrite


def patch_detectors() -> bool:
    """Install the width resolution into mmdet's detectors (idempotent). Returns whether it is
    active: only mmdet 3.3.x is patched."""
    import mmdet
    if not mmdet.__version__.startswith(SUPPORTED_MMDET):
        warnings.warn(f'mnet_backbone: mmdet {mmdet.__version__} is not {SUPPORTED_MMDET}x, so '
                      f'neck/head widths do not follow the MobileNetV1 backbone: write '
                      f'model.neck.in_channels etc. for your alpha/out_indices', stacklevel=2)
        return False
    from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
    for cls, heads in ((SingleStageDetector, ('bbox_head',)),
                       (TwoStageDetector, ('rpn_head', 'roi_head'))):
        _PATCH.install(cls, _rewrite_widths(heads))
    return True


def unpatch_detectors() -> None:
    """Restore mmdet's own ``__init__`` methods."""
    _PATCH.undo()


def is_patched() -> bool:
    return _PATCH.active
