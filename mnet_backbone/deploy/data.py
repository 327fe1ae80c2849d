"""Images with meaning for int8 calibration and agreement, without downloading anything.

No pretrained weights can be fetched here, and top-1 agreement between int8 and fp32 says little
for a randomly initialised network (its logits are near ties or one constant class). So the
agreement is measured on a MobileNetV1 *trained* to classify rendered images: one shape (circle,
square, triangle, star, cross, from :mod:`mnet_backbone.shapes`) of random size, colour, aspect and
rotation on a cluttered, textured, sometimes blurred background. :func:`shapes_classifier` trains
one quickly on CPU (and caches it); :func:`load_images` reads a user's own image folder for
calibration: :func:`calibration_files` lists (and checks) a calibration folder before any export
work, for the classifier's and the detectors' int8 export alike.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..images import IMAGE_EXTENSIONS, load_rgb
from ..model import MobileNetV1

__all__ = ["render_shapes", "normalize", "calibrate_bn", "train_classifier", "shapes_classifier",
           "load_images", "read_images", "calibration_files", "CalibrationError", "accuracy",
           "IMAGE_EXTENSIONS"]


class CalibrationError(ValueError):
    """Calibration images that cannot be used (the message names the folder and the fix)."""


def _plain_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth two-colour gradient with mild sensor noise (the easy, uncluttered variant)."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (xx * math.cos(theta) + yy * math.sin(theta) + 1.5) / 3.0
    arr = c0 + (c1 - c0) * t[..., None]
    return arr + rng.normal(0, rng.uniform(2, 8), arr.shape)


def render_shapes(count: int, size: int = 128, seed: int = 0,
                  clutter: bool = True) -> Tuple[Tensor, Tensor]:
    """``count`` RGB images (uint8, N x 3 x size x size) of one shape each, and class labels.

    ``clutter=True`` uses :mod:`mnet_backbone.shapes`' textured background with random strokes
    (a hard task to learn from scratch in minutes); ``clutter=False`` a smooth gradient with
    noise, same shapes, sizes, colours, rotations and blur.
    """
    from PIL import Image, ImageDraw, ImageFilter

    from ..shapes import CLASSES, ShapesSpec, draw_shape, render_image

    # Not shapes_cls.render_shape_image: its size, rotation and blur ranges and its random draws
    # differ, and these seeded images are what the cached shapes classifiers were trained on and
    # the benchmark's agreement figures measured on; sharing it would change every pixel.
    spec = ShapesSpec(image_size=(size, size), max_objects=1, min_size=max(8, size // 3),
                      max_size_frac=0.7, seed=seed)
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    i = 0
    while i < count:
        if clutter:
            img, objects = render_image(rng, spec)
            if len(objects) != 1:  # the placement rule rejected the only object: draw again
                continue
            label = objects[0]["category"]
        else:
            label = int(rng.integers(len(CLASSES)))
            cls = CLASSES[label]
            img = Image.fromarray(np.clip(_plain_background(rng, size), 0, 255).astype(np.uint8))
            extent = math.exp(rng.uniform(math.log(spec.min_size), math.log(0.7 * size)))
            aspect = math.exp(rng.uniform(-0.4, 0.4)) if cls != "star" else 1.0
            w, h = extent * math.sqrt(aspect), extent / math.sqrt(aspect)
            angle = rng.uniform(-0.3, 0.3) if cls != "circle" else 0.0
            cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw_shape(ImageDraw.Draw(img), cls, cx, cy, w, h, angle, colour)
            if rng.random() < 0.3:
                img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        images[i] = np.asarray(img.convert("RGB"))
        labels[i] = label
        i += 1
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


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
    eval-mode model at chance level), so :func:`train_classifier` ends with it.
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


def train_classifier(model: nn.Module, images: Tensor, labels: Tensor, *, epochs: int = 3,
                     batch: int = 32, lr: float = 3e-3, seed: int = 0,
                     log: Optional[Callable[[str], None]] = None) -> nn.Module:
    """Train ``model`` (AdamW, one-cycle cosine, random flips) on uint8 ``images``, then
    re-estimate its BatchNorm statistics on (up to 1024 of) them; returns it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(images) / batch)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, lr, total_steps=steps, pct_start=0.15)
    model.train()
    step = 0
    start = time.time()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), batch):
            idx = order[i:i + batch]
            x = normalize(images[idx])
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = nn.functional.cross_entropy(model(x), labels[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            step += 1
            if log and (step % 20 == 0 or step == steps):
                log(f"  step {step}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f}s)")
    return calibrate_bn(model, normalize(images[:1024]))


def shapes_classifier(alpha: float = 1.0, resolution: int = 128, *, num_train: int = 2400,
                      num_val: int = 400, epochs: int = 3, lr: float = 3e-3, seed: int = 0,
                      clutter: bool = True, cache_dir: Optional[str] = None,
                      log: Optional[Callable[[str], None]] = None
                      ) -> Tuple[MobileNetV1, Dict[str, object]]:
    """A MobileNetV1 (5 classes) trained on :func:`render_shapes` images, and its val accuracy.

    With ``cache_dir`` the trained weights are saved there and reused by the next call with the
    same settings. Returns ``(model in eval mode, info)``; ``info`` holds the settings, the val
    accuracy and the training time.
    """
    from ..shapes import CLASSES

    settings = dict(alpha=alpha, resolution=resolution, num_train=num_train, epochs=epochs,
                    lr=lr, seed=seed, clutter=clutter)
    name = "shapes_cls_" + "_".join(f"{k}{v}" for k, v in settings.items()) + ".pth"
    path = os.path.join(cache_dir, name) if cache_dir else None
    torch.manual_seed(seed)
    model = MobileNetV1(len(CLASSES), alpha, dropout=0.0)
    info: Dict[str, object] = dict(settings, classes=list(CLASSES), cached=False)
    if path and os.path.isfile(path):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        info.update(saved["info"], cached=True)
        return model.eval(), info
    if log:
        log(f"training a {alpha} MobileNetV1-{resolution} shapes classifier "
            f"({num_train} images x {epochs} epochs) ...")
    images, labels = render_shapes(num_train, resolution, seed, clutter)
    start = time.time()
    train_classifier(model, images, labels, epochs=epochs, lr=lr, seed=seed, log=log)
    val_images, val_labels = render_shapes(num_val, resolution, seed + 10_000, clutter)
    info.update(train_seconds=round(time.time() - start, 1),
                val_accuracy=accuracy(model, val_images, val_labels), num_val=num_val)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "info": info}, path)
    return model, info


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
    from PIL import Image

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
