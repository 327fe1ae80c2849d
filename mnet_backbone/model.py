"""MobileNetV1, the one model definition of this package.

Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications" (https://arxiv.org/abs/1704.04861).

The network is the paper's Table 1: a full 3x3 stride-2 convolution, then 13 depthwise-separable
blocks (3x3 depthwise + BN + activation, 1x1 pointwise + BN + activation), global average pooling,
dropout and a fully connected classifier. The table is kept as data (:data:`TABLE_1`) and turned
into a per-layer plan (:func:`plan_blocks`) that both the model and the cost counter read, so the
two cannot drift apart.

Paper knobs:

* width multiplier ``alpha``: every layer's channel count is ``max(int(c * alpha), 8)`` (TF-slim's
  ``depth_multiplier`` with ``min_depth=8``; for alpha in {0.25, 0.5, 0.75, 1.0} this equals Keras'
  ``int(c * alpha)``, so Google's released weights fit).
* resolution multiplier ``rho``: only changes the input size, see :func:`input_size`.
* ``separable=False``: "Conv MobileNet" of Table 4, every block a full 3x3 convolution.
* ``shallow=True``: Table 5's shallow net, the five 14x14x512 blocks removed.

This module imports torch only; the mmdet and torchvision adapters wrap it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

__all__ = [
    "MobileNetV1", "TABLE_1", "BlockSpec", "plan_blocks", "scale_channels", "input_size",
    "STAGE_STRIDES", "PAPER_RHOS", "PAPER_RESOLUTIONS", "MIN_INPUT_SIZE", "stage_channels",
    "DetectorWidths", "detector_widths", "SSD_EXTRA_CHANNELS", "ACTIVATIONS",
    "InvalidSettingError",
]

# Table 1 as data, grouped into the five stages that end at strides 2, 4, 8, 16 and 32.
# Each entry is (separable, output channels at alpha=1, stride). The paper prints "s2" for the last
# depthwise layer, but its own table gives 7x7 in and out: that is a typo and the stride is 1 (as in
# every released implementation).
TABLE_1: Tuple[Tuple[Tuple[bool, int, int], ...], ...] = (
    ((False, 32, 2), (True, 64, 1)),
    ((True, 128, 2), (True, 128, 1)),
    ((True, 256, 2), (True, 256, 1)),
    ((True, 512, 2),) + ((True, 512, 1),) * 5,
    ((True, 1024, 2), (True, 1024, 1)),
)
STAGE_STRIDES = (2, 4, 8, 16, 32)
# Table 5's shallow MobileNet keeps only the stride-2 block of stage 3 (drops the 5 x 14x14x512).
SHALLOW_STAGE = 3
# The paper's resolution multipliers rho = 1, 6/7, 5/7, 4/7 of 224.
PAPER_RHOS = (1.0, 0.857, 0.714, 0.571)
PAPER_RESOLUTIONS = (224, 192, 160, 128)
MIN_INPUT_SIZE = 32
MIN_CHANNELS = 8
# The ``activation`` names the core accepts (weights record theirs by these names).
ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


class InvalidSettingError(ValueError):
    """A model setting out of its range (the message names the setting and the valid values).
    Its own type, so that command lines report it in one line (not every ``ValueError`` is the
    user's)."""


def scale_channels(channels: int, alpha: float) -> int:
    """Channels of a layer under width multiplier ``alpha`` (TF-slim rule, see module doc)."""
    return max(int(channels * alpha), MIN_CHANNELS)


def stage_channels(alpha: float = 1.0, out_indices: Sequence[int] = (0, 1, 2, 3, 4)
                   ) -> Tuple[int, ...]:
    """Output channels of the stages ``out_indices`` under ``alpha`` (what
    :meth:`MobileNetV1.forward_features` returns; ``separable``/``shallow`` do not change them)."""
    _check_alpha(alpha)
    out_indices = _check_out_indices(out_indices)
    return tuple(scale_channels(TABLE_1[i][-1][1], alpha) for i in out_indices)


# The four extra layers of TF's ssd_mobilenet_v1 / ssdlite_mobilenet_v1 (the paper's COCO
# detector, Table 13) at alpha 1, after the stride-16 and stride-32 features.
SSD_EXTRA_CHANNELS = (512, 256, 256, 128)


class DetectorWidths(NamedTuple):
    """Widths a detector built on MobileNetV1 sees: ``backbone`` (the ``out_indices`` stages),
    ``extras`` (SSD extra layers) and ``levels`` (both, the head's inputs)."""

    backbone: Tuple[int, ...]
    extras: Tuple[int, ...]

    @property
    def levels(self) -> Tuple[int, ...]:
        return self.backbone + self.extras


def detector_widths(alpha: float = 1.0, out_indices: Sequence[int] = (3, 4),
                    extra_channels: Sequence[int] = ()) -> DetectorWidths:
    """The one rule for widths after the backbone under width multiplier ``alpha``.

    ``extra_channels`` are SSD extra-layer widths written at alpha 1 (as Table 1's are); they
    scale like every backbone layer, ``max(int(c * alpha), 8)``: TF's ``ssd_mobilenet_v1``
    (the paper's SSD) applies its ``depth_multiplier`` to the extra layers too. So
    ``detector_widths(0.5, (3, 4), SSD_EXTRA_CHANNELS)`` is SSD300-MobileNetV1-0.5 in every face.

    A width that ``alpha`` would put under 8 channels (where the rule would clamp it, and the
    detector would stop following alpha) is an error naming the layer and the smallest alpha.
    """
    _check_alpha(alpha)
    out_indices = _check_out_indices(out_indices)
    extra_channels = tuple(extra_channels)
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in extra_channels):
        raise InvalidSettingError(f"extra_channels must be positive ints (widths at alpha 1), "
                                  f"got {extra_channels!r}")
    named = [(f"stage {i} output", TABLE_1[i][-1][1]) for i in out_indices]
    named += [(f"extra layer {j}", c) for j, c in enumerate(extra_channels)]
    for name, channels in named:
        if int(channels * alpha) < MIN_CHANNELS:
            smallest = min(c for _, c in named)
            raise InvalidSettingError(
                f"alpha={alpha} gives {int(channels * alpha)} channels for the {name} "
                f"({channels} x {alpha}), fewer than {MIN_CHANNELS}; use alpha >= "
                f"{MIN_CHANNELS / smallest:g} (or widen that layer at alpha 1)")
    return DetectorWidths(tuple(scale_channels(TABLE_1[i][-1][1], alpha) for i in out_indices),
                          tuple(scale_channels(c, alpha) for c in extra_channels))


