"""Predictions drawn on the image they were made on (Pillow only).

:func:`draw_detections` draws each box in its class's colour with ``name score`` above it, and
a banner at the bottom that states the score threshold and the number of boxes, so a drawn
image says what it shows; :func:`draw_top_k` writes a classifier's best classes and
probabilities in the corner.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .models import Prediction

__all__ = ["draw_detections", "draw_top_k"]

# Distinct colours (Tableau 10), one per class index, repeating.
_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def _font(image: Image.Image) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(11, min(image.size) // 28))


def _text_box(draw: ImageDraw.ImageDraw, xy, text: str, font, fill) -> None:
    """``text`` at ``xy`` (top left) on a filled box, white or black, whichever reads."""
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=fill)
    ink = (0, 0, 0) if sum(fill) > 450 else (255, 255, 255)
    draw.text(xy, text, font=font, fill=ink)


def draw_detections(image: np.ndarray, prediction: Prediction, name_of: Callable[[int], str],
                    score_thr: float) -> np.ndarray:
    """A copy of ``image`` (H x W x 3 uint8 RGB) with the boxes of ``prediction`` (already cut
    at ``score_thr``), their class names (``name_of(class index)``) and scores, and the
    threshold stated at the top."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas)
    width = max(1, min(canvas.size) // 160)
    # lowest score first, so that the best boxes' labels end up on top
    for i in np.argsort(prediction.scores, kind="stable"):
        cls = int(prediction.classes[i])
        colour = _PALETTE[cls % len(_PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in prediction.boxes[i])
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        label = f"{name_of(cls)} {float(prediction.scores[i]):.2f}"
        height = draw.textbbox((0, 0), label, font=font)[3]
        _text_box(draw, (x1 + 2, max(2.0, y1 - height - 4)), label, font, colour)
    count = len(prediction.scores)
    banner = f"score >= {score_thr:g}: {count} box{'es' if count != 1 else ''}"
    height = draw.textbbox((0, 0), banner, font=font)[3]
    _text_box(draw, (4, canvas.height - height - 4), banner, font, (0, 0, 0))
    return np.asarray(canvas)


def draw_top_k(image: np.ndarray, prediction: Prediction,
               name_of: Callable[[int], str]) -> np.ndarray:
    """A copy of ``image`` with the classifier's top classes and probabilities, best first."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas)
    y = 4.0
    for rank, (score, cls) in enumerate(zip(prediction.scores, prediction.classes)):
        text = f"{rank + 1}. {name_of(int(cls))} {float(score):.3f}"
        _text_box(draw, (4, y), text, font, _PALETTE[0] if rank == 0 else (0, 0, 0))
        y = draw.textbbox((4, y), text, font=font)[3] + 6
    return np.asarray(canvas)
