"""Making a folded MobileNetV1 easier to quantize without changing what it computes.

Two post-training steps in the spirit of Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction" (ICCV), adapted to what the int8 files here quantize
(per-channel int8 weights, one uint8 range per activation tensor) and to ReLU6:

* :func:`equalize_cross_layer` rescales the channels of each activation between two
  convolutions: output channel ``c`` of a unit (weights and bias) times ``g_c``, the next layer's
  input channel ``c`` divided by ``g_c``. With per-channel weights the producer's quantization does
  not change, and the activation channels that used a sliver of their tensor's range (a
  per-tensor uint8 grid set by the largest channel) get many more levels. Where the consumer is a
  depthwise conv its per-channel weights do not care either, so those channels are scaled to fill
  the range; where it is a pointwise conv (or the classifier), its weight columns shrink as the
  activation grows, and ``g_c`` balances the two noises (activation rounding through the column
  against weight rounding times the channel's magnitude). ReLU6 is not positively homogeneous
  past 6: a channel is rescaled only when its calibration maximum stays below ``6 / headroom``
  before and after, so that the clip never acts on it (a channel that reaches the clip keeps
  ``g_c = 1``).
* :func:`bias_correct` runs the calibration images through an int8 simulation of the file ONNX
  Runtime will write (per-channel symmetric int8 weights, uint8 min/max activation ranges) and,
  layer by layer in order, moves each convolution's bias by the mean per-channel error of its
  output against the fp32 model, so the rounding biases (largest for the 9-weight depthwise
  kernels) do not add up through the network.

Measured on Google's 1.0-224 weights (``tools/benchmark_int8.py``): bias correction is what
pays (int8 simulation: 7.9 -> 21 dB logit SQNR, top-1 agreement 60% -> 89%); the equalization
adds nothing on top of it there, and the ReLU6 guard is statistical (evaluation photos can push
a rescaled channel into the clip: max |logit change| 0.9 measured), so
:func:`~mnet_backbone.deploy.quant.quantize_int8_accurate` leaves it off by default.

Both work on the output of :func:`mnet_backbone.deploy.fold.fold_bn` (copies; the input model is
not changed) and need torch only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..model import ConvBNAct, MobileNetV1, pad_same

__all__ = ["conv_units", "channel_stats", "equalize_cross_layer", "bias_correct",
           "simulate_int8", "ChannelStats"]


def conv_units(model: MobileNetV1) -> List[ConvBNAct]:
    """The model's ``ConvBNAct`` units in execution order (27 for MobileNetV1)."""
    return [m for m in model.stages.modules() if isinstance(m, ConvBNAct)]


def _clip_bound(act: nn.Module) -> Optional[float]:
    """Upper clip of a monotone activation that is homogeneous below it (inf: ReLU / none)."""
    if isinstance(act, nn.ReLU6):
        return 6.0
    if isinstance(act, nn.Hardtanh) and act.min_val == 0.0:
        return float(act.max_val)
    if isinstance(act, (nn.ReLU, nn.Identity)):
        return float("inf")
    return None  # not safe to rescale through


def _check_folded(model: MobileNetV1) -> None:
    if not isinstance(model, MobileNetV1):
        raise TypeError(f"expects a folded mnet_backbone MobileNetV1, got {type(model).__name__}")
    for unit in conv_units(model):
        if not isinstance(unit.bn, nn.Identity) or unit.conv.bias is None:
            raise ValueError("fold the batch norms first (mnet_backbone.deploy.fold_bn)")


@dataclass
class ChannelStats:
    """Per-channel statistics of one unit's output over the calibration images."""

    pre_max: Tensor   # max of the convolution output (before the activation)
    post_max: Tensor  # max of the activation output
    post_rms: Tensor  # root mean square of the activation output


@torch.no_grad()
def channel_stats(model: MobileNetV1, images: Tensor, batch: int = 16) -> List[ChannelStats]:
    """:class:`ChannelStats` of every unit of ``model`` (eval mode) on ``images``."""
    units = conv_units(model)
    acc: Dict[int, List[Tensor]] = {}
    count = 0

    def hook(i: int):
        def run(module: nn.Module, inputs, output: Tensor) -> None:
            post = units[i].act(output)
            pre_max = output.amax(dim=(0, 2, 3))
            post_max = post.amax(dim=(0, 2, 3))
            sq = post.pow(2).mean(dim=(2, 3)).sum(0)
            if i not in acc:
                acc[i] = [pre_max, post_max, sq]
            else:
                a = acc[i]
                a[0] = torch.maximum(a[0], pre_max)
                a[1] = torch.maximum(a[1], post_max)
                a[2] = a[2] + sq
        return run

    handles = [u.conv.register_forward_hook(hook(i)) for i, u in enumerate(units)]
    try:
        for start in range(0, len(images), batch):
            x = images[start:start + batch].float()
            for stage in model.stages:
                x = stage(x)
            count += len(x)
    finally:
        for h in handles:
            h.remove()
    return [ChannelStats(acc[i][0], acc[i][1], (acc[i][2] / count).sqrt())
            for i in range(len(units))]