def _check_alpha(alpha) -> None:
    """The one check of a width multiplier: a finite number > 0 (``inf`` has no channel count)."""
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and alpha > 0
                                       and math.isfinite(alpha)):
        raise InvalidSettingError(f"alpha (width multiplier) must be a finite number > 0, got "
                                  f"{alpha!r}")


def _check_out_indices(out_indices) -> Tuple[int, ...]:
    """The one check of ``out_indices``: distinct stage indices (a stage listed twice would be
    returned twice, and a neck built for one more input would get it)."""
    num_stages = len(TABLE_1)
    try:
        out_indices = tuple(out_indices)
    except TypeError:
        out_indices = ()
    if not out_indices or any(isinstance(i, bool) or not isinstance(i, int)
                              or not 0 <= i < num_stages for i in out_indices) \
            or len(set(out_indices)) != len(out_indices):
        raise InvalidSettingError(f"out_indices must be a non-empty sequence of distinct stage "
                                  f"indices in 0..{num_stages - 1}, got {out_indices!r}")
    return out_indices


def input_size(rho: float, base: int = 224) -> int:
    """Input resolution for resolution multiplier ``rho``: ``round(224 * rho)``.

    The paper's rho = 1, 0.857, 0.714, 0.571 give 224, 192, 160, 128.
    """
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho!r} (the paper uses 1, 0.857, 0.714, 0.571)")
    size = int(round(base * rho))
    if size < MIN_INPUT_SIZE:
        raise ValueError(f"rho={rho} gives a {size}px input; MobileNetV1 needs at least "
                         f"{MIN_INPUT_SIZE}px (rho >= {MIN_INPUT_SIZE / base:.3f})")
    return size


@dataclass(frozen=True)
class BlockSpec:
    """One block of the plan: a full 3x3 conv, or a depthwise-separable pair when ``separable``."""

    stage: int
    in_channels: int
    out_channels: int
    stride: int
    separable: bool


def plan_blocks(alpha: float = 1.0, separable: bool = True, shallow: bool = False,
                in_channels: int = 3) -> List[List[BlockSpec]]:
    """The blocks of each of the five stages, with channels scaled by ``alpha``.

    The stem (first block) is always a full convolution; ``separable=False`` makes every other
    block one too (Conv MobileNet). ``shallow=True`` drops the five 14x14x512 blocks.
    """
    _check_alpha(alpha)
    stages: List[List[BlockSpec]] = []
    for stage, rows in enumerate(TABLE_1):
        if shallow and stage == SHALLOW_STAGE:
            rows = rows[:1]
        blocks = []
        for is_separable, channels, stride in rows:
            out_channels = scale_channels(channels, alpha)
            blocks.append(BlockSpec(stage, in_channels, out_channels, stride,
                                    is_separable and separable))
            in_channels = out_channels
        stages.append(blocks)
    return stages


