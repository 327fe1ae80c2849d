"""The published ImageNet accuracy of the paper's 16 models, each number once, with its source.

The paper's two knobs, width multiplier alpha and resolution multiplier rho, give 16 models
(alpha 1.0, 0.75, 0.5, 0.25 x 224, 192, 160, 128 px). Two sources publish their accuracy:

* TF-slim's ``mobilenet_v1.md`` gives top-1 / top-5 for all 16 checkpoints, in two releases
  (the first one and the re-released checkpoints; both are kept).
* The paper prints top-1 for 7 of them: Table 6 (the four widths at 224 px) and Table 7
  (alpha 1.0 at the four resolutions). Keras documents these numbers for its files of the same
  checkpoints, so the weights registry (:mod:`mnet_backbone.weights.entries`) quotes them from
  here.

:func:`accuracy_table` joins them per model; :func:`published_accuracy` is one row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .model import PAPER_RESOLUTIONS

__all__ = ["PAPER_ALPHAS", "SOURCES", "ACCURACY_SOURCES", "TABLE_6", "TABLE_7", "AccuracyRow",
           "paper_top1", "accuracy_table", "published_accuracy", "check_source"]

PAPER_ALPHAS = (1.0, 0.75, 0.5, 0.25)

_TF_MODELS = "https://github.com/tensorflow/models/blob/"
SOURCES = {
    "tfslim_2017": (
        "TF-slim mobilenet_v1.md, first release (checkpoints "
        "mobilenet_v1_<alpha>_<res>_2017_06_14): " + _TF_MODELS
        + "a4e31b34db506e1ca0dcc5df00b71a56048f6f89/slim/nets/mobilenet_v1.md"),
    "tfslim_2018": (
        "TF-slim mobilenet_v1.md, re-released checkpoints (mobilenet_v1_2018_02_22 / "
        "2018_08_02): " + _TF_MODELS
        + "10cf1c0adfc8a7adaa476bf4ebb7e6c576526a5f/research/slim/nets/mobilenet_v1.md"),
    "paper": ("Howard et al. 2017, Table 6 (widths at 224 px) and Table 7 (alpha 1.0 per "
              "resolution); Keras documents the same numbers for its files"),
}
ACCURACY_SOURCES = tuple(SOURCES)

# The paper's ImageNet top-1 (%): Table 6 by width at 224 px, Table 7 by resolution at alpha 1.0.
TABLE_6 = {1.0: 70.6, 0.75: 68.4, 0.5: 63.7, 0.25: 50.6}
TABLE_7 = {224: 70.6, 192: 69.1, 160: 67.2, 128: 64.4}

# (alpha, resolution) -> (top-1 %, top-5 %), copied from the two files named in SOURCES.
_TFSLIM: Dict[str, Dict[Tuple[float, int], Tuple[float, float]]] = {
    "tfslim_2017": {
        (1.0, 224): (70.7, 89.5), (1.0, 192): (69.3, 88.9), (1.0, 160): (67.2, 87.5),
        (1.0, 128): (64.1, 85.3),
        (0.75, 224): (68.4, 88.2), (0.75, 192): (67.4, 87.3), (0.75, 160): (65.2, 86.1),
        (0.75, 128): (61.8, 83.6),
        (0.5, 224): (64.0, 85.4), (0.5, 192): (62.1, 84.0), (0.5, 160): (59.9, 82.5),
        (0.5, 128): (56.2, 79.6),
        (0.25, 224): (50.6, 75.0), (0.25, 192): (49.0, 73.6), (0.25, 160): (46.0, 70.7),
        (0.25, 128): (41.3, 66.2)},
    "tfslim_2018": {
        (1.0, 224): (70.9, 89.9), (1.0, 192): (70.0, 89.2), (1.0, 160): (68.0, 87.7),
        (1.0, 128): (65.2, 85.8),
        (0.75, 224): (68.4, 88.2), (0.75, 192): (67.2, 87.3), (0.75, 160): (65.3, 86.0),
        (0.75, 128): (62.1, 83.9),
        (0.5, 224): (63.3, 84.9), (0.5, 192): (61.7, 83.6), (0.5, 160): (59.1, 81.9),
        (0.5, 128): (56.3, 79.4),
        (0.25, 224): (49.8, 74.2), (0.25, 192): (47.7, 72.3), (0.25, 160): (45.5, 70.3),
        (0.25, 128): (41.5, 66.3)},
}


@dataclass(frozen=True)
class AccuracyRow:
    """Published ImageNet-1K accuracy of one alpha x resolution model (percent)."""

    alpha: float
    resolution: int
    top1: Optional[float]            # from ``source``; None where that source prints nothing
    top5: Optional[float]
    source: str                      # key of SOURCES
    tfslim_2017: Tuple[float, float]  # both TF-slim releases, whatever ``source`` is
    tfslim_2018: Tuple[float, float]
    paper_top1: Optional[float]      # the paper's number where it prints the model
    paper_table: str                 # "6", "7", "6, 7" or ""

    @property
    def citation(self) -> str:
        if self.source == "paper":
            return f"paper Table {self.paper_table}" if self.paper_table else "not in the paper"
        return {"tfslim_2017": "TF-slim mobilenet_v1.md (2017_06_14)",
                "tfslim_2018": "TF-slim mobilenet_v1.md (2018 re-release)"}[self.source]


def paper_top1(alpha: float, resolution: int) -> Tuple[Optional[float], str]:
    """The paper's top-1 of this model and the tables that print it (``"6, 7"``), or
    ``(None, "")`` where the paper prints none."""
    tables = (["6"] if resolution == 224 and alpha in TABLE_6 else []) + (
        ["7"] if alpha == 1.0 and resolution in TABLE_7 else [])
    if not tables:
        return None, ""
    top1 = TABLE_6[alpha] if tables[0] == "6" else TABLE_7[resolution]
    return top1, ", ".join(tables)


def check_source(source: str) -> None:
    """A ``ValueError`` naming the sources when ``source`` is none of them."""
    if source not in SOURCES:
        raise ValueError(f"unknown accuracy source {source!r}; choose one of "
                         f"{', '.join(ACCURACY_SOURCES)}")


def accuracy_table(source: str = "tfslim_2017") -> List[AccuracyRow]:
    """The 16 paper models (alpha 1.0, 0.75, 0.5, 0.25 x 224, 192, 160, 128 px), ``top1`` /
    ``top5`` from ``source`` (``tfslim_2017``, ``tfslim_2018`` or ``paper``: 7 rows printed)."""
    check_source(source)
    rows = []
    for alpha in PAPER_ALPHAS:
        for res in PAPER_RESOLUTIONS:
            paper, table = paper_top1(alpha, res)
            if source == "paper":
                top1, top5 = paper, None
            else:
                top1, top5 = _TFSLIM[source][(alpha, res)]
            rows.append(AccuracyRow(alpha, res, top1, top5, source,
                                    _TFSLIM["tfslim_2017"][(alpha, res)],
                                    _TFSLIM["tfslim_2018"][(alpha, res)], paper, table))
    return rows


def published_accuracy(alpha: float, resolution: int,
                       source: str = "tfslim_2017") -> Optional[AccuracyRow]:
    """The row of :func:`accuracy_table` for this model, None outside the 16."""
    for row in accuracy_table(source):
        if math.isclose(row.alpha, alpha) and row.resolution == resolution:
            return row
    return None
