"""Images for int8 calibration and what is measured on them, without downloading anything.

:func:`calibration_files` lists (and checks) a user's calibration folder before any export work,
for the classifier's and the detectors' int8 export alike; :func:`read_images` /
:func:`load_images` read it with the released weights' evaluation transform, and
:func:`normalize` maps uint8 images to those weights' input. Without a folder, the exporters
calibrate on rendered images (:func:`mnet_backbone.shapes.render_shapes`).

:func:`calibrate_bn` gives a network realistic BatchNorm statistics (a random one for timing, or
one just trained), :func:`accuracy` is a classifier's top-1 on uint8 images. Training a
classifier on rendered images for the benchmarks is ``tools/shapes_training.py``.
"""
from __future__ import annotations

import math
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from PIL import Image

from ..images import IMAGE_EXTENSIONS, load_rgb

__all__ = ["normalize", "calibrate_bn", "load_images", "read_images", "calibration_files",
           "CalibrationError", "accuracy", "IMAGE_EXTENSIONS"]


class CalibrationError(ValueError):
    """Calibration images that cannot be used (the message names the folder and the fix)."""


def normalize(images: Tensor) -> Tensor:
    """uint8 RGB to the float input of the released weights: [0, 1], mean = std = 0.5."""
    return images.float().div_(127.5).sub_(1.0)


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor,
             batch: int = 64) -> float:
    hits = 0
    for i in range(0, len(images), batch):
        hits += int((predict(normalize(images[i:i + batch])).argmax(1)
                     == labels[i:i + batch]).sum())
    return hits / len(images)


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: Tensor, batch: int = 256) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``images`` (normalised floats).

    Train-mode passes with a cumulative average; returns the model in eval mode. After a short
    training run the running averages lag far behind the weights (this alone can leave an
    eval-mode model at chance level), so ``tools/shapes_training.train_classifier`` ends with
    it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
    model.train()
    for i in range(0, len(images), batch):
        model(images[i:i + batch])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()


def calibration_files(folder: Optional[str], limit: Optional[int] = None
                      ) -> Tuple[List[str], int]:
    """Up to ``limit`` image files under ``folder`` (recursively, sorted; hidden files and folders
    left out) and how many other files were skipped. Cheap, so the export tools call it before
    any export work: a missing folder, or one without images, is a :class:`CalibrationError`."""
    if not folder or not os.path.isdir(folder):
        raise CalibrationError(f"calibration folder {folder!r} does not exist; int8 needs "
                               f"--calib-dir with a few hundred of your images")
    files, skipped = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                files.append(os.path.join(root, name))
            else:
                skipped += 1
    if not files:
        raise CalibrationError(f"calibration folder {folder!r} holds no images "
                               f"({', '.join(IMAGE_EXTENSIONS)}); {skipped} other files")
    return files[:limit] if limit else files, skipped


def read_images(files: Sequence[str], resolution: int = 224,
                crop_pct: float = 0.875) -> Tuple[Tensor, int]:
    """``files`` as uint8 N x 3 x H x W (shorter side resized to ``resolution / crop_pct``, then
    center-cropped: the released weights' evaluation transform) and the number of files that
    could not be decoded (skipped; a :class:`CalibrationError` if none could)."""
    short = math.floor(resolution / crop_pct)
    out: List[Tensor] = []
    for file in files:
        try:
            img = Image.fromarray(load_rgb(file))
        except ValueError:  # undecodable: truncated, not an image, ...
            continue
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                         Image.BILINEAR)
        left = (img.width - resolution) // 2
        top = (img.height - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    if not out:
        raise CalibrationError(f"none of the {len(files)} calibration images could be decoded "
                               f"(e.g. {files[0]!r}); pass a folder of JPEG/PNG images")
    return torch.stack(out), len(files) - len(out)


def load_images(folder: str, resolution: int = 224, limit: Optional[int] = None,
                crop_pct: float = 0.875) -> Tensor:
    """Images of ``folder`` (see :func:`calibration_files`) as uint8 N x 3 x H x W
    (see :func:`read_images`); other and undecodable files are skipped."""
    return read_images(calibration_files(folder, limit)[0], resolution, crop_pct)[0]