def _same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TensorFlow "SAME" padding: the extra row/column goes to the bottom/right.

    For even inputs and stride 2 this is Keras MobileNet's ``ZeroPadding2D(((0, 1), (0, 1)))``.
    """
    top, bottom = _same_padding(x.shape[-2], kernel, stride)
    left, right = _same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, [left, right, top, bottom])


@torch.jit.unused
def _check_dtype(x: Tensor, dtype: torch.dtype) -> None:
    """A ValueError for input of another dtype than the parameters, instead of torch's
    "expected scalar type ..." from deep inside a convolution. Under autocast, float32/16 and
    bfloat16 input is fine (autocast casts it, e.g. CPU bfloat16 training); float64 never is."""
    autocast_casts = x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    if autocast_casts and torch.is_autocast_enabled(x.device.type):
        return
    if x.is_floating_point():
        fix = (f"convert the input with x.to({dtype}), or the model with model.to({x.dtype})"
               + (", or run it under torch.autocast" if autocast_casts else ""))
    else:
        fix = ("convert images with x.float() and normalise them as the weights expect (the "
               "package's weights: x / 127.5 - 1)")
    raise ValueError(f"MobileNetV1 input has dtype {x.dtype} but the model's parameters are "
                     f"{dtype}; {fix}")


def check_input(x: Tensor, in_channels: int, min_size: int = MIN_INPUT_SIZE,
                dtype: Optional[torch.dtype] = None) -> Tensor:
    """Shape (and, with ``dtype``, the parameters' dtype) checks of the model input."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"MobileNetV1 expects input of shape (N, {in_channels}, H, W), got "
                         f"{list(x.shape)}; convert images to {in_channels} channels first")
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(f"MobileNetV1 input must be at least {min_size}x{min_size}px "
                         f"(the network downsamples 32x), got {list(x.shape[-2:])}; resize it")
    if dtype is not None and x.dtype != dtype and not torch.jit.is_scripting():
        _check_dtype(x, dtype)
    return x


# Shape checks and size-dependent padding are leaf calls for torch.fx (they branch on shapes).
torch.fx.wrap("check_input")
torch.fx.wrap("pad_same")


