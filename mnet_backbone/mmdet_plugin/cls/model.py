"""A classifier for mmengine's Runner: a registered backbone (the core ``MobileNetV1``) and a
global-pool + dropout + linear head, with ``loss`` / ``predict`` / ``tensor`` modes.

The network itself is the core model, built through mmdet's registry
(``backbone=dict(type='MobileNetV1', ...)``); the head adds only the classifier the backbone
leaves out (``num_classes=0``), under the same names (``head.fc``) so this package's classifier
weights load into it. Checkpoints in the core's layout (``stages.*``, ``fc.*``: converted or
``mnet://`` weights, ``MobileNetV1.state_dict()``) are renamed on load; a classifier of another
width or class count is an error that says which setting to change.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel, BaseModule
from mmdet.registry import MODELS
from torch import Tensor, nn

from ...weights.hub import IncompatibleWeightsError
from .data import ClsDataSample

__all__ = ['ImageClassifier', 'LinearClsHead', 'core_to_classifier_keys']


@MODELS.register_module()
class LinearClsHead(BaseModule):
    """Global average pooling, dropout and a linear classifier on the last feature map.

    Args:
        num_classes: classes to predict.
        in_channels: channels of the last feature map; ``None`` lets :class:`ImageClassifier`
            fill it in from the backbone (``1024 * alpha`` for MobileNetV1).
        dropout: dropout before the classifier (TF-slim and Keras trained MobileNetV1 with
            keep probability 0.999, i.e. 1e-3).
        label_smoothing: for the cross-entropy loss; the MobileNet paper uses none (0).
        loss_weight: multiplies the loss.
        init_cfg: defaults to the core model's initialisation of its classifier (N(0, 0.01),
            zero bias).
    """

    def __init__(self, num_classes: int, in_channels: Optional[int] = None,
                 dropout: float = 1e-3, label_smoothing: float = 0.0, loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'LinearClsHead: num_classes must be an int >= 1, got '
                             f'{num_classes!r}')
        if in_channels is None:
            raise ValueError('LinearClsHead: in_channels is None; give it, or build the head '
                             'inside ImageClassifier, which takes it from the backbone')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'LinearClsHead: dropout must be in [0, 1), got {dropout!r}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.label_smoothing = label_smoothing
        self.loss_weight = loss_weight
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        x = feats[-1] if isinstance(feats, (list, tuple)) else feats
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.loss_weight * F.cross_entropy(logits, labels,
                                                  label_smoothing=self.label_smoothing)


def core_to_classifier_keys(state_dict: dict, prefix: str = '') -> bool:
    """Rename the core model's keys (``stages.*``, ``fc.*``) under ``prefix`` to the classifier's
    (``backbone.stages.*``, ``head.fc.*``) in place; True if anything was renamed."""
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


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Backbone + :class:`LinearClsHead`, trained and evaluated by mmengine's Runner.

    Args:
        backbone: registry config of the backbone, e.g. ``dict(type='MobileNetV1', alpha=0.5,
            out_indices=(4,))``; fine-tune from ImageNet weights with its
            ``init_cfg=dict(type='Pretrained', checkpoint='mnet://keras_0.5_224')``.
        head: registry config of the head (``type='LinearClsHead'``, ``num_classes``);
            ``in_channels`` is taken from the backbone when not given.
        data_preprocessor: defaults to ``ImgDataPreprocessor`` with ``mean=std=127.5`` and BGR
            to RGB, the [-1, 1] RGB input MobileNetV1 was trained on (TF-slim, Keras, timm).
        init_cfg: mmengine init config of the whole classifier.

    ``forward(inputs, data_samples, mode)``: ``'tensor'`` gives the logits, ``'loss'``
    ``dict(loss=...)`` (cross entropy), ``'predict'`` the data samples with ``pred_score``
    (softmax) and ``pred_label``.
    """

    def __init__(self, backbone: dict, head: dict, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImgDataPreprocessor', mean=[127.5] * 3,
                                     std=[127.5] * 3, bgr_to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        head = dict(head)
        head.setdefault('type', 'LinearClsHead')
        if head.get('in_channels') is None:
            head['in_channels'] = self._backbone_channels()
        self.head = MODELS.build(head)
        register = getattr(self, 'register_load_state_dict_pre_hook', None)
        if register is not None:
            register(ImageClassifier._load_core_layout)
        else:  # torch < 2.5
            self._register_load_state_dict_pre_hook(ImageClassifier._load_core_layout,
                                                    with_module=True)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def _backbone_channels(self) -> int:
        out_channels = getattr(self.backbone, 'out_channels', None)
        out_indices = getattr(self.backbone, 'out_indices', None)
        if out_channels is None or not out_indices:
            raise ValueError(f'ImageClassifier: cannot tell the output channels of '
                             f'{type(self.backbone).__name__}; give head.in_channels')
        return out_channels[out_indices[-1]]

    def _load_core_layout(self, state_dict, prefix, local_metadata, strict, missing_keys,
                          unexpected_keys, error_msgs) -> None:
        # A pre-hook of load_state_dict (torch and mmengine): core-layout checkpoints are renamed
        # and every shape is checked here, because mmengine loads with strict=False and would
        # only log a mismatch (leaving, e.g., a head of the wrong class count untouched).
        core_to_classifier_keys(state_dict, prefix)
        for key, value in self.state_dict().items():
            theirs = state_dict.get(prefix + key)
            if not isinstance(theirs, Tensor) or theirs.shape == value.shape:
                continue
            if key.startswith('head.fc.'):
                n = theirs.shape[0]
                raise IncompatibleWeightsError(
                    f'the checkpoint\'s classifier has {n} classes but the model has '
                    f'model.head.num_classes={self.head.num_classes} (mismatch at {key}: '
                    f'checkpoint {tuple(theirs.shape)}, model {tuple(value.shape)}). Set '
                    f'model.head.num_classes={n} to use its classifier, or load only its '
                    f'backbone for a new classifier: model.backbone.init_cfg=dict('
                    f"type='Pretrained', checkpoint=..., prefix='backbone.') for a classifier "
                    f"checkpoint, or checkpoint='mnet://...' for ImageNet weights")
            alpha = getattr(self.backbone, 'alpha', None)
            raise IncompatibleWeightsError(
                f'the checkpoint does not fit the model: {key} is {tuple(theirs.shape)} in the '
                f'checkpoint but {tuple(value.shape)} in the model (backbone alpha={alpha}); '
                f'build the backbone with the width the checkpoint was trained with')

    def extract_feat(self, inputs: Tensor):
        return self.backbone(inputs)

    def forward(self, inputs: Tensor, data_samples: Optional[List[ClsDataSample]] = None,
                mode: str = 'tensor'):
        logits = self.head(self.extract_feat(inputs))
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            if not data_samples or 'gt_label' not in data_samples[0]:
                raise ValueError("ImageClassifier: mode='loss' needs data samples with gt_label")
            labels = torch.stack([s.gt_label for s in data_samples]).to(logits.device)
            if labels.min() < 0 or labels.max() >= logits.shape[1]:
                raise ValueError(f'ImageClassifier: labels {labels.min().item()}..'
                                 f'{labels.max().item()} do not fit the head\'s '
                                 f'{logits.shape[1]} classes (model.head.num_classes)')
            return dict(loss=self.head.loss(logits, labels))
        if mode == 'predict':
            scores = F.softmax(logits.float(), dim=1)
            if data_samples is None:
                data_samples = [ClsDataSample() for _ in range(len(scores))]
            for sample, score in zip(data_samples, scores):
                sample.pred_score = score
                sample.pred_label = score.argmax()
            return data_samples
        raise ValueError(f"ImageClassifier: mode must be 'tensor', 'loss' or 'predict', got "
                         f'{mode!r}')
