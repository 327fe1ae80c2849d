"""Inference form of the core model: BN folded, channels-last, cache-sized chunks, torch.compile.

:func:`fold_bn` returns a *copy* of a :class:`~mnet_backbone.model.MobileNetV1` whose
``ConvBNAct`` units have the batch norm folded into the convolution (``conv`` gains a bias,
``bn`` becomes ``nn.Identity``); the architecture, module names, ``out_indices`` and both forwards
stay those of the core, and the original model is not touched.

:class:`DeployedMobileNetV1` runs a folded model for inference:

* channels-last activations (oneDNN's native layout for convolutions on CPU);
* each folded conv + bias + activation as one oneDNN call with its weight pre-packed per input
  shape (:class:`FusedConvAct`, built from the folded ``ConvBNAct`` units of a copy of the
  stages);
* a batching strategy for large batches: the batch runs in cache-sized chunks (optionally split
  between parallel single-threaded streams, :mod:`.streams`; off by default for PyTorch, where
  it measured no faster than one stream with all threads): the stages are split into groups and
  each group runs its input in chunks of a few images, depth first (a chunk goes through all
  the stages of its group before the next chunk starts), so the large early feature maps of
  one chunk stay in the core's cache instead of a whole batch of them streaming through memory
  once per layer; late stages (small maps, large weights) may run on bigger chunks, which
  reuses their weights;
* optionally ``torch.compile`` (Inductor with weight freezing: constant-folded, pre-packed oneDNN
  convolutions with the activation fused), one compiled graph per group.

Everything here needs torch only.
"""
from __future__ import annotations

import copy
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..model import ConvBNAct, MobileNetV1, check_input, pad_same
from .streams import StreamPool, split_even

__all__ = ["fold_bn", "fold_conv_bn", "DeployedMobileNetV1", "deploy", "DEFAULT_CHUNKS",
           "tune_chunks", "compile_options", "FusedConvAct", "fuse_units", "can_fuse"]

