"""The torchvision side of detector deployment (``tools/deploy.py torchvision:BUILDER ...``).

A registered builder + state dict as an eval-mode model (every key and shape must fit), and
the model's own PyTorch predictions on RGB arrays, to compare the deployed file against.
"""
import os
from typing import Callable, List

import numpy as np
import torch

from ..state_dicts import load_fitting_checkpoint
from ..weights.hub import load_checkpoint

__all__ = ["load_tv_detector", "pytorch_predict"]


def load_tv_detector(builder: str, checkpoint: str, **kwargs) -> torch.nn.Module:
    """``torchvision.models.get_model(builder, **kwargs)`` with the weights of ``checkpoint``
    (a state dict, or a torchvision reference-script checkpoint holding one under ``model``)."""
    from torchvision.models import get_model, list_models

    if builder not in list_models():
        raise ValueError(f"unknown torchvision builder {builder!r}; detection builders: "
                         f"{[m for m in list_models() if 'ssd' in m or 'rcnn' in m]}")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
    model = get_model(builder, weights=None, **kwargs)
    # the package's one safe reader: one-line errors
    load_fitting_checkpoint(model, checkpoint, load_checkpoint)
    return model


def pytorch_predict(model: torch.nn.Module) -> Callable[[List[np.ndarray]], List[dict]]:
    """The model's own forward (its transform and post-processing) on H x W x 3 RGB arrays."""
    def predict(images: List[np.ndarray]) -> List[dict]:
        tensors = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255
                   for im in images]
        with torch.no_grad():
            return model.eval()(tensors)

    return predict
