"""A small, seeded classification data set: one shape per image on a cluttered background.

The five classes of the shapes detection set, drawn by its renderer
(:func:`mnet_backbone.shapes.render_single`, one shape of a given class), written in the plain
class-folder layout that mmpretrain's ``CustomDataset``,
:class:`~mnet_backbone.mmpretrain_plugin.ImageFolderDataset` and torchvision's ``ImageFolder``
read::

    root/train/<class>/<class>_000000.jpg ...
    root/val/<class>/<class>_000000.jpg ...

File names are unique across classes, as ImageNet's are (mmpretrain's visualisation hook names
its pictures after them).

Each image holds one shape of random size (its shorter side at least 35 % of the image side, its
size up to 80 %), aspect ratio, rotation, colour and position, on the detection set's textured
background with thin clutter strokes; a third are slightly blurred. Every class has the same
number of images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict

import numpy as np

from .shapes import CLASSES, ShapesSpec, render_single

__all__ = ["CLASSES", "ShapesClsSpec", "make_shapes_cls_dataset", "is_complete"]


@dataclass(frozen=True)
class ShapesClsSpec:
    train_per_class: int = 800
    val_per_class: int = 100
    image_size: int = 64  # px, square
    min_size_frac: float = 0.35  # shorter side of the shape's box, fraction of the image side
    max_size_frac: float = 0.8   # largest shape size, fraction of the image side
    seed: int = 0

    def render_spec(self) -> ShapesSpec:
        """How :func:`mnet_backbone.shapes.render_image` draws these images."""
        return ShapesSpec(image_size=(self.image_size, self.image_size), max_objects=1,
                          min_size=max(1, round(self.min_size_frac * self.image_size)),
                          max_size_frac=self.max_size_frac, seed=self.seed)


def make_shapes_cls_dataset(root: str, spec: ShapesClsSpec = ShapesClsSpec()) -> Dict[str, str]:
    """Write the set under ``root``; returns the folder of each split (``train``, ``val``).

    The same ``spec`` (including its seed) always produces the same files.
    """
    if spec.train_per_class < 1 or spec.val_per_class < 1:
        raise ValueError(f"train_per_class and val_per_class must be >= 1, got "
                         f"{spec.train_per_class}, {spec.val_per_class}")
    if spec.image_size < 32:
        raise ValueError(f"image_size must be >= 32 px (MobileNetV1's minimum input), got "
                         f"{spec.image_size}")
    if not 0 < spec.min_size_frac <= spec.max_size_frac <= 1:
        raise ValueError(f"need 0 < min_size_frac <= max_size_frac <= 1, got "
                         f"{spec.min_size_frac}, {spec.max_size_frac}")
    rng = np.random.default_rng(spec.seed)
    render = spec.render_spec()
    folders = {}
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        folders[split] = os.path.join(root, split)
        for cls_idx, cls in enumerate(CLASSES):
            folder = os.path.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                render_single(rng, render, cls_idx)[0].save(
                    os.path.join(folder, f"{cls}_{i:06d}.jpg"), quality=92)
    return folders


def is_complete(root: str, spec: ShapesClsSpec = ShapesClsSpec()) -> bool:
    """True when every class folder of both splits holds its images."""
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        for cls in CLASSES:
            folder = os.path.join(root, split, cls)
            if not os.path.isdir(folder) or len(os.listdir(folder)) < per_class:
                return False
    return True
