"""Synthetic shapes on cluttered backgrounds: the one renderer, and the seeded detection set.

:func:`render_image` draws every synthetic image of the package: the detection set's scenes
(written here in COCO format), the classification set's one-shape images
(:mod:`mnet_backbone.shapes_cls`) and the rendered calibration / evaluation images of deploy and
the benchmarks (:func:`render_shapes`). A :class:`ShapesSpec` says how: image size, how many
objects, their sizes, and the background (textured clutter, or a smooth gradient).

The detection set (:func:`make_shapes_dataset`) is written as ordinary JPEG files plus
``annotations/instances_{train,val}2017.json``, the layout of COCO itself, so mmdet's
``CocoDataset``/``CocoMetric`` (and any COCO tool) read it unchanged.

Objects are drawn in random depth order and may overlap. A new object is placed only where it
leaves every earlier object at least half visible, and every box is the box of the pixels that stay
*visible*, computed from a per-pixel instance map, so boxes never claim hidden parts.

The annotations are COCO-complete: ``segmentation`` polygons of each object's visible pixels
(:func:`mask_to_polygons`: their union rasterised by pycocotools is exactly those pixels, also
where an object in front leaves a hole), ``area`` (the number of visible pixels), ``iscrowd``
(always 0), ``bbox``. pycocotools' ``segm`` evaluation and torchvision's detection reference
(``ConvertCocoPolysToMask``) read them as they read COCO.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

CLASSES = ("circle", "square", "triangle", "star", "cross")
MIN_VISIBLE = 0.5  # fraction of an object's own area that must stay visible


@dataclass(frozen=True)
class ShapesSpec:
    num_train: int = 800
    num_val: int = 200
    image_size: Tuple[int, int] = (320, 320)  # (width, height)
    max_objects: int = 6
    min_size: int = 24  # px, shorter side of an object's box
    max_size_frac: float = 0.6  # of the shorter image side
    seed: int = 0
    clutter: bool = True  # False: a smooth two-colour gradient with mild noise instead


def single_shape_spec(size: int, clutter: bool = True) -> ShapesSpec:
    """One shape per ``size`` x ``size`` image, its shorter side at least a third of the image
    (the rendered calibration and evaluation images of deploy and the benchmarks)."""
    return ShapesSpec(image_size=(size, size), max_objects=1, min_size=max(8, size // 3),
                      max_size_frac=0.7, clutter=clutter)


def _polygon(cls: str, cx: float, cy: float, w: float, h: float,
             angle: float) -> List[Tuple[float, float]]:
    if cls == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif cls == "triangle":
        pts = [(0, -1), (1, 1), (-1, 1)]
    elif cls == "star":
        pts = [((1.0 if i % 2 == 0 else 0.45) * math.sin(i * math.pi / 5),
                -(1.0 if i % 2 == 0 else 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
    elif cls == "cross":
        t = 0.35
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t),
               (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(f"no polygon for class {cls!r}")
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x * w / 2) * c - (y * h / 2) * s, cy + (x * w / 2) * s + (y * h / 2) * c)
            for x, y in pts]


def _runs(row: np.ndarray) -> List[Tuple[int, int]]:
    """``[start, end)`` of the runs of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons (``[x0, y0, x1, y1, ...]``, pixel-edge coordinates: pixel ``(x, y)`` is the
    square ``[x, x+1] x [y, y+1]``) whose union is exactly the True pixels of ``mask``.

    COCO polygons cannot have holes (pycocotools takes the union of an object's polygons), so the
    mask is cut into stacks of row runs: each stack is a run of pixels per row, overlapping one
    run of the row above and one of the row below. A stack's outline is a simple polygon (left
    ends down, right ends up); the stacks tile the mask without overlap.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = [_runs(r) for r in mask]
    stacks: List[List[Tuple[int, int, int]]] = []  # (row, start, end) per stack
    open_stacks: Dict[Tuple[int, int], int] = {}  # run of the previous row -> stack index
    for y, runs in enumerate(rows):
        prev = list(open_stacks)
        # How many runs of the other row each run overlaps: only 1-1 overlaps continue a stack.
        down = {p: [r for r in runs if r[0] < p[1] and p[0] < r[1]] for p in prev}
        up = {r: [p for p in prev if r[0] < p[1] and p[0] < r[1]] for r in runs}
        new_open: Dict[Tuple[int, int], int] = {}
        for run in runs:
            above = up[run]
            if len(above) == 1 and len(down[above[0]]) == 1:
                index = open_stacks[above[0]]
            else:
                index = len(stacks)
                stacks.append([])
            stacks[index].append((y, run[0], run[1]))
            new_open[run] = index
        open_stacks = new_open
    polygons = []
    for stack in stacks:
        points: List[Tuple[int, int]] = []
        for y, x0, _ in stack:  # down the left side: a vertical edge per row, steps between
            points += [(x0, y), (x0, y + 1)]
        for y, _, x1 in reversed(stack):  # up the right side
            points += [(x1, y + 1), (x1, y)]
        polygons.append([float(v) for point in _simplify(points) for v in point])
    return polygons


