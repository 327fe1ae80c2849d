"""torchvision detection models over the core MobileNetV1.

The backbone is always the core :class:`mnet_backbone.MobileNetV1` (``num_classes=0`` and the
stages in ``out_indices``), wrapped so it returns the ``OrderedDict`` of feature maps torchvision's
detectors expect. Everything else is torchvision's: ``FeaturePyramidNetwork``, ``SSD``,
``SSDHead``, ``SSDLiteHead`` and its extra blocks, ``FasterRCNN``, the anchor generators. Only the
SSD300 extra layers (plain 1x1 + 3x3 stride-2 convolutions, as in TF's ``ssd_mobilenet_v1``) are
assembled here, from torchvision's ``Conv2dNormActivation``.

Builders (registered with torchvision): :func:`ssd300_mobilenet_v1`,
:func:`ssdlite320_mobilenet_v1`, :func:`fasterrcnn_mobilenet_v1_fpn`,
:func:`fasterrcnn_mobilenet_v1_320_fpn`; backbone helper: :func:`mobilenet_v1_backbone`.

No ``from __future__ import annotations``: torchvision reads the builders' ``weights``
annotations at run time.
"""
import warnings
from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import boxes as box_ops
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import (ExtraFPNBlock, FeaturePyramidNetwork,
                                                     LastLevelMaxPool)

from ..model import SSD_EXTRA_CHANNELS, TABLE_1, MobileNetV1, detector_widths
from ..postprocess import as_list, ssd_detections
from . import _compat
from .. import weights as _weights
from ..weights.settings import merge_kwargs
from .classification import MobileNet_V1_Weights, UnknownWeightsError, torchvision_mismatch

_TV = _compat.load()

__all__ = [
    "BatchedSSD", "MobileNetV1Features", "MobileNetV1FPN", "MobileNetV1LastStage",
    "PointwiseSSDHead", "mobilenet_v1_backbone",
    "ssd300_mobilenet_v1", "ssdlite320_mobilenet_v1", "fasterrcnn_mobilenet_v1_fpn",
    "fasterrcnn_mobilenet_v1_320_fpn", "SSD300_MobileNet_V1_Weights",
    "SSDLite320_MobileNet_V1_Weights", "FasterRCNN_MobileNet_V1_FPN_Weights",
    "FasterRCNN_MobileNet_V1_320_FPN_Weights", "NUM_STAGES",
]

NUM_STAGES = len(TABLE_1)  # 5 stages, ending at strides 2, 4, 8, 16, 32


class _DetectionWeights(_TV.WeightsEnum):
    """Detection weights enums; none of them has members yet (no COCO checkpoints exist)."""

    @classmethod
    def verify(cls, obj: Any) -> Any:
        if isinstance(obj, MobileNet_V1_Weights):
            raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but "
                            f"received {type(obj).__name__}. ImageNet classifier weights go to "
                            f"`weights_backbone=`, not `weights=`.")
        if type(obj) is str and obj.replace(cls.__name__ + ".", "") not in cls.__members__:
            raise UnknownWeightsError(
                f"{cls.__name__} has no weights {obj!r}; available: {list(cls.__members__)} "
                f"(no COCO-trained MobileNetV1 detectors are published; use "
                f"`weights_backbone=` for ImageNet backbone weights)")
        return super().verify(obj)


class SSD300_MobileNet_V1_Weights(_DetectionWeights):
    """Weights for :func:`ssd300_mobilenet_v1` (none published yet)."""


class SSDLite320_MobileNet_V1_Weights(_DetectionWeights):
    """Weights for :func:`ssdlite320_mobilenet_v1` (none published yet)."""


class FasterRCNN_MobileNet_V1_FPN_Weights(_DetectionWeights):
    """Weights for :func:`fasterrcnn_mobilenet_v1_fpn` (none published yet)."""