def _consumer_columns(consumer: nn.Module) -> Tuple[Tensor, bool]:
    """(weight, depthwise) of the layer that reads the activation (Conv2d or Linear)."""
    w = consumer.weight
    depthwise = isinstance(consumer, nn.Conv2d) and consumer.groups == consumer.in_channels \
        and consumer.groups > 1
    return w, depthwise


def _dense_gain(w: Tensor, stats: ChannelStats, tensor_range: float) -> Tensor:
    """Balance activation and weight rounding for a dense consumer (per-output-channel int8):
    activation noise through column c ~ (A / g_c) * |W[:, c]|, weight noise ~ x_c * g_c * R_o;
    the sum is smallest at g_c = sqrt(A * w_c / x_c), w_c = rms over outputs of |W[o, c]| / R_o."""
    w2 = w.reshape(w.shape[0], w.shape[1], -1).abs().amax(dim=2)  # (out, in)
    row = w2.amax(dim=1, keepdim=True).clamp_min(1e-12)
    omega = (w2 / row).pow(2).mean(dim=0).sqrt()
    return (tensor_range * omega / stats.post_rms.clamp_min(1e-12)).sqrt()


@torch.no_grad()
def equalize_cross_layer(folded: MobileNetV1, images: Tensor, *, headroom: float = 1.5,
                         classifier_fp32: bool = True, pointwise: bool = True,
                         iterations: int = 3, batch: int = 16) -> MobileNetV1:
    """A copy of the BN-folded ``folded`` with the activation channels rescaled (see the module
    doc); its fp32 function equals the original's wherever the calibration ``images`` bound the
    channels (rescaled channels stay below ``6 / headroom`` of ReLU6).

    ``classifier_fp32``: the classifier stays fp32 in the int8 file, so the last activation is
    scaled like one read by a depthwise conv (fill the range). ``pointwise=False`` rescales only
    the activations a depthwise conv reads.
    """
    _check_folded(folded)
    model = copy.deepcopy(folded).eval()
    units = conv_units(model)
    stats = channel_stats(model, images, batch)
    has_fc = isinstance(model.fc, nn.Linear)
    for i, unit in enumerate(units):
        last = i == len(units) - 1
        if last and not has_fc:
            break
        consumer = model.fc if last else units[i + 1].conv
        bound = _clip_bound(unit.act)
        if bound is None:
            continue
        st = stats[i]
        tensor_range = float(st.post_max.max())
        if tensor_range <= 0:
            continue
        limit = min(tensor_range, bound / headroom)
        alive = st.post_max > 1e-6 * tensor_range
        safe = alive & (st.pre_max * headroom <= bound)
        if not bool(safe.any()):
            continue
        w, depthwise = _consumer_columns(consumer)
        fill = (limit / st.post_max.clamp_min(1e-12))
        if depthwise or (last and classifier_fp32) or not pointwise:
            if not (depthwise or (last and classifier_fp32)):
                continue
            gain = fill
        else:
            gain = torch.ones_like(fill)
            cols = w.detach().clone()
            shape = [1, -1] + [1] * (cols.dim() - 2)
            for _ in range(iterations):
                cur = ChannelStats(st.pre_max * gain, st.post_max * gain, st.post_rms * gain)
                step = _dense_gain(cols / gain.reshape(shape), cur, tensor_range)
                gain = gain * step
                gain = torch.minimum(gain, fill)
        gain = torch.where(safe, gain, torch.ones_like(gain)).to(w.dtype)
        conv = unit.conv
        conv.weight.mul_(gain.reshape(-1, 1, 1, 1))
        conv.bias.mul_(gain)
        if isinstance(consumer, nn.Linear):
            consumer.weight.div_(gain.reshape(1, -1))
        elif depthwise:
            consumer.weight.div_(gain.reshape(-1, 1, 1, 1))
        else:
            consumer.weight.div_(gain.reshape(1, -1, 1, 1))
    return model


# --- int8 simulation (what ONNX Runtime's static QDQ quantization computes) -------------------

