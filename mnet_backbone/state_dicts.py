"""Checking that a checkpoint fits a model before loading it (torch only).

torch's ``load_state_dict(strict=False)`` and mmengine's loaders only log what does not fit;
an inference path that goes on with part of the weights random reports nonsense (mAP 0.001).
"""
import torch

__all__ = ["CheckpointMismatchError", "check_state_dict"]


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model built from the config."""


def check_state_dict(model: torch.nn.Module, state: dict, source: str, show: int = 3) -> None:
    """Raise :class:`CheckpointMismatchError` naming the first missing, unexpected and
    mis-shaped keys (with both shapes) and the likely cause."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state and hasattr(state[k], "shape")
              and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{source} does not fit the model:"]
    if shapes:
        lines.append(f"  {len(shapes)} tensors of another shape, e.g. " + "; ".join(
            f"{k}: checkpoint {a} vs model {b}" for k, a, b in shapes[:show]))
    if missing:
        lines.append(f"  {len(missing)} model keys missing, e.g. {missing[:show]}")
    if unexpected:
        lines.append(f"  {len(unexpected)} checkpoint keys the model lacks, e.g. "
                     f"{unexpected[:show]}")
    if any("cls" in k or "classification" in k for k, _, _ in shapes):
        lines.append("  likely cause: another number of classes (mmdet: "
                     "model.bbox_head.num_classes; torchvision: num_classes)")
    if any(k.startswith(("backbone", "neck", "features")) for k, _, _ in shapes):
        lines.append("  likely cause: another width (model.backbone.alpha) or out_indices than "
                     "the checkpoint was trained with")
    lines.append("  build the model with the settings the checkpoint was trained with (for mmdet: "
                 "the config copy in its work_dir)")
    raise CheckpointMismatchError("\n".join(lines))