class FasterRCNN_MobileNet_V1_320_FPN_Weights(_DetectionWeights):
    """Weights for :func:`fasterrcnn_mobilenet_v1_320_fpn` (none published yet)."""


class BatchedSSD(_TV.SSD):
    """torchvision's ``SSD`` whose post-processing runs over the whole batch at once.

    ``postprocess_detections`` gives the detections of torchvision's (a Python loop over images
    and classes: most of the inference time at batch 32 on a GPU) with one ``topk`` for all
    images and classes and one NMS kernel call per group (:func:`mnet_backbone.postprocess.
    ssd_detections`, which says where equal scores may come out otherwise). Everything else,
    the state dict included, is torchvision's ``SSD``."""

    def postprocess_detections(self, head_outputs: Dict[str, Tensor],
                               image_anchors: List[Tensor],
                               image_shapes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        deltas = head_outputs["bbox_regression"]
        batch, n = deltas.shape[0], deltas.shape[1]
        anchors = torch.stack(image_anchors).reshape(-1, 4)
        boxes = self.box_coder.decode_single(deltas.reshape(-1, 4), anchors).reshape(batch, n, 4)
        same_size = True
        for shape in image_shapes:
            same_size = same_size and shape == image_shapes[0]
        if same_size:
            boxes = box_ops.clip_boxes_to_image(boxes, image_shapes[0])
        else:
            clipped: List[Tensor] = []
            for image_boxes, shape in zip(boxes, image_shapes):
                clipped.append(box_ops.clip_boxes_to_image(image_boxes, shape))
            boxes = torch.stack(clipped)
        scores = torch.softmax(head_outputs["cls_logits"], dim=-1)
        return as_list(ssd_detections(boxes, scores, self.score_thresh, self.nms_thresh,
                                      self.topk_candidates, self.detections_per_img))


# ---------------------------------------------------------------------------------------------
# Backbone wrappers: the core model in, torchvision's feature conventions out.


class MobileNetV1Features(nn.Module):
    """Core MobileNetV1 stages (``body.out_indices``) plus optional ``extra`` blocks chained on
    the last one, returned as ``OrderedDict`` ``{"0": ..., "1": ...}`` (torchvision's SSD
    feature-extractor convention)."""

    def __init__(self, body: MobileNetV1, extra: Optional[nn.ModuleList] = None):
        super().__init__()
        self.body = body
        self.extra = extra if extra is not None else nn.ModuleList()

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        features = self.body.forward_features(x)
        y = features[-1]
        for block in self.extra:
            y = block(y)
            features.append(y)
        return OrderedDict([(str(i), f) for i, f in enumerate(features)])


class MobileNetV1FPN(nn.Module):
    """Core MobileNetV1 stages into torchvision's ``FeaturePyramidNetwork`` (the
    ``BackboneWithFPN`` of ``backbone_utils``, without ``IntermediateLayerGetter``)."""

    def __init__(self, body: MobileNetV1, out_channels: int = 256,
                 extra_blocks: Optional[ExtraFPNBlock] = None,
                 norm_layer: Optional[Callable[..., nn.Module]] = None):
        super().__init__()
        self.body = MobileNetV1Features(body)
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[body.out_channels[i] for i in body.out_indices],
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
            norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        return self.fpn(self.body(x))


class MobileNetV1LastStage(nn.Module):
    """The last stage in ``body.out_indices`` as one tensor (for single-map detectors)."""

    def __init__(self, body: MobileNetV1):
        super().__init__()
        self.body = body
        self.out_channels = body.out_channels[body.out_indices[-1]]

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_features(x)[-1]


# ---------------------------------------------------------------------------------------------
# Argument handling shared by the builders.


def validate_trainable_layers(is_trained: bool, trainable_backbone_layers: Optional[int],
                              max_value: int, default_value: int) -> int:
    """torchvision's ``_validate_trainable_layers`` rule (that helper is private)."""
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn(
                "Changing trainable_backbone_layers has no effect if neither weights nor "
                "weights_backbone are given (nothing pretrained to keep), falling back to "
                f"trainable_backbone_layers={max_value} so that all layers are trainable",
                stacklevel=2)
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    value = trainable_backbone_layers
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max_value:
        raise ValueError(f"Trainable backbone layers should be in the range [0,{max_value}], "
                         f"got {trainable_backbone_layers}")
    return trainable_backbone_layers


def _frozen_stages(trainable_layers: int) -> int:
    """``trainable_layers`` (last stages that train, 0..5) as the core's ``frozen_stages``."""
    if (isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int)
            or not 0 <= trainable_layers <= NUM_STAGES):
        raise ValueError(f"Trainable layers should be in the range [0,{NUM_STAGES}], "
                         f"got {trainable_layers}")
    return NUM_STAGES - 1 - trainable_layers


