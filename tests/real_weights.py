"""Real ImageNet weights and real photos for tests (no download at test time).

* :func:`real_graph_path` - the cached TF frozen graph with Google's MobileNetV1 1.0/224 ImageNet
  weights (``mnet_backbone.weights.imagenet_graph_path``); skips the test with how to get it
  when it is missing, except under CI (``CI=true``), where a missing graph is a failure.
* :func:`real_model` - the core model with those weights (1001 classes, or 1000 with
  ``drop_background=True``), eval mode, converted once per process.
* :data:`PHOTOS` - scikit-image photos whose ImageNet class is unambiguous, with the accepted
  ImageNet-1k classes (index -> name); :func:`photo` / :func:`photo_batch` preprocess them the
  TF-slim way (center crop 0.875, bilinear resize, RGB in [-1, 1]) with NumPy only, so the
  stored TensorFlow reference (``fixtures/tf_graph_reference.json``) and the tests see the same
  input.

Class indices are ImageNet-1k's (0..999); Google's 1001-class heads put class ``i`` at output
``i + 1`` (output 0 is background).
"""
import functools
import os
from typing import Dict, List, Tuple

import numpy as np

RESOLUTION = 224
CROP_FRACTION = 0.875

# The few ImageNet-1k classes the photo checks need (index: name, from the ILSVRC-2012 synsets).
CAT = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat",
       285: "Egyptian cat"}
CUP = {504: "coffee mug", 967: "espresso", 968: "cup"}
ROCKET = {657: "missile", 744: "projectile, missile", 812: "space shuttle"}
MOTORBIKE = {665: "moped", 670: "motor scooter"}  # ImageNet-1k has no "motorcycle" class
# photo name in skimage.data -> the accepted top-1 classes. Left out as ambiguous for ImageNet-1k:
# astronaut (a portrait; the graph says 909 "wok") and clock (grey-scale; 818 "spotlight").
PHOTOS: Dict[str, Dict[int, str]] = {"chelsea": CAT, "coffee": CUP, "rocket": ROCKET,
                                     "stereo_motorcycle": MOTORBIKE}


def _require(message: str):
    """Skip with ``message`` (how to get what is missing); fail under CI, which must have it."""
    import pytest
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"on CI: {message}")
    pytest.skip(message)


def real_graph_path() -> str:
    """The cached real graph's path (skip with instructions when missing; fail on CI)."""
    from mnet_backbone.weights import MissingGraphError, imagenet_graph_path
    try:
        return imagenet_graph_path()
    except MissingGraphError as exc:
        _require(str(exc))


@functools.lru_cache(maxsize=2)
def _real_model(drop_background: bool):
    from mnet_backbone.weights import mobilenet_v1
    kwargs = {} if drop_background else {"num_classes": 1001}
    return mobilenet_v1(weights=real_graph_path(), drop_background=drop_background,
                        **kwargs).eval()


def real_model(drop_background: bool = False):
    """Google's MobileNetV1 1.0/224 ImageNet model (core ``MobileNetV1``, eval mode; TF padding
    and BN eps 1e-3 from the graph). Shared per process: copy it before changing it."""
    return _real_model(bool(drop_background))


def _resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (TF2 ``tf.image.resize``, no antialiasing)."""
    def axis_weights(n_in: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        src = np.clip(src, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo)
    y0, y1, wy = axis_weights(image.shape[0])
    x0, x1, wx = axis_weights(image.shape[1])
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (H, W, 3)."""
    try:
        import skimage.data
    except ImportError:
        _require("scikit-image is not installed: pip install scikit-image (in the 'dev' extra)")
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def photo(name: str, size: int = RESOLUTION) -> np.ndarray:
    """The photo preprocessed for Google's MobileNetV1: square center crop of 0.875 of the
    shorter side, bilinear resize to ``size``, RGB scaled to [-1, 1]; float32 (H, W, 3)."""
    image = load_photo(name).astype(np.float64)
    h, w = image.shape[:2]
    side = int(round(min(h, w) * CROP_FRACTION))
    top, left = (h - side) // 2, (w - side) // 2
    image = _resize_bilinear(image[top:top + side, left:left + side], size)
    return (image / 127.5 - 1.0).astype(np.float32)


def photo_batch(names: List[str] = None, size: int = RESOLUTION):
    """``(torch NCHW float32 batch, names)`` of :data:`PHOTOS` (or the given names)."""
    import torch
    names = list(PHOTOS) if names is None else list(names)
    batch = np.stack([photo(n, size) for n in names]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch)), names
