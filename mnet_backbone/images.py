"""What the package counts as an image file, how deploy decodes one, and the error for one
that cannot be read.

One owner for the data sets' loaders (mmdet's checked COCO loading, mmpretrain's class folders)
and deploy's calibration folders and deployed detectors, so they accept the same files and one
``except`` catches an unreadable image from any of them. Imports numpy and Pillow only.
"""
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImageError", "load_rgb"]

# torchvision's ImageFolder extensions (lower case; the loaders compare case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImageError(OSError):
    """An image that cannot be read or decoded (or, during a run, too many of them)."""


def load_rgb(path: str) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (one clear error for a missing or broken file)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path!r} cannot be decoded ({exc})") from None