class ConvBNAct(nn.Module):
    """Convolution, batch norm, activation: the unit every MobileNetV1 layer is made of.

    ``tf_same_padding``: the input is padded by :func:`pad_same` before the convolution (whose
    own padding is then 0).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int, conv_layer: Callable[..., nn.Module],
                 norm_layer: Callable[[int], nn.Module], act_layer: Callable[[], nn.Module],
                 tf_padding: bool):
        super().__init__()
        # TF pads stride-2 layers asymmetrically; stride-1 "SAME" is the symmetric padding anyway.
        self.tf_same_padding = tf_padding and stride > 1
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = conv_layer(in_channels, out_channels, kernel_size, stride=stride,
                               padding=0 if self.tf_same_padding else kernel_size // 2,
                               groups=groups, bias=False)
        self.bn = norm_layer(out_channels)
        self.act = act_layer()

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_same_padding:
            x = pad_same(x, self.kernel_size, self.stride)
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv + BN + act, then pointwise 1x1 conv + BN + act (the paper's Fig. 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, **layers):
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, in_channels, **layers)
        self.pw = ConvBNAct(in_channels, out_channels, 1, 1, 1, **layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


@torch.jit.unused
def _checkpoint_block(block: nn.Module, x: Tensor) -> Tensor:
    """Run ``block`` under gradient checkpointing without counting its BN statistics twice.

    The backward pass runs the block's forward again; in training mode that would update the
    BN running statistics a second time, so they are put back after the recomputation.
    """
    norms = [m for m in block.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
             and m.track_running_stats]
    calls = 0

    def run(inp: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return block(inp)
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                 for m in norms]
        out = block(inp)
        with torch.no_grad():
            for m, (mean, var, tracked) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(tracked)
        return out

    # Early stop would end the recomputation inside ``block`` before the statistics are restored.
    with set_checkpoint_early_stop(False):
        return checkpoint(run, x, use_reentrant=False)


class Stage(nn.Sequential):
    """The blocks of one output stride, optionally gradient-checkpointed block by block."""

    def __init__(self, blocks, with_cp: bool = False):
        super().__init__(*blocks)
        self.with_cp = with_cp

    def forward(self, x: Tensor) -> Tensor:
        for block in self:
            if self.with_cp and x.requires_grad and not torch.jit.is_scripting():
                x = _checkpoint_block(block, x)
            else:
                x = block(x)
        return x


def _batch_norm(eps: float, momentum: float) -> Callable[[int], nn.Module]:
    def make(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    return make


class MobileNetV1(nn.Module):
    """MobileNetV1 classifier and multi-scale backbone.

    Args:
        num_classes: classifier outputs; 0 builds no classifier (``forward`` then returns the
            pooled features).
        alpha: width multiplier (> 0). Released weights exist for 0.25, 0.5, 0.75, 1.0.
        separable: False builds "Conv MobileNet" (Table 4).
        shallow: True removes the five 14x14x512 blocks (Table 5).
        out_indices: stages (0-4, ending at strides 2, 4, 8, 16, 32) returned by
            :meth:`forward_features`.
        frozen_stages: stages 0..frozen_stages get no gradient and keep BN in eval mode; -1 none.
        norm_eval: keep every BN layer in eval mode while training (for small detection batches).
        with_cp: gradient checkpointing per block (less memory, a second forward in backward).
        dropout: dropout before the classifier (TF/Keras trained the released weights with 1e-3).
        activation: ``"relu6"`` (released TF/Keras weights) or ``"relu"`` (the paper's Fig. 3),
            ignored when ``act_layer`` is given.
        bn_eps, bn_momentum: BatchNorm settings (Keras weights use eps 1e-3), ignored when
            ``norm_layer`` is given.
        tf_padding: TensorFlow "SAME" padding (asymmetric on stride-2 layers) so weights trained
            in TF/Keras reproduce their outputs exactly.
        in_channels: input image channels.
        conv_layer, norm_layer, act_layer: layer factories, for adapters that build layers from
            their own configs (``conv_layer(in, out, k, stride=, padding=, groups=, bias=)``,
            ``norm_layer(channels)``, ``act_layer()``).
    """

    def __init__(self, num_classes: int = 1000, alpha: float = 1.0, *, separable: bool = True,
                 shallow: bool = False, out_indices: Sequence[int] = (4,),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 dropout: float = 1e-3, activation: str = "relu6", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, tf_padding: bool = False, in_channels: int = 3,
                 conv_layer: Optional[Callable[..., nn.Module]] = None,
                 norm_layer: Optional[Callable[[int], nn.Module]] = None,
                 act_layer: Optional[Callable[[], nn.Module]] = None):
        super().__init__()
        num_stages = len(TABLE_1)
        if not isinstance(num_classes, int) or num_classes < 0:
            raise InvalidSettingError(f"num_classes must be an int >= 0 (0: no classifier), "
                                      f"got {num_classes!r}")
        out_indices = _check_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < num_stages:
            raise InvalidSettingError(f"frozen_stages must be an int in -1..{num_stages - 1} "
                                      f"(-1 freezes nothing), got {frozen_stages!r}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidSettingError(f"dropout must be in [0, 1), got {dropout!r}")
        if act_layer is None:
            if activation not in ACTIVATIONS:
                raise InvalidSettingError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                                          f"got {activation!r}")
            act_layer = ACTIVATIONS[activation]
        if not isinstance(in_channels, int) or in_channels < 1:
            raise InvalidSettingError(f"in_channels must be an int >= 1, got {in_channels!r}")
        plan = plan_blocks(alpha, separable, shallow, in_channels)

        self.alpha = alpha
        self.in_channels = in_channels
        self.out_indices: List[int] = list(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.tf_padding = tf_padding
        self.out_channels = [blocks[-1].out_channels for blocks in plan]
        self.num_features = self.out_channels[-1]
        layers = dict(conv_layer=conv_layer or nn.Conv2d,
                      norm_layer=norm_layer or _batch_norm(bn_eps, bn_momentum),
                      act_layer=act_layer, tf_padding=tf_padding)

        def block(spec: BlockSpec) -> nn.Module:
            if spec.separable:
                return DepthwiseSeparable(spec.in_channels, spec.out_channels, spec.stride,
                                          **layers)
            return ConvBNAct(spec.in_channels, spec.out_channels, 3, spec.stride, 1, **layers)

        self.stages = nn.ModuleList(Stage(map(block, blocks), with_cp) for blocks in plan)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.reset_parameters()
        self._freeze_stages()

    def reset_parameters(self) -> None:
        # The initialisation torchvision uses for its MobileNets.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def _freeze_stages(self) -> None:
        for stage in self.stages[:self.frozen_stages + 1]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> "MobileNetV1":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @torch.jit.export
    def forward_features(self, x: Tensor) -> List[Tensor]:
        """Feature maps of the stages in ``out_indices`` (strides 2, 4, 8, 16, 32)."""
        x = check_input(x, self.in_channels, dtype=self.stages[0][0].conv.weight.dtype)
        outs: List[Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, dropout and classifier on the last stage's features."""
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (pooled features when ``num_classes=0``)."""
        x = check_input(x, self.in_channels, dtype=self.stages[0][0].conv.weight.dtype)
        for stage in self.stages:
            x = stage(x)
        return self.forward_head(x)
