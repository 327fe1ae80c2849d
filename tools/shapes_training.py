"""Classifiers trained on rendered shapes, for the benchmarks and the shipped test fixtures.

Top-1 agreement between int8 and fp32 says little for a randomly initialised network (its
logits are near ties or one constant class), and no pretrained weights can be fetched in a
benchmark run. So the agreement is measured on a MobileNetV1 *trained* to classify rendered
images (:func:`mnet_backbone.shapes.render_shapes`: one shape of random size, colour, aspect and
rotation on a cluttered or plain background). :func:`shapes_classifier` trains one quickly on
CPU and caches it; :func:`train_classifier` is its training loop, also used by
``tests/fixtures/make_classifier_fixture.py``.

Imported by the tools (their folder is on ``sys.path`` when they run) as ``shapes_training``.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from mnet_backbone.deploy.data import accuracy, calibrate_bn, normalize
from mnet_backbone.files import atomic_path
from mnet_backbone.model import MobileNetV1
from mnet_backbone.shapes import CLASSES, render_shapes

__all__ = ["CACHE_TAG", "train_classifier", "shapes_classifier"]

# Part of a cached classifier's file name: changed whenever the renderer's pixels change, so a
# classifier trained on the old images is never measured on the new ones ("r2": one renderer for
# every set; the gradient background's images changed).
CACHE_TAG = "r2"


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
    """A MobileNetV1 (5 classes) trained on :func:`~mnet_backbone.shapes.render_shapes`
    images, and its val accuracy.

    With ``cache_dir`` the trained weights are saved there and reused by the next call with the
    same settings (and the same renderer: :data:`CACHE_TAG`). Returns ``(model in eval mode,
    info)``; ``info`` holds the settings, the val accuracy and the training time.
    """
    settings = dict(alpha=alpha, resolution=resolution, num_train=num_train, epochs=epochs,
                    lr=lr, seed=seed, clutter=clutter)
    name = f"shapes_cls_{CACHE_TAG}_" + "_".join(f"{k}{v}" for k, v in settings.items()) + ".pth"
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
        with atomic_path(path) as tmp:
            torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    return model, info