# Chunk size per stage (strides 2, 4, 8, 16, 32); 0 = the whole batch. Chosen by measurement on
# a 2-core AVX-512 machine (batch 32, 2 threads: whole batch 275 ms, chunks of 1 235 ms,
# (1, 1, 1, 1, 8) 213 ms, chunks of 4 166 ms; 1 thread: whole 496 ms, chunks of 4 331 ms,
# (2, 2, 2, 8, 8) 324 ms); see docs/benchmarks.md, and :func:`tune_chunks` to
# measure another machine.
DEFAULT_CHUNKS: Tuple[int, ...] = (4, 4, 4, 4, 4)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Conv2d:
    """A new ``nn.Conv2d`` equal to ``bn(conv(x))`` with ``bn`` in eval mode (computed in fp64)."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it has no running statistics (track_running_stats="
                         f"False normalises with batch statistics even in eval mode)")
    if conv.padding_mode != "zeros":
        raise ValueError(f"cannot fold into a conv with padding_mode={conv.padding_mode!r}")
    weight = conv.weight.detach().double()
    scale = (bn.running_var.double() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    if conv.bias is not None:
        shift = shift + conv.bias.detach().double() * scale
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(shift)
    return fused


def fold_bn(model: MobileNetV1) -> MobileNetV1:
    """An eval-mode copy of ``model`` with every BatchNorm folded into its convolution.

    The copy has the same class, stages, blocks, ``out_indices`` and forwards; in each
    ``ConvBNAct`` ``conv`` is a biased ``nn.Conv2d`` and ``bn`` an ``nn.Identity``. Dropout
    becomes ``nn.Identity`` (it is one in eval mode). ``model`` itself is left unchanged.
    """
    if not isinstance(model, MobileNetV1):
        raise TypeError(f"fold_bn expects a mnet_backbone MobileNetV1, got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    for name, unit in folded.named_modules():
        if not isinstance(unit, ConvBNAct) or isinstance(unit.bn, nn.Identity):
            continue
        if not isinstance(unit.bn, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"{name}.bn is a {type(unit.bn).__name__}; only BatchNorm folds into "
                            f"a convolution")
        if not isinstance(unit.conv, nn.Conv2d):
            raise TypeError(f"{name}.conv is a {type(unit.conv).__name__}, not an nn.Conv2d")
        unit.conv = fold_conv_bn(unit.conv, unit.bn)
        unit.bn = nn.Identity()
    folded.dropout = nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _post_op(act: nn.Module) -> Tuple[str, List[float], Optional[nn.Module]]:
    """oneDNN post-op (name, scalars) for an activation, or ``none`` plus the module to call."""
    if isinstance(act, nn.ReLU6):
        return "hardtanh", [0.0, 6.0], None
    if isinstance(act, nn.Hardtanh):
        return "hardtanh", [float(act.min_val), float(act.max_val)], None
    if isinstance(act, nn.ReLU):
        return "relu", [], None
    if isinstance(act, nn.Identity):
        return "none", [], None
    return "none", [], act


def can_fuse() -> bool:
    """Whether this PyTorch has the oneDNN fused convolution used by :class:`FusedConvAct`."""
    try:
        return (torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
                and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight"))
    except (AttributeError, RuntimeError):
        return False


class FusedConvAct(nn.Module):
    """A folded ``ConvBNAct`` as one oneDNN call: convolution + bias + activation, with the weight
    reordered into oneDNN's blocked layout for the input shape it meets (what Inductor's weight
    pre-packing does, here in eager mode). CPU and fp32 only; any input size and batch.

    oneDNN picks its kernel, and so the weight layout it wants, from the input shape and the
    thread count: a weight packed for another shape is reordered again on *every* call (measured
    3-10x slower). So the packed weight is kept per (batch, height, width, threads), packed on
    first use; past :attr:`MAX_PACKED` shapes the plain weight is used.
    """

    MAX_PACKED = 8

    def __init__(self, unit: ConvBNAct):
        super().__init__()
        conv = unit.conv
        if not isinstance(unit.bn, nn.Identity):
            raise ValueError("FusedConvAct needs a folded unit (fold_bn first)")
        self.tf_same_padding = unit.tf_same_padding
        self.kernel_size, self.stride = unit.kernel_size, unit.stride
        self.conv_args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr, self.scalars, self.post = _post_op(unit.act)
        # Plain attributes, not buffers: opaque oneDNN tensors have no storage to copy or save.
        self.weight = conv.weight.detach().float().clone()
        self.bias = conv.bias.detach().float().clone()
        self.packed: Dict[Tuple[int, int, int, int], Tensor] = {}

    def _weight_for(self, x: Tensor) -> Tensor:
        key = (x.shape[0], x.shape[2], x.shape[3], torch.get_num_threads())
        weight = self.packed.get(key)
        if weight is None:
            if len(self.packed) >= self.MAX_PACKED:
                return self.weight
            weight = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, *self.conv_args, input_size=list(x.shape))
            self.packed[key] = weight
        return weight

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_same_padding:
            x = pad_same(x, self.kernel_size, self.stride)
        padding, stride, dilation, groups = self.conv_args
        y = torch.ops.mkldnn._convolution_pointwise(x, self._weight_for(x), self.bias, padding,
                                                    stride, dilation, groups, self.attr,
                                                    self.scalars, None)
        return y if self.post is None else self.post(y)

    def extra_repr(self) -> str:
        return f"groups={self.conv_args[3]}, stride={self.conv_args[1]}, post_op={self.attr}"


def fuse_units(stages: nn.Module) -> nn.Module:
    """Replace every folded ``ConvBNAct`` under ``stages`` (in place) by a :class:`FusedConvAct`."""
    for name, unit in list(stages.named_modules()):
        if isinstance(unit, ConvBNAct):
            parent = stages.get_submodule(name.rsplit(".", 1)[0]) if "." in name else stages
            setattr(parent, name.rsplit(".", 1)[-1], FusedConvAct(unit))
    return stages


class _Group(nn.Module):
    """Consecutive stages run on one chunk; returns the outputs of the ``keep`` stages."""

    def __init__(self, stages: Sequence[nn.Module], first: int, keep: Sequence[int]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.first = first
        self.keep = [i - first for i in keep]

    def forward(self, x: Tensor) -> List[Tensor]:
        outs: List[Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.keep:
                outs.append(x)
        return outs


def compile_options() -> Dict[str, object]:
    """Inductor settings for CPU inference: weights frozen as constants and pre-packed."""
    return {"freezing": True, "cpp.weight_prepack": True}


class DeployedMobileNetV1(nn.Module):
    """Inference wrapper around a BN-folded MobileNetV1 (see the module doc).

    Args:
        folded: the output of :func:`fold_bn`.
        channels_last: run in channels-last memory format (outputs are channels-last too).
        chunks: chunk size per stage (5 ints, 0 = whole batch); consecutive stages with the same
            size form one group that is run depth first. ``None``: :data:`DEFAULT_CHUNKS`.
        compile: ``torch.compile`` every group (and the head) with :func:`compile_options`.
        fuse: run each conv + bias + activation as one oneDNN call with pre-packed weights
            (:class:`FusedConvAct`); ``None``: when available and not compiling.
        streams: batches of at least ``streams`` images are split between that many worker
            threads, each running PyTorch single-threaded on its share (see
            :mod:`mnet_backbone.deploy.streams`); ``None`` and 1: off (measured no faster than
            one stream using all threads; Inductor's kernels also fix their thread count when
            compiled).

    ``forward`` gives what the core's ``forward`` gives (logits, or pooled features when the model
    has no classifier); ``forward_features`` the feature maps of ``out_indices``.
    """

    def __init__(self, folded: MobileNetV1, channels_last: bool = True,
                 chunks: Optional[Sequence[int]] = None, compile: bool = False,
                 streams: Optional[int] = None, fuse: Optional[bool] = None):
        super().__init__()
        chunks = tuple(DEFAULT_CHUNKS if chunks is None else chunks)
        if len(chunks) != len(folded.stages) or any(not isinstance(c, int) or c < 0
                                                     for c in chunks):
            raise ValueError(f"chunks must be {len(folded.stages)} ints >= 0 (0: whole batch), "
                             f"got {chunks!r}")
        self.in_channels = folded.in_channels
        self.out_indices = list(folded.out_indices)
        self.channels_last = channels_last
        self.chunks = chunks
        self.compiled = compile
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fuse is None:
            fuse = can_fuse() and not compile
        self.fused = fuse
        stages = folded.stages
        if fuse:  # on a copy: ``folded`` may be shared
            stages = fuse_units(copy.deepcopy(stages))
        last = len(stages) - 1
        bounds = [i for i in range(len(chunks)) if i == 0 or chunks[i] != chunks[i - 1]]
        self.groups = nn.ModuleList()
        self.group_chunks: List[int] = []
        for g, start in enumerate(bounds):
            stop = bounds[g + 1] if g + 1 < len(bounds) else last + 1
            keep = [i for i in range(start, stop) if i in self.out_indices or i == stop - 1]
            self.groups.append(_Group(stages[start:stop], start, keep))
            self.group_chunks.append(chunks[start])
        self.head = nn.Sequential(folded.avgpool, nn.Flatten(1), folded.fc)
        self.eval().to(memory_format=self.memory_format)
        self._runners = [self._compile(m) if compile else m for m in self.groups]
        self._head = self._compile(self.head) if compile else self.head
        if streams is None:
            streams = 1
        self.streams = streams
        self._pool = StreamPool(streams) if streams > 1 else None

    @staticmethod
    def _compile(module: nn.Module):
        return torch.compile(module, dynamic=False, options=compile_options())

    def train(self, mode: bool = True) -> "DeployedMobileNetV1":
        if mode:
            raise RuntimeError("a deployed (BN-folded) model is for inference only; train the "
                               "original MobileNetV1 and deploy it again")
        return super().train(False)

    def _run(self, x: Tensor) -> Tuple[List[Tensor], Tensor]:
        x = check_input(x, self.in_channels)
        if self._pool is not None and x.shape[0] >= self.streams:
            def work(part: slice) -> Tuple[List[Tensor], Tensor]:
                with torch.inference_mode():
                    return self._run_stream(x[part])
            results = self._pool.map(work, split_even(x.shape[0], self.streams))
            outs = [torch.cat(o) for o in zip(*(r[0] for r in results))]
            return outs, torch.cat([r[1] for r in results])
        return self._run_stream(x)

    def _run_stream(self, x: Tensor) -> Tuple[List[Tensor], Tensor]:
        x = x.contiguous(memory_format=self.memory_format)
        outs: List[Tensor] = []
        for group, runner, chunk in zip(self.groups, self._runners, self.group_chunks):
            if chunk and x.shape[0] > chunk:
                parts = [runner(part) for part in x.split(chunk)]
                results = [torch.cat(r) for r in zip(*parts)]
            else:
                results = runner(x)
            x = results[-1]
            kept = [group.first + i for i in group.keep]
            outs += [r for i, r in zip(kept, results) if i in self.out_indices]
        return outs, x

    @torch.inference_mode()
    def forward_features(self, x: Tensor) -> List[Tensor]:
        return self._run(x)[0]

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        return self._head(self._run(x)[1])

    def __getstate__(self):  # thread pools and compiled callables do not pickle / deepcopy
        raise TypeError("a DeployedMobileNetV1 cannot be copied or pickled; deploy() the "
                        "original model again (or save fold_bn(model) / an export)")


def deploy(model: MobileNetV1, channels_last: bool = True, chunks: Optional[Sequence[int]] = None,
           compile: bool = False, streams: Optional[int] = None,
           fuse: Optional[bool] = None) -> DeployedMobileNetV1:
    """Fold BN (:func:`fold_bn`) and wrap the copy for fast CPU inference.

    >>> fast = deploy(model)                  # eager, channels-last, chunked large batches
    >>> fast = deploy(model, compile=True)    # + torch.compile (first call compiles)
    """
    return DeployedMobileNetV1(fold_bn(model), channels_last, chunks, compile, streams, fuse)


def tune_chunks(model: MobileNetV1, batch: int = 32, resolution: int = 224,
                candidates: Optional[Sequence[Sequence[int]]] = None, repeats: int = 3,
                compile: bool = False, streams: Optional[int] = None
                ) -> List[Tuple[Tuple[int, ...], float]]:
    """Time chunk plans on this machine; returns ``(plan, seconds per batch)``, fastest first."""
    if candidates is None:
        candidates = [(0,) * 5, (1,) * 5, (2,) * 5, (4,) * 5, (8,) * 5, (1, 1, 1, 8, 8),
                      (1, 1, 2, 8, 32), (1, 1, 1, 4, 16), (2, 2, 2, 8, 8)]
    folded = fold_bn(model)
    x = torch.randn(batch, model.in_channels, resolution, resolution)
    results = []
    for plan in candidates:
        net = DeployedMobileNetV1(folded, True, tuple(plan), compile, streams)
        net(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
        results.append((tuple(plan), min(times)))
    return sorted(results, key=lambda r: r[1])
