"""Real photos for int8 calibration and evaluation: two sets that share no source photo.

The photos are scikit-image's bundled ones (``skimage.data``, no download): 19 real photographs
and scans, colour and grey. :data:`CALIBRATION_PHOTOS` and :data:`EVALUATION_PHOTOS` split them
(the two stereo-motorcycle views stay together, on the evaluation side), and :func:`views` makes
more images of one photo by crops and horizontal flips, so that neither set is only a dozen images.
Preprocessing is TF-slim's for Google's MobileNetV1 graphs (square crop, bilinear resize with
half-pixel centres, RGB in [-1, 1]) in NumPy, the same as ``tests/real_weights.py``.

    calib = photo_views(CALIBRATION_PHOTOS)        # N x 3 x 224 x 224 float32 tensor
    evals = photo_views(EVALUATION_PHOTOS)

scikit-image is imported on use (``pip install scikit-image``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["CALIBRATION_PHOTOS", "EVALUATION_PHOTOS", "ALL_PHOTOS", "VIEWS", "load_photo",
           "view", "photo_views"]

# name -> skimage.data function (and the index of a tuple-valued one).
_SOURCES = {"motorcycle_left": ("stereo_motorcycle", 0),
            "motorcycle_right": ("stereo_motorcycle", 1)}

# Disjoint by source photo. Each side has colour photos, grey photos and textures.
CALIBRATION_PHOTOS: Tuple[str, ...] = ("chelsea", "astronaut", "immunohistochemistry", "camera",
                                       "coins", "moon", "brick", "page", "hubble_deep_field")
EVALUATION_PHOTOS: Tuple[str, ...] = ("coffee", "rocket", "motorcycle_left", "motorcycle_right",
                                      "retina", "horse", "clock", "grass", "gravel", "text")
ALL_PHOTOS = CALIBRATION_PHOTOS + EVALUATION_PHOTOS

# (crop fraction of the shorter side, anchor: c / tl / tr / bl / br, horizontal flip)
VIEWS: Tuple[Tuple[float, str, bool], ...] = tuple(
    (frac, anchor, flip) for flip in (False, True)
    for frac, anchor in ((0.875, "c"), (1.0, "c"), (0.6, "tl"), (0.6, "tr"), (0.6, "bl"),
                         (0.6, "br")))


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (H, W, 3); grey photos are repeated on 3 channels."""
    import skimage.data

    source, index = _SOURCES.get(name, (name, None))
    image = getattr(skimage.data, source)()
    if index is not None:
        image = image[index]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(float(image.max()), 1e-12))).astype(np.uint8)
    return image[..., :3]


def _resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (TF2 ``tf.image.resize``, no antialiasing)."""
    def axis(n_in: int):
        src = np.clip((np.arange(size) + 0.5) * (n_in / size) - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    y0, y1, wy = axis(image.shape[0])
    x0, x1, wx = axis(image.shape[1])
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def view(image: np.ndarray, fraction: float = 0.875, anchor: str = "c", flip: bool = False,
         size: int = 224) -> np.ndarray:
    """A square crop (``fraction`` of the shorter side, at the centre or a corner), optionally
    flipped, resized to ``size``; float32 (H, W, 3) RGB in [-1, 1]."""
    h, w = image.shape[:2]
    side = int(round(min(h, w) * fraction))
    top = {"c": (h - side) // 2, "t": 0, "b": h - side}[anchor[0] if anchor != "c" else "c"]
    left = {"c": (w - side) // 2, "l": 0, "r": w - side}[anchor[-1] if anchor != "c" else "c"]
    crop = image[top:top + side, left:left + side].astype(np.float64)
    if flip:
        crop = crop[:, ::-1]
    return (_resize_bilinear(crop, size) / 127.5 - 1.0).astype(np.float32)


def photo_views(names: Sequence[str], views: Sequence[Tuple[float, str, bool]] = VIEWS,
                size: int = 224):
    """NCHW float32 torch tensor of every view of every photo (photo-major order)."""
    import torch

    out: List[np.ndarray] = []
    for name in names:
        image = load_photo(name)
        out += [view(image, frac, anchor, flip, size) for frac, anchor, flip in views]
    batch = np.stack(out).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch))