def _fake_quant_act(x: Tensor, lo: float, hi: float) -> Tensor:
    """uint8 asymmetric, range [min(lo, 0), max(hi, 0)] (ONNX Runtime's MinMax activations)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale


def _fake_quant_weight(w: Tensor, qmax: int = 127) -> Tensor:
    """int8 symmetric per output channel, [-qmax, qmax] (ONNX Runtime's per-channel weights:
    127, or 64 with ``reduce_range``)."""
    amax = w.reshape(w.shape[0], -1).abs().amax(dim=1).clamp_min(1e-12)
    scale = (amax / qmax).reshape([-1] + [1] * (w.dim() - 1))
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def _conv(unit: ConvBNAct, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    if unit.tf_same_padding:
        x = pad_same(x, unit.kernel_size, unit.stride)
    c = unit.conv
    return nn.functional.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)


def _input_ranges(model: MobileNetV1, images: Tensor) -> List[Tuple[float, float]]:
    """(min, max) of each unit's input and of the last unit's output (fp32, on ``images``)."""
    units = conv_units(model)
    x = images.float()
    ranges = [(float(x.min()), float(x.max()))]
    for unit in units:
        x = unit(x)
        ranges.append((float(x.min()), float(x.max())))
    return ranges


@torch.no_grad()
def simulate_int8(model: MobileNetV1, images: Tensor, calibration: Tensor, *,
                  keep_first: bool = False, classifier_fp32: bool = True,
                  weight_qmax: int = 127) -> Tensor:
    """Logits of the int8 simulation of ``model`` (ranges from ``calibration``)."""
    units = conv_units(model)
    ranges = _input_ranges(model, calibration)
    x = images.float()
    for i, unit in enumerate(units):
        fp32 = keep_first and i == 0
        xin = x if fp32 else _fake_quant_act(x, *ranges[i])
        w = unit.conv.weight if fp32 else _fake_quant_weight(unit.conv.weight, weight_qmax)
        x = unit.act(_conv(unit, xin, w, unit.conv.bias))
    x = _fake_quant_act(x, *ranges[-1])
    return _head(model, x, classifier_fp32)


def _head(model: MobileNetV1, x: Tensor, classifier_fp32: bool) -> Tensor:
    pooled = torch.flatten(model.avgpool(x), 1)
    if not isinstance(model.fc, nn.Linear):
        return pooled
    if classifier_fp32:
        return model.fc(pooled)
    q = _fake_quant_act(pooled, float(pooled.min()), float(pooled.max()))
    return nn.functional.linear(q, _fake_quant_weight(model.fc.weight), model.fc.bias)


@torch.no_grad()
def bias_correct(folded: MobileNetV1, images: Tensor, *, keep_first: bool = False,
                 classifier_fp32: bool = True, max_images: int = 64,
                 weight_qmax: int = 127) -> MobileNetV1:
    """A copy of the BN-folded ``folded`` whose conv biases absorb the mean per-channel error
    of the int8 simulation on ``images`` (at most ``max_images`` of them), layer by layer: each
    layer is corrected given the already corrected layers before it (empirical bias correction,
    Nagel et al. 2019, section 4.2). ``keep_first``: the first conv stays fp32 in the int8 file.
    """
    _check_folded(folded)
    model = copy.deepcopy(folded).eval()
    units = conv_units(model)
    images = images[:max_images].float()
    ranges = _input_ranges(model, images)
    x_fp, x_q = images, images
    for i, unit in enumerate(units):
        fp32 = keep_first and i == 0
        bias = unit.conv.bias
        y_fp = _conv(unit, x_fp, unit.conv.weight, bias)
        xin = x_q if fp32 else _fake_quant_act(x_q, *ranges[i])
        w = unit.conv.weight if fp32 else _fake_quant_weight(unit.conv.weight, weight_qmax)
        y_q = _conv(unit, xin, w, bias)
        delta = (y_q - y_fp).mean(dim=(0, 2, 3))
        bias.sub_(delta)
        y_q = y_q - delta.reshape(1, -1, 1, 1)
        x_fp, x_q = unit.act(y_fp), unit.act(y_q)
        del y_fp, y_q, xin
    if isinstance(model.fc, nn.Linear) and not classifier_fp32:
        x_q = _fake_quant_act(x_q, *ranges[-1])
        ref = model.fc(torch.flatten(model.avgpool(x_fp), 1))
        got = _head(model, x_q, False)
        model.fc.bias.sub_((got - ref).mean(0))
    return model
