"""The core MobileNetV1 with the OpenMMLab conventions mmdet and mmpretrain share.

mmcv layer configs (``conv_cfg`` / ``norm_cfg`` / ``act_cfg``), mmengine's ``init_cfg`` (with
``mnet://`` entries and weight files through :mod:`.pretrained`), ``frozen_stages``,
``norm_eval``, ``with_cp`` and a tuple of feature maps. Not registered here: the mmdet face
registers this class in mmdet's ``MODELS``; the mmpretrain face a subclass with mmpretrain's
defaults. Its direct base is the core model: the architecture exists once.
"""
import copy
import warnings
from typing import Optional, Sequence, Tuple

from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from .. import model as core


class MobileNetV1(core.MobileNetV1, BaseModule):
    """MobileNetV1 backbone for OpenMMLab (the core model, built from mmcv layer configs).

    Args:
        alpha: width multiplier (channels ``max(int(c * alpha), 8)``).
        out_indices: stages to return (0-4, strides 2, 4, 8, 16, 32; channels 64, 128, 256, 512,
            1024 times alpha). SSD uses (3, 4), FPN detectors (1, 2, 3, 4).
        frozen_stages: stages 0..frozen_stages are frozen (-1: none).
        conv_cfg, norm_cfg, act_cfg: mmcv layer configs (released weights use ReLU6).
        norm_eval: keep BN layers in eval mode while training.
        with_cp: gradient checkpointing per block.
        separable, shallow, tf_padding: the paper's variants and TF padding (see the core model).
        pretrained: deprecated, use ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')`` to take the backbone out of a detector checkpoint.
    """

    def __init__(self, alpha: float = 1.0, out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1, conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'), act_cfg: dict = dict(type='ReLU6'),
                 norm_eval: bool = False, with_cp: bool = False, separable: bool = True,
                 shallow: bool = False, tf_padding: bool = False,
                 pretrained: Optional[str] = None, init_cfg=None):
        if pretrained is not None and init_cfg is not None:
            raise ValueError('MobileNetV1: give either init_cfg or the deprecated pretrained, '
                             'not both')
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'MobileNetV1: pretrained must be a checkpoint path or URL, got '
                                f'{type(pretrained).__name__}')
            warnings.warn('MobileNetV1: pretrained= is deprecated, use '
                          'init_cfg=dict(type="Pretrained", checkpoint=...)', DeprecationWarning,
                          stacklevel=2)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        norm_cfg, act_cfg = copy.deepcopy(norm_cfg), copy.deepcopy(act_cfg)
        super().__init__(
            num_classes=0, alpha=alpha, separable=separable, shallow=shallow,
            out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
            with_cp=with_cp, tf_padding=tf_padding,
            conv_layer=lambda *args, **kwargs: build_conv_layer(conv_cfg, *args, **kwargs),
            norm_layer=lambda channels: build_norm_layer(norm_cfg, channels)[1],
            act_layer=lambda: build_activation_layer(act_cfg))
        # BaseModule.__init__ ran inside the core's super().__init__() with no init_cfg.
        self.init_cfg = copy.deepcopy(init_cfg)

    def init_weights(self) -> None:
        # mnet:// weights: check they fit, switch padding / BN eps to theirs (Keras: TF SAME, 1e-3).
        from .pretrained import prepare_pretrained
        if self.init_cfg is not None:
            prepare_pretrained(self, self.init_cfg)
        super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.forward_features(x))

