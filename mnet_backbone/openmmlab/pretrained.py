"""The ``mnet://`` checkpoint scheme: pretrained MobileNetV1 weights by name in mmdet configs.

    backbone=dict(type='MobileNetV1', init_cfg=dict(type='Pretrained',
                                                    checkpoint='mnet://keras_1.0_224'))

``mnet://<entry>`` is a registered entry of :mod:`mnet_backbone.weights` (downloaded, converted
and cached once); ``mnet://<path>`` is a local file of any supported source (Keras ``.h5``, timm
``.safetensors``, sequential or plain ``.pth``), ``mnet://https://...`` a URL of one (downloaded
once); :func:`mnet_backbone.weights.locate` decides which. The classifier is left out: mmdet
uses the backbone. Before the weights are loaded, :meth:`MobileNetV1.init_weights` checks that
they fit (width) and switches the backbone to the padding and BN eps they need (Keras: TF
"SAME" padding, eps 1e-3), logging a warning that says which config settings make that
explicit.
"""
import logging
from functools import lru_cache
from typing import Dict, List, Tuple

from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader

from ..weights import Located, UnknownEntryError, apply_model_kwargs, locate
from ..weights.load import load
from ..weights.loaded import check_fit

SCHEME = 'mnet://'

__all__ = ['SCHEME', 'load_from_mnet', 'resolve_mnet', 'prepare_pretrained']


@lru_cache(maxsize=2)
def _resolve(located: Located, key: tuple) -> Tuple[Dict, dict, str]:
    backbone = load(located).without_classifier()
    return backbone.state_dict, backbone.model_kwargs, backbone.description


def resolve_mnet(checkpoint: str) -> Tuple[Dict, dict, str]:
    """``(backbone state_dict, model_kwargs, description)`` for ``mnet://<entry, path or URL>``.

    Cached (by :attr:`Located.key`: an edited file is read again), so the check in
    ``init_weights`` and the load that follows convert only once.
    """
    target = checkpoint[len(SCHEME):] if checkpoint.startswith(SCHEME) else checkpoint
    try:
        located = locate(target)
    except UnknownEntryError as exc:
        raise UnknownEntryError(f'{checkpoint!r}: {exc}') from None
    return _resolve(located, located.key)


def load_from_mnet(filename: str, map_location=None) -> dict:
    """mmengine checkpoint loader for ``mnet://`` (logged as "Loads checkpoint by mnet backend")."""
    state_dict, model_kwargs, what = resolve_mnet(filename)
    if map_location not in (None, 'cpu'):
        state_dict = {k: v.to(map_location) for k, v in state_dict.items()}
    return {'state_dict': dict(state_dict),
            'meta': {'mnet_backbone': {'weights': what, 'model_kwargs': model_kwargs}}}


def _mnet_checkpoints(init_cfg) -> List[str]:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return [cfg['checkpoint'] for cfg in cfgs
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
            and cfg.get('prefix') is None
            and str(cfg.get('checkpoint', '')).startswith(SCHEME)]


def prepare_pretrained(module, init_cfg) -> None:
    """Check ``mnet://`` weights against ``module`` and switch its padding / BN eps to theirs."""
    for checkpoint in _mnet_checkpoints(init_cfg):
        state_dict, model_kwargs, what = resolve_mnet(checkpoint)
        check_fit(module, state_dict, what, strict=False)
        changed = apply_model_kwargs(module, model_kwargs, what, warn=False)
        if changed:
            explicit = []
            if 'tf_padding' in model_kwargs:
                explicit.append(f"tf_padding={model_kwargs['tf_padding']}")
            if 'bn_eps' in model_kwargs:
                explicit.append(f"norm_cfg=dict(type='BN', eps={model_kwargs['bn_eps']})")
            print_log(f'MobileNetV1: {what} need {", ".join(changed)}; switched the backbone '
                      f'to them. Set {", ".join(explicit)} in the backbone config to make this '
                      f'explicit.', logger='current', level=logging.WARNING)


CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_from_mnet, force=True)