def _core_backbone(weights: Optional[MobileNet_V1_Weights], progress: bool,
                   norm_layer: Optional[Callable[..., nn.Module]], out_indices: List[int],
                   trainable_layers: int, alpha: Optional[float] = None,
                   backbone_kwargs: Optional[Dict[str, Any]] = None) -> MobileNetV1:
    """Core ``MobileNetV1(num_classes=0)`` with ImageNet ``weights`` loaded (classifier dropped).

    The weights fix ``alpha`` and their checkpoint's arguments (``tf_padding``, ``bn_eps``, ...);
    ``bn_eps`` is passed to ``norm_layer`` so a frozen or custom norm keeps the trained epsilon.
    """
    weights = MobileNet_V1_Weights.verify(weights)
    kwargs = dict(backbone_kwargs or {})
    for key in ("num_classes", "out_indices", "frozen_stages", "norm_layer"):
        if key in kwargs:
            raise ValueError(f"backbone_kwargs may not set {key!r}; the builder sets it")
    if alpha is not None:
        kwargs["alpha"] = alpha
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    kwargs.update(num_classes=0, out_indices=tuple(out_indices),
                  frozen_stages=_frozen_stages(trainable_layers))
    if weights is None:  # nothing fixed by weights; a backbone_kwargs bn_eps still reaches norms
        return MobileNetV1(**merge_kwargs(kwargs, {}))
    return _weights.build_model(weights.entry, kwargs, progress=progress, backbone_only=True,
                                mismatch=partial(torchvision_mismatch, weights))


def _check_returned_layers(returned_layers: List[int]) -> List[int]:
    returned_layers = list(returned_layers)
    if (not returned_layers or any(isinstance(i, bool) or not isinstance(i, int)
                                   for i in returned_layers)
            or min(returned_layers) < 0 or max(returned_layers) >= NUM_STAGES
            or sorted(set(returned_layers)) != returned_layers):
        raise ValueError(f"Each returned layer should be in the range [0,{NUM_STAGES - 1}] "
                         f"(stages at strides 2, 4, 8, 16, 32), increasing, got {returned_layers}")
    return returned_layers


