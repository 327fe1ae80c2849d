"""This package's state-dict layout, which every converter writes.

The core model's keys are ``stages.S.I.conv/bn`` for full convolutions (the stem is
``stages.0.0``), ``stages.S.I.dw.conv/bn`` and ``stages.S.I.pw.conv/bn`` for depthwise-separable
blocks, and ``fc`` for the classifier. Block ``n`` (1-13) of every source is the ``n``-th block
after the stem in :data:`mnet_backbone.model.TABLE_1` order.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..model import TABLE_1

__all__ = ["BACKGROUND_CLASSES", "block_prefixes", "put_bn"]

# Google's TF-slim heads: 1001 outputs, output 0 is "background", output i is ImageNet class i-1.
BACKGROUND_CLASSES = 1001


def block_prefixes() -> List[str]:
    """Key prefixes of the stem and the 13 blocks, in network order."""
    return [f"stages.{s}.{i}" for s, rows in enumerate(TABLE_1) for i in range(len(rows))]


def put_bn(out: Dict[str, Tensor], prefix: str, weight: Tensor, bias: Tensor, mean: Tensor,
           var: Tensor, tracked: Optional[Tensor] = None) -> None:
    """Write one BatchNorm's five entries under ``prefix`` (``num_batches_tracked`` 0 unless
    given)."""
    out[f"{prefix}.weight"], out[f"{prefix}.bias"] = weight, bias
    out[f"{prefix}.running_mean"], out[f"{prefix}.running_var"] = mean, var
    out[f"{prefix}.num_batches_tracked"] = (tracked if tracked is not None
                                            else torch.tensor(0, dtype=torch.long))
