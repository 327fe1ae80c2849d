"""Checking that a checkpoint fits a model before loading it (torch only).

torch's ``load_state_dict(strict=False)`` and mmengine's loaders only log what does not fit;
an inference path that goes on with part of the weights random reports nonsense (mAP 0.001).
"""
import re
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = ["CheckpointMismatchError", "Misfit", "check_state_dict", "checkpoint_state_dict",
           "load_fitting_checkpoint"]


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model built from the config."""


def checkpoint_state_dict(checkpoint, source: str, revise_keys: Sequence[Tuple[str, str]] = (
        (r"^module\.", ""),)) -> dict:
    """The state dict of a loaded checkpoint (mmengine's ``{'state_dict': ...}``, the torchvision
    reference scripts' ``{'model': ...}``, or the state dict itself) with its keys revised as
    mmengine's loader revises them (``module.`` dropped)."""
    state = None
    if isinstance(checkpoint, dict):
        held = [checkpoint[k] for k in ("state_dict", "model")
                if isinstance(checkpoint.get(k), dict)]
        state = held[0] if held else checkpoint
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{source}: not a model checkpoint (found "
                                      f"{type(checkpoint).__name__})")
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return state


@dataclass(frozen=True)
class Misfit:
    """How a state dict fails to fit a model: keys in the model's order (``unexpected`` in the
    state dict's), mis-shaped ones as ``(key, checkpoint shape, model shape)``, and the share of
    the model's weights that fits (same key and shape)."""

    missing: List[str]
    unexpected: List[str]
    shapes: List[Tuple[str, tuple, tuple]]
    fit: float


def _dropped_on_load(key: str, own: Mapping[str, torch.Tensor]) -> bool:
    """A ``num_batches_tracked`` that the model's norm keeps none of (FrozenBatchNorm2d, which
    drops it while loading); torch's own load still refuses it for any other module."""
    prefix, _, name = key.rpartition(".")
    return name == "num_batches_tracked" and f"{prefix}.running_mean" in own


def find_misfit(own: Mapping[str, torch.Tensor], state: Mapping, strict: bool = True
                ) -> Optional[Misfit]:
    """What of ``state`` does not fit the model state dict ``own``; None when all fits.
    ``strict=False`` looks at the shapes of the keys both have only."""
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state and hasattr(state[k], "shape")
              and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state] if strict else []
    unexpected = ([k for k in state if k not in own and not _dropped_on_load(k, own)]
                  if strict else [])
    if not (missing or unexpected or shapes):
        return None
    misfit = set(missing) | {k for k, _, _ in shapes}
    total = sum(v.numel() for v in own.values())
    fit = sum(v.numel() for k, v in own.items() if k not in misfit) / max(1, total)
    return Misfit(missing, unexpected, shapes, fit)


def _classes_differ(shapes) -> bool:
    """A classification layer (not a depthwise one) with another number of outputs. A width
    change reshapes classification layers too, but only their inputs and the channels of the
    depthwise ones (shape ``(C, 1, k, k)``), never a full layer's outputs."""
    return any(("cls" in k or "classification" in k) and len(a) >= 2 and len(b) >= 2
               and a[0] != b[0] and a[1] > 1 and b[1] > 1 for k, a, b in shapes)


def _width_cause(model: torch.nn.Module, shapes) -> str:
    """The width the checkpoint's backbone has, from its widest mis-shaped layer (the model's
    alpha times the ratio of their channels), when the model's backbone has an ``alpha``."""
    backbone = [(a, b) for k, a, b in shapes if k.startswith(("backbone", "features"))
                and a and b]
    alpha = getattr(getattr(model, "backbone", None), "alpha", None)
    if not backbone or not isinstance(alpha, (int, float)):
        return "model.backbone.alpha"
    ckpt, own = max(backbone, key=lambda ab: ab[1][0])
    return (f"model.backbone.alpha: the model's is {alpha:g}, the checkpoint's looks like "
            f"{alpha * ckpt[0] / own[0]:.3g}")


def check_state_dict(model: torch.nn.Module, state: Mapping, source: str, show: int = 3,
                     min_fit: float = 1.0, strict: bool = True,
                     explain: Optional[Callable[[Misfit], Optional[Exception]]] = None) -> None:
    """The one check that a checkpoint fits a model, for every face and command line.

    Raises :class:`CheckpointMismatchError` naming the first missing, unexpected and mis-shaped
    keys (with both shapes) and the likely cause (width, number of classes), in one line; or
    what ``explain(misfit)`` returns (a face's own error and wording; None lets that misfit
    pass).

    ``min_fit`` < 1 accepts a checkpoint that fits in part (fine-tuning a detector on another
    number of classes: its classification layers start anew): it is an error only when the
    tensors that fit (same key and shape) hold less than ``min_fit`` of the model's weights.
    ``strict=False`` checks the shapes of the keys both have only.
    """
    misfit = find_misfit(model.state_dict(), state, strict)
    if misfit is None or (min_fit < 1.0 and misfit.fit >= min_fit):
        return
    error = explain(misfit) if explain is not None else _mismatch(model, misfit, source, show,
                                                                   min_fit)
    if error is not None:
        raise error


def _mismatch(model: torch.nn.Module, misfit: Misfit, source: str, show: int,
              min_fit: float) -> CheckpointMismatchError:
    missing, unexpected, shapes = misfit.missing, misfit.unexpected, misfit.shapes
    parts = [f"{source} does not fit the model"
             + (f" (it fits {misfit.fit:.0%} of the model's weights, less than {min_fit:.0%})"
                if min_fit < 1.0 else "")]
    if shapes:
        parts.append(f"{len(shapes)} tensors of another shape, e.g. " + ", ".join(
            f"{k}: checkpoint {a} vs model {b}" for k, a, b in shapes[:show]))
    if missing:
        parts.append(f"{len(missing)} model keys missing, e.g. {missing[:show]}")
    if unexpected:
        parts.append(f"{len(unexpected)} checkpoint keys the model lacks, e.g. "
                     f"{unexpected[:show]}")
    if any(k.startswith(("backbone", "neck", "features")) for k, _, _ in shapes):
        parts.append(f"likely cause: another width ({_width_cause(model, shapes)}) or "
                     f"out_indices than the checkpoint was trained with")
    if _classes_differ(shapes):
        parts.append("likely cause: another number of classes (mmdet: "
                     "model.bbox_head.num_classes; torchvision: num_classes)")
    parts.append("build the model with the settings the checkpoint was trained with (for mmdet: "
                 "the config copy in its work_dir)")
    return CheckpointMismatchError("; ".join(parts))


def load_fitting_checkpoint(model: torch.nn.Module, path: str,
                            read: Callable[[str], Any]) -> Any:
    """Load the checkpoint file ``path`` (read by ``read``) into ``model`` when every key and
    shape fits (:func:`check_state_dict`), then put the model in eval mode; returns what
    ``read`` gave (its meta data). The deploy paths of every face load through this (each checks
    that the file exists before it builds the model)."""
    checkpoint = read(path)
    state = checkpoint_state_dict(checkpoint, path)
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True)
    model.eval()
    return checkpoint