def mobilenet_v1_backbone(
    *,
    weights: Optional[MobileNet_V1_Weights],
    fpn: bool,
    norm_layer: Callable[..., nn.Module] = misc_nn_ops.FrozenBatchNorm2d,
    trainable_layers: int = 2,
    returned_layers: Optional[List[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
    alpha: Optional[float] = None,
    progress: bool = True,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """A detection backbone over the core MobileNetV1, like ``backbone_utils.mobilenet_backbone``.

    Args:
        weights: ImageNet weights for the core model (:class:`MobileNet_V1_Weights`) or None.
        fpn: True: a ``FeaturePyramidNetwork`` over the ``returned_layers`` stages (256 channels,
            ``LastLevelMaxPool`` unless ``extra_blocks``); False: the last stage, then a 1x1
            convolution to 256 channels (one feature map).
        norm_layer: normalisation of the core's layers (``FrozenBatchNorm2d`` by default, as in
            torchvision; called with ``eps=`` when the weights fix it).
        trainable_layers: how many of the 5 stages, counted from the last, train (0..5).
        returned_layers: stages (0..4, strides 2..32) fed to the FPN; default ``[3, 4]`` (strides
            16 and 32, as torchvision's MobileNet FPN takes its last two stages).
        alpha: width multiplier (taken from ``weights`` when they are given).
        backbone_kwargs: further core ``MobileNetV1`` arguments (``tf_padding``, ``with_cp``...).
    """
    if fpn:
        returned_layers = _check_returned_layers(
            returned_layers if returned_layers is not None else [NUM_STAGES - 2, NUM_STAGES - 1])
        body = _core_backbone(weights, progress, norm_layer, returned_layers, trainable_layers,
                              alpha, backbone_kwargs)
        return MobileNetV1FPN(body, 256, extra_blocks)
    if returned_layers is not None or extra_blocks is not None:
        raise ValueError("returned_layers and extra_blocks only apply with fpn=True")
    body = _core_backbone(weights, progress, norm_layer, [NUM_STAGES - 1], trainable_layers,
                          alpha, backbone_kwargs)
    out_channels = 256
    model = nn.Sequential(MobileNetV1LastStage(body),
                          nn.Conv2d(body.out_channels[-1], out_channels, 1))
    model.out_channels = out_channels
    return model


def _detection_setup(weights: Any, weights_enum: type, weights_backbone: Any,
                     num_classes: Optional[int], trainable_backbone_layers: Optional[int],
                     default_trainable: int):
    weights = weights_enum.verify(weights)
    weights_backbone = MobileNet_V1_Weights.verify(weights_backbone)
    if weights is not None:  # pragma: no cover - no detection weights are published yet
        weights_backbone = None
        num_classes = _overwrite_value_param("num_classes", num_classes,
                                             len(weights.meta["categories"]))
    elif num_classes is None:
        num_classes = 91
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (it includes the background class), "
                         f"got {num_classes!r}")
    trainable = validate_trainable_layers(weights is not None or weights_backbone is not None,
                                          trainable_backbone_layers, NUM_STAGES, default_trainable)
    return weights, weights_backbone, num_classes, trainable


def _with_detection_weights(model: nn.Module, weights: Any, progress: bool) -> nn.Module:
    if weights is not None:  # pragma: no cover - no detection weights are published yet
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


def _overwrite_value_param(param: str, actual: Any, expected: Any) -> Any:
    if actual is not None and actual != expected:
        raise ValueError(f"The parameter '{param}' expected value {expected} but got {actual} "
                         f"instead.")
    return expected


def _input_normalisation(weights_backbone: Optional[MobileNet_V1_Weights]) -> Dict[str, Any]:
    """``image_mean``/``image_std`` the backbone was trained with ([-1, 1] by default, as Keras
    and torchvision's SSDLite)."""
    if weights_backbone is None:
        return {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    entry = weights_backbone.entry
    return {"image_mean": list(entry.mean), "image_std": list(entry.std)}


def _ssd_extra_block(in_channels: int, out_channels: int,
                     norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """TF ``ssd_mobilenet_v1`` extra layer: 1x1 to half the channels, 3x3 stride-2 conv."""
    conv = partial(misc_nn_ops.Conv2dNormActivation, norm_layer=norm_layer,
                   activation_layer=nn.ReLU6)
    return nn.Sequential(conv(in_channels, out_channels // 2, kernel_size=1),
                         conv(out_channels // 2, out_channels, kernel_size=3, stride=2))


class PointwiseSSDHead(_TV.SSDHead):
    """torchvision's ``SSDHead`` with 1x1 instead of 3x3 class/box predictors (TF's
    ``ssd_mobilenet_v1`` box predictor, the paper's 6.8M-parameter SSD300)."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], num_classes: int):
        nn.Module.__init__(self)  # SSDHead.__init__ would build the 3x3 predictors

        def predictors(columns: int) -> nn.ModuleList:
            convs = nn.ModuleList(nn.Conv2d(c, columns * a, kernel_size=1)
                                  for c, a in zip(in_channels, num_anchors))
            _xavier_init(convs)
            return convs

        self.classification_head = _TV.SSDScoringHead(predictors(num_classes), num_classes)
        self.regression_head = _TV.SSDScoringHead(predictors(4), 4)


def _xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _ssd_features(body: MobileNetV1, lite: bool, alpha: float,
                  norm_layer: Callable[..., nn.Module]) -> MobileNetV1Features:
    """The backbone plus the four extra maps of TF's ssd_mobilenet_v1 (512, 256, 256, 128 at
    alpha 1), widths from the one helper the mmdet configs use too."""
    make = _TV._extra_block if lite else _ssd_extra_block
    widths = detector_widths(alpha, body.out_indices, SSD_EXTRA_CHANNELS)
    channels = [widths.backbone[-1], *widths.extras]
    extra = nn.ModuleList(make(cin, cout, norm_layer) for cin, cout in zip(channels, channels[1:]))
    (_TV._normal_init if lite else _xavier_init)(extra)
    return MobileNetV1Features(body, extra)


def _ssd(*, lite: bool, size: int, weights: Any, weights_enum: type, progress: bool,
         num_classes: Optional[int], weights_backbone: Optional[MobileNet_V1_Weights],
         trainable_backbone_layers: Optional[int], alpha: Optional[float],
         norm_layer: Optional[Callable[..., nn.Module]],
         backbone_kwargs: Optional[Dict[str, Any]], kwargs: Dict[str, Any],
         predictor_kernel_size: int = 3) -> nn.Module:
    if predictor_kernel_size not in (1, 3):
        raise ValueError(f"predictor_kernel_size must be 1 or 3, got {predictor_kernel_size!r}")
    weights, weights_backbone, num_classes, trainable = _detection_setup(
        weights, weights_enum, weights_backbone, num_classes, trainable_backbone_layers,
        NUM_STAGES)
    if "size" in kwargs:
        warnings.warn("The size of the model is already fixed; ignoring the parameter.",
                      stacklevel=2)
        kwargs = {k: v for k, v in kwargs.items() if k != "size"}
    if norm_layer is None:
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    # Stages 3 and 4 (strides 16 and 32: TF's Conv2d_11 and Conv2d_13), then 4 extra maps.
    body = _core_backbone(weights_backbone, progress, norm_layer, [3, 4], trainable, alpha,
                          backbone_kwargs)
    if lite and weights_backbone is None:
        _TV._normal_init(body)  # torchvision's SSDLite initialisation when training from scratch
    backbone = _ssd_features(body, lite, body.alpha, norm_layer)
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2,
                                           max_ratio=0.95)
    defaults: Dict[str, Any] = dict(_input_normalisation(weights_backbone))
    head = None
    if lite or predictor_kernel_size == 1:
        from torchvision.models.detection import _utils as det_utils
        out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
        num_anchors = anchor_generator.num_anchors_per_location()
        if lite:
            defaults.update(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300,
                            topk_candidates=300)
            head = _TV.SSDLiteHead(out_channels, num_anchors, num_classes, norm_layer)
        else:
            head = PointwiseSSDHead(out_channels, num_anchors, num_classes)
    model = BatchedSSD(backbone, anchor_generator, (size, size), num_classes, head=head,
                **{**defaults, **kwargs})
    return _with_detection_weights(model, weights, progress)


def ssd300_mobilenet_v1(
    *,
    weights: Optional[SSD300_MobileNet_V1_Weights] = None,
    progress: bool = True,
    num_classes: Optional[int] = None,
    weights_backbone: Optional[MobileNet_V1_Weights] = None,
    trainable_backbone_layers: Optional[int] = None,
    alpha: Optional[float] = None,
    norm_layer: Optional[Callable[..., nn.Module]] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    predictor_kernel_size: int = 1,
    **kwargs: Any,
) -> nn.Module:
    """SSD300 (`Liu et al. 2016 <https://arxiv.org/abs/1512.02325>`_) with a MobileNetV1
    backbone, laid out as TF's ``ssd_mobilenet_v1`` (the paper's COCO detector): feature maps
    at strides 16 and 32 plus four extra 1x1/3x3 blocks (19, 10, 5, 3, 2, 1 cells at 300px),
    6 anchors per cell (scales 0.2-0.95, ratios 1, 2, 3 and inverses) and 1x1 class/box
    predictors (:class:`PointwiseSSDHead`; ``predictor_kernel_size=3``: torchvision's
    ``SSDHead``).

    Args:
        weights: detection weights (:class:`SSD300_MobileNet_V1_Weights`; none published).
        progress: show download progress bars.
        num_classes: classes including background (default 91, as torchvision).
        weights_backbone (MobileNet_V1_Weights, optional): ImageNet weights for the backbone.
            Default None: unlike torchvision, nothing is downloaded unless asked for.
        trainable_backbone_layers: backbone stages (0..5, from the last) that train; default 5;
            without pretrained weights all 5 train (torchvision's rule).
        alpha: width multiplier of the backbone and the extra layers (from ``weights_backbone``
            when given; default 1.0).
        norm_layer: normalisation for the backbone and extra layers (default
            ``BatchNorm2d(eps=0.001, momentum=0.03)``).
        backbone_kwargs: further core ``MobileNetV1`` arguments (``tf_padding``, ``with_cp``...).
        predictor_kernel_size: 1 (TF's box predictor) or 3 (torchvision's ``SSDHead``).
        **kwargs: passed to ``torchvision.models.detection.ssd.SSD``.
    """
    return _ssd(lite=False, size=300, weights=weights, weights_enum=SSD300_MobileNet_V1_Weights,
                progress=progress, num_classes=num_classes, weights_backbone=weights_backbone,
                trainable_backbone_layers=trainable_backbone_layers, alpha=alpha,
                norm_layer=norm_layer, backbone_kwargs=backbone_kwargs, kwargs=kwargs,
                predictor_kernel_size=predictor_kernel_size)


def ssdlite320_mobilenet_v1(
    *,
    weights: Optional[SSDLite320_MobileNet_V1_Weights] = None,
    progress: bool = True,
    num_classes: Optional[int] = None,
    weights_backbone: Optional[MobileNet_V1_Weights] = None,
    trainable_backbone_layers: Optional[int] = None,
    alpha: Optional[float] = None,
    norm_layer: Optional[Callable[..., nn.Module]] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> nn.Module:
    """SSDLite at 320x320 (MobileNetV2 paper, section 6.2) with a MobileNetV1 backbone, built as
    torchvision's ``ssdlite320_mobilenet_v3_large``: maps at strides 16 and 32, torchvision's
    depthwise extra blocks and ``SSDLiteHead``, its anchors and post-processing defaults.

    Arguments as :func:`ssd300_mobilenet_v1` (the head is always ``SSDLiteHead``); ``**kwargs``
    go to ``SSD``.
    """
    return _ssd(lite=True, size=320, weights=weights,
                weights_enum=SSDLite320_MobileNet_V1_Weights, progress=progress,
                num_classes=num_classes, weights_backbone=weights_backbone,
                trainable_backbone_layers=trainable_backbone_layers, alpha=alpha,
                norm_layer=norm_layer, backbone_kwargs=backbone_kwargs, kwargs=kwargs)


def _fasterrcnn(*, weights: Any, weights_enum: type, progress: bool, num_classes: Optional[int],
                weights_backbone: Optional[MobileNet_V1_Weights],
                trainable_backbone_layers: Optional[int], alpha: Optional[float],
                backbone_kwargs: Optional[Dict[str, Any]], kwargs: Dict[str, Any]) -> FasterRCNN:
    weights, weights_backbone, num_classes, trainable = _detection_setup(
        weights, weights_enum, weights_backbone, num_classes, trainable_backbone_layers, 3)
    is_trained = weights is not None or weights_backbone is not None
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = mobilenet_v1_backbone(weights=weights_backbone, fpn=True, norm_layer=norm_layer,
                                     trainable_layers=trainable, alpha=alpha, progress=progress,
                                     backbone_kwargs=backbone_kwargs)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    defaults = _input_normalisation(weights_backbone)
    model = FasterRCNN(backbone, num_classes,
                       rpn_anchor_generator=AnchorGenerator(anchor_sizes, aspect_ratios),
                       **{**defaults, **kwargs})
    return _with_detection_weights(model, weights, progress)


def fasterrcnn_mobilenet_v1_fpn(
    *,
    weights: Optional[FasterRCNN_MobileNet_V1_FPN_Weights] = None,
    progress: bool = True,
    num_classes: Optional[int] = None,
    weights_backbone: Optional[MobileNet_V1_Weights] = None,
    trainable_backbone_layers: Optional[int] = None,
    alpha: Optional[float] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a MobileNetV1 FPN backbone, built as torchvision's
    ``fasterrcnn_mobilenet_v3_large_fpn``: FPN over the stride-16 and stride-32 stages plus
    max-pool level, anchors (32..512) x (0.5, 1, 2) on each of the 3 maps, ``rpn_score_thresh``
    0.05; backbone BN frozen when pretrained.

    Args as :func:`ssd300_mobilenet_v1` (``trainable_backbone_layers`` default 3 of 5);
    ``**kwargs`` go to ``FasterRCNN``.
    """
    return _fasterrcnn(weights=weights, weights_enum=FasterRCNN_MobileNet_V1_FPN_Weights,
                       progress=progress, num_classes=num_classes,
                       weights_backbone=weights_backbone,
                       trainable_backbone_layers=trainable_backbone_layers, alpha=alpha,
                       backbone_kwargs=backbone_kwargs,
                       kwargs={"rpn_score_thresh": 0.05, **kwargs})


def fasterrcnn_mobilenet_v1_320_fpn(
    *,
    weights: Optional[FasterRCNN_MobileNet_V1_320_FPN_Weights] = None,
    progress: bool = True,
    num_classes: Optional[int] = None,
    weights_backbone: Optional[MobileNet_V1_Weights] = None,
    trainable_backbone_layers: Optional[int] = None,
    alpha: Optional[float] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Low-resolution :func:`fasterrcnn_mobilenet_v1_fpn` for mobile use, as torchvision's
    ``fasterrcnn_mobilenet_v3_large_320_fpn``: images resized to 320 (max 640), 150 RPN
    proposals before and after NMS at test time."""
    defaults = {"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150,
                "rpn_post_nms_top_n_test": 150, "rpn_score_thresh": 0.05}
    return _fasterrcnn(weights=weights, weights_enum=FasterRCNN_MobileNet_V1_320_FPN_Weights,
                       progress=progress, num_classes=num_classes,
                       weights_backbone=weights_backbone,
                       trainable_backbone_layers=trainable_backbone_layers, alpha=alpha,
                       backbone_kwargs=backbone_kwargs, kwargs={**defaults, **kwargs})


BUILDERS = (ssd300_mobilenet_v1, ssdlite320_mobilenet_v1, fasterrcnn_mobilenet_v1_fpn,
            fasterrcnn_mobilenet_v1_320_fpn)
WEIGHTS_ENUMS = (SSD300_MobileNet_V1_Weights, SSDLite320_MobileNet_V1_Weights,
                 FasterRCNN_MobileNet_V1_FPN_Weights, FasterRCNN_MobileNet_V1_320_FPN_Weights)