def _simplify(points: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Drop repeated points and the middle points of straight runs (a closed polygon)."""
    out: List[Tuple[int, int]] = []
    for p in points:
        if out and out[-1] == p:
            continue
        out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    kept: List[Tuple[int, int]] = []
    for i, b in enumerate(out):
        a, c = (kept[-1] if kept else out[-1]), out[(i + 1) % len(out)]
        ab, bc = (b[0] - a[0], b[1] - a[1]), (c[0] - b[0], c[1] - b[1])
        if ab[0] * bc[1] == ab[1] * bc[0] and ab[0] * bc[0] + ab[1] * bc[1] > 0:
            continue  # b lies on the straight line a-c
        kept.append(b)
    return kept


def cluttered_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Textured, cluttered background: smooth colour noise, stripes and thin random strokes."""
    low = rng.uniform(40, 215, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.uint8)
    img = Image.fromarray(low).resize((width, height), Image.BICUBIC)
    arr = np.asarray(img).astype(np.float32)
    if rng.random() < 0.5:  # stripes
        period = rng.uniform(6, 30)
        yy, xx = np.mgrid[0:height, 0:width]
        theta = rng.uniform(0, math.pi)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        arr += stripes[..., None] * rng.uniform(5, 25)
    arr += rng.normal(0, rng.uniform(3, 12), size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 20))):  # clutter strokes, thinner than any object
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.normal(0, 60), y0 + rng.normal(0, 60)
        draw.line([(x0, y0), (x1, y1)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
                  width=int(rng.integers(1, 3)))
    return img


def plain_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth two-colour gradient with mild sensor noise (the easy, uncluttered variant)."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width] / max(max(width, height) - 1, 1)
    t = (xx * math.cos(theta) + yy * math.sin(theta) + 1.5) / 3.0
    arr = c0 + (c1 - c0) * t[..., None]
    arr = arr + rng.normal(0, rng.uniform(2, 8), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def draw_shape(draw: ImageDraw.ImageDraw, cls: str, cx: float, cy: float, w: float, h: float,
               angle: float, fill) -> None:
    """One filled shape of class ``cls``: box ``w`` x ``h`` centred at (``cx``, ``cy``), rotated by
    ``angle`` radians (ellipses are not rotated); ``fill`` is a colour, or an id on an "I" image."""
    if cls == "circle":  # an ellipse: "circle" class covers aspect ratios too
        draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
    else:
        draw.polygon(_polygon(cls, cx, cy, w, h, angle), fill=fill)


def render_image(rng: np.random.Generator, spec: ShapesSpec,
                 category: Optional[int] = None) -> Tuple[Image.Image, List[Dict]]:
    """One image and its objects (class index, visible box ``[x, y, w, h]``, ``area``,
    ``segmentation``): 1 to ``spec.max_objects`` shapes of random class (``category``: all of
    that class), size, aspect, rotation, colour and position; a third of the images slightly
    blurred. An object that would hide more than half of an earlier one is left out, so an image
    may hold fewer objects than drawn (see :func:`render_single`)."""
    width, height = spec.image_size
    background = cluttered_background if spec.clutter else plain_background
    img = background(rng, width, height)
    ids = Image.new("I", (width, height), 0)  # instance map: 0 = background, k = object k
    draw, draw_ids = ImageDraw.Draw(img), ImageDraw.Draw(ids)
    objects: List[Dict] = []
    full_area: List[int] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        cls_idx = int(rng.integers(len(CLASSES))) if category is None else category
        cls = CLASSES[cls_idx]
        max_size = spec.max_size_frac * min(width, height)
        size = math.exp(rng.uniform(math.log(spec.min_size * 1.3), math.log(max_size)))
        aspect = math.exp(rng.uniform(-0.5, 0.5)) if cls != "star" else 1.0
        w, h = min(size * math.sqrt(aspect), width), min(size / math.sqrt(aspect), height)
        angle = rng.uniform(-0.3, 0.3) if cls != "circle" else 0.0
        cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
        # Try the new object on a copy of the instance map; keep it only if every earlier
        # object stays at least MIN_VISIBLE visible.
        trial = ids.copy()
        k = len(objects) + 1
        draw_shape(ImageDraw.Draw(trial), cls, cx, cy, w, h, angle, k)
        counts = np.bincount(np.asarray(trial, dtype=np.int32).ravel(), minlength=k + 1)
        if counts[k] < spec.min_size ** 2 * 0.3:
            continue
        if any(counts[j + 1] < MIN_VISIBLE * full_area[j] for j in range(len(objects))):
            continue
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw_shape(draw, cls, cx, cy, w, h, angle, colour)
        draw_shape(draw_ids, cls, cx, cy, w, h, angle, k)
        objects.append(dict(category=cls_idx))
        full_area.append(int(counts[k]))
    id_map = np.asarray(ids, dtype=np.int32)
    for k, obj in enumerate(objects, start=1):
        ys, xs = np.nonzero(id_map == k)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        obj["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        obj["area"] = float(len(xs))
        obj["segmentation"] = [
            [v + (x0 if i % 2 == 0 else y0) for i, v in enumerate(polygon)]
            for polygon in mask_to_polygons(id_map[y0:y1, x0:x1] == k)]
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img, objects


def render_single(rng: np.random.Generator, spec: ShapesSpec,
                  category: Optional[int] = None) -> Tuple[Image.Image, int]:
    """An image of :func:`render_image` holding exactly one shape, and its class index (drawn
    again in the rare case the shape was left out); ``spec.max_objects`` should be 1."""
    while True:
        img, objects = render_image(rng, spec, category)
        if len(objects) == 1:
            return img, objects[0]["category"]


def render_shapes(count: int, size: int = 128, seed: int = 0,
                  clutter: bool = True) -> Tuple[Tensor, Tensor]:
    """``count`` RGB images (uint8, N x 3 x size x size) of one shape each
    (:func:`single_shape_spec`), and their class labels: the rendered calibration and evaluation
    images. ``clutter=True``: the detection set's textured background with random strokes (a
    hard task to learn from scratch in minutes); ``clutter=False``: a smooth gradient with noise.
    The same arguments always give the same images."""
    spec = single_shape_spec(size, clutter)
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for i in range(count):
        img, labels[i] = render_single(rng, spec)
        images[i] = np.asarray(img.convert("RGB"))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _write_split(root: str, split: str, count: int, spec: ShapesSpec,
                 rng: np.random.Generator) -> str:
    img_dir = os.path.join(root, f"{split}2017")
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img, objects = render_image(rng, spec)
        name = f"{i:06d}.jpg"
        img.save(os.path.join(img_dir, name), quality=92)
        image_id = i + 1
        images.append(dict(id=image_id, file_name=name, width=img.width, height=img.height))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=obj["category"] + 1,
                                    segmentation=obj["segmentation"], bbox=obj["bbox"],
                                    area=obj["area"], iscrowd=0))
    ann_file = os.path.join(root, "annotations", f"instances_{split}2017.json")
    os.makedirs(os.path.dirname(ann_file), exist_ok=True)
    with open(ann_file, "w") as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=i + 1, name=n, supercategory="shape")
                                   for i, n in enumerate(CLASSES)]), f)
    return ann_file


def make_shapes_dataset(root: str, spec: ShapesSpec = ShapesSpec()) -> Dict[str, str]:
    """Write the data set under ``root`` (COCO layout); returns the annotation file per split.

    The same ``spec`` (including its seed) always produces the same files.
    """
    if spec.num_train < 1 or spec.num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {spec.num_train}, "
                         f"{spec.num_val}")
    if min(spec.image_size) < 2 * spec.min_size:
        raise ValueError(f"image_size {spec.image_size} is too small for objects of "
                         f"{spec.min_size}px; use at least {2 * spec.min_size}px")
    rng = np.random.default_rng(spec.seed)
    return {split: _write_split(root, split, n, spec, rng)
            for split, n in (("train", spec.num_train), ("val", spec.num_val))}


def is_complete(root: str) -> bool:
    """True when both annotation files and image folders exist under ``root``."""
    return all(os.path.isfile(os.path.join(root, "annotations", f"instances_{s}2017.json"))
               and os.path.isdir(os.path.join(root, f"{s}2017")) for s in ("train", "val"))
