"""The paper's trade-off as pure functions of measured numbers: which alpha x resolution model
fits a latency budget.

The paper's two knobs, width multiplier alpha and resolution multiplier rho, trade ImageNet
accuracy for mult-adds (Tables 6-7, Figure 4). Given one measured :class:`Row` per model (its
latency on some machine, its mult-adds and parameters), this module joins the published
ImageNet accuracy (:mod:`mnet_backbone.published`, source per row):

:func:`pareto` keeps the models that no other model beats (at least as fast and at least as
accurate, better in one); :func:`choose` picks the most accurate one within a latency budget;
:func:`analyse` does both; :func:`usage` gives the config / builder lines and the weights entry
of a choice. The detector task has no published accuracy (no mAP is invented): its frontier and
choice rank by mult-adds instead, and say so.

Nothing here measures: timing the models on this machine, the printed report and the plot are
``tools/tradeoff.py`` (its timing loop: ``tools/tradeoff_timing.py``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from .model import (
    MIN_INPUT_SIZE,
    PAPER_RESOLUTIONS,
    PAPER_RHOS,
    SSD_EXTRA_CHANNELS,
    detector_widths,
    input_size,
)
from .published import PAPER_ALPHAS, SOURCES, check_source, published_accuracy
from .weights.entries import ENTRIES

__all__ = [
    "DETECTOR_SIZE",
    "TASKS",
    "BudgetError",
    "ModelSpec",
    "Row",
    "Tradeoff",
    "analyse",
    "check_task",
    "choose",
    "default_models",
    "pareto",
    "parse_models",
    "score_name",
    "usage",
    "weights_entry",
]

TASKS = ("classify", "ssdlite320")
DETECTOR_SIZE = 320  # SSDLite320's input; rho scales it for the detector task's default grid


# --- which models -------------------------------------------------------------------------------

def check_task(task: str) -> None:
    """A ``ValueError`` naming the tasks when ``task`` is none of them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the trade-off: width multiplier and input size in pixels (for the detector
    task, the detector's input size)."""

    alpha: float
    resolution: int

    @property
    def name(self) -> str:
        return f"{self.alpha}-{self.resolution}"


_SPEC_HELP = ("write models as ALPHA:RESOLUTION separated by commas, e.g. 0.5:160,1.0:224 "
              f"(alpha > 0, resolution an integer >= {MIN_INPUT_SIZE} px)")


def parse_models(text: str | Iterable[str], task: str = "classify") -> list[ModelSpec]:
    """``"0.25:128,0.5:128"`` (or a list of such items) as :class:`ModelSpec` s, in order,
    duplicates dropped; a bad item is a ``ValueError`` naming it and the expected form."""
    check_task(task)
    items = [text] if isinstance(text, str) else list(text)
    items = [p for item in items for p in re.split(r"[,\s]+", item.strip()) if p]
    if not items:
        raise ValueError(f"no models given; {_SPEC_HELP}")
    specs: list[ModelSpec] = []
    for item in items:
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?):([0-9]+)", item)
        if not match:
            raise ValueError(f"bad model {item!r}: {_SPEC_HELP}")
        alpha, res = float(match.group(1)), int(match.group(2))
        if not alpha > 0:
            raise ValueError(f"bad model {item!r}: alpha (width multiplier) must be > 0")
        if res < MIN_INPUT_SIZE:
            raise ValueError(f"bad model {item!r}: {res} px is under MobileNetV1's smallest "
                             f"input, {MIN_INPUT_SIZE} px")
        if task == "ssdlite320":
            try:
                detector_widths(alpha, (3, 4), SSD_EXTRA_CHANNELS)  # the builder's widths
            except ValueError as exc:
                raise ValueError(f"bad model {item!r} for the SSDLite320 detector: {exc}") from None
        spec = ModelSpec(alpha, res)
        if spec not in specs:
            specs.append(spec)
    return specs


def default_models(task: str = "classify") -> list[ModelSpec]:
    """The paper's 16: alpha 1.0, 0.75, 0.5, 0.25 x rho 1, 0.857, 0.714, 0.571 (224, 192, 160,
    128 px; for SSDLite320 rho scales its 320 px input: 320, 274, 228, 183 px)."""
    check_task(task)
    sizes = PAPER_RESOLUTIONS if task == "classify" else tuple(
        input_size(rho, DETECTOR_SIZE) for rho in PAPER_RHOS)
    return [ModelSpec(a, r) for a in PAPER_ALPHAS for r in sizes]


# --- measured rows and the frontier -------------------------------------------------------------

@dataclass
class Row:
    """One measured model, with its published accuracy once :func:`analyse` has joined it."""

    alpha: float
    resolution: int
    task: str
    mult_adds: int
    params: int
    latency_ms: float            # median of the timed calls, one call = one batch
    p90_ms: float
    backend: str
    precision: str
    batch: int
    threads: int
    samples: int = 0
    min_ms: float | None = None  # fastest call: what the CPU does when nothing else runs
    auto_ms: dict[str, float] | None = None  # backend="auto": each backend's median
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str | None = None
    on_frontier: bool = False
    dominated_by: str | None = None

    @property
    def name(self) -> str:
        return ModelSpec(self.alpha, self.resolution).name

    def as_dict(self) -> dict:
        return dict(asdict(self), name=self.name)

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def score_name(task: str) -> str:
    """What the frontier ranks by: published top-1, or mult-adds for the detector."""
    return "top1" if task == "classify" else "mult_adds"


def _score(row: Row) -> float | None:
    return row.top1 if row.task == "classify" else float(row.mult_adds)


def _preference(row: Row, score: Callable[[Row], float | None],
                latency: Callable[[Row], float]) -> tuple:
    """Order of preference: higher score, then faster, fewer mult-adds, fewer params, name."""
    return (-score(row), latency(row), row.mult_adds, row.params, row.name)


def pareto(rows: Sequence[Row], score: Callable[[Row], float | None] = _score,
           latency: Callable[[Row], float] = lambda r: r.latency_ms) -> list[Row]:
    """The rows no other row dominates (at least as fast and at least as good, better in one),
    fastest first. Rows without a score are left out; exact ties (same time and score) both
    stay. Sets ``on_frontier`` and ``dominated_by`` (the best of its dominators) on each row."""
    scored = [r for r in rows if score(r) is not None]
    for row in rows:
        row.on_frontier, row.dominated_by = False, None
    front = []
    for row in scored:
        better = [o for o in scored if o is not row and latency(o) <= latency(row)
                  and score(o) >= score(row)
                  and (latency(o) < latency(row) or score(o) > score(row))]
        if better:
            row.dominated_by = min(better, key=lambda o: _preference(o, score, latency)).name
        else:
            row.on_frontier = True
            front.append(row)
    return sorted(front, key=lambda r: (latency(r), -score(r), r.name))


class BudgetError(ValueError):
    """No model fits the budget; ``result`` holds the full :class:`Tradeoff` (when measured)."""

    def __init__(self, message: str, result: Tradeoff | None = None):
        super().__init__(message)
        self.result = result


def choose(rows: Sequence[Row], budget_ms: float,
           score: Callable[[Row], float | None] = _score,
           latency: Callable[[Row], float] = lambda r: r.latency_ms) -> Row:
    """The best row with ``latency <= budget_ms``: highest score, ties to the faster one (then
    fewer mult-adds, params, name). ``BudgetError`` names the fastest model and its time when
    none fits."""
    if not budget_ms > 0:
        raise ValueError(f"the latency budget must be > 0 ms, got {budget_ms!r}")
    scored = [r for r in rows if score(r) is not None]
    if not scored:
        raise ValueError("no measured model has a published accuracy to rank by; include one "
                         "of the 16 paper models (alpha 1.0/0.75/0.5/0.25 x 224/192/160/128)")
    fits = [r for r in scored if latency(r) <= budget_ms]
    if not fits:
        fastest = min(scored, key=lambda r: (latency(r), r.name))
        raise BudgetError(
            f"no model fits {budget_ms:g} ms: the fastest, {fastest.name} "
            f"({_where(fastest)}), takes {latency(fastest):.3f} ms; raise the budget "
            f"(--budget-ms) to at least {math.ceil(latency(fastest) * 100) / 100:.2f}, or "
            f"add smaller models (lower alpha or resolution)")
    return min(fits, key=lambda r: _preference(r, score, latency))


def _where(row: Row) -> str:
    return f"{row.backend} {row.precision}, batch {row.batch}, {row.threads} threads"


@dataclass
class Tradeoff:
    """The measured rows (fastest first), the frontier, and the choice within the budget."""

    task: str
    rows: list[Row]
    frontier: list[Row]
    choice: Row | None
    budget_ms: float | None
    accuracy_source: str
    score: str = "top1"
    options: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"task": self.task, "score": self.score, "budget_ms": self.budget_ms,
                    "accuracy_source": self.accuracy_source,
                    "accuracy_source_text": SOURCES[self.accuracy_source], "options": self.options,
                    "rows": [r.as_dict() for r in self.rows],
                    "frontier": [r.name for r in self.frontier],
                    "choice": None if self.choice is None else dict(
                        name=self.choice.name, **usage(self.choice))}


def analyse(rows: Sequence[Row], budget_ms: float | None = None,
            accuracy_source: str = "tfslim_2017", options: dict | None = None) -> Tradeoff:
    """Join the published accuracy (classify), keep the frontier, choose within ``budget_ms``.

    Raises :class:`BudgetError` (with ``result``) when no model fits the budget."""
    check_source(accuracy_source)
    rows = sorted(rows, key=lambda r: (r.latency_ms, r.name))
    tasks = {r.task for r in rows}
    if len(tasks) > 1:
        raise ValueError(f"rows of several tasks ({sorted(tasks)}) cannot share one frontier")
    task = tasks.pop() if tasks else "classify"
    for row in rows:
        published = published_accuracy(row.alpha, row.resolution, accuracy_source) \
            if task == "classify" else None
        row.top1 = published.top1 if published else None
        row.top5 = published.top5 if published else None
        row.accuracy_source = (published.citation if published and published.top1 is not None
                               else None)
    front = pareto(rows)
    result = Tradeoff(task, rows, front, None, budget_ms, accuracy_source, score_name(task),
                      dict(options or {}))
    if budget_ms is not None:
        try:
            result.choice = choose(rows, budget_ms)
        except BudgetError as exc:
            raise BudgetError(str(exc), result) from None
    return result


# --- from a choice to a config ------------------------------------------------------------------

def weights_entry(alpha: float, resolution: int, task: str = "classify"
                  ) -> tuple[str | None, str, list[str]]:
    """(entry name or None, a note, other entries of the same model) from
    :data:`mnet_backbone.weights.ENTRIES`: the Keras file of Google's checkpoint at this alpha
    and resolution (the detector's backbone: its 224 px checkpoint, as TF's SSD-MobileNet
    used); else the nearest resolution at this alpha; else none."""
    same_alpha = [e for e in ENTRIES.values() if math.isclose(e.alpha, alpha)]
    if not same_alpha:
        widths = sorted({e.alpha for e in ENTRIES.values()})
        return None, (f"no released weights for alpha {alpha} (released: "
                      f"{', '.join(f'{w:g}' for w in widths)}): train it from scratch"), []
    target = 224 if task == "ssdlite320" else resolution
    # the Keras files first (TF-slim's checkpoints, the accuracy column), then other sources
    best = min(same_alpha, key=lambda e: (abs(e.resolution - target), e.source != "keras",
                                          e.name))
    others = [e.name for e in same_alpha if e.resolution == best.resolution and e is not best]
    if task == "ssdlite320":
        note = f"ImageNet backbone weights ({best.resolution} px checkpoint)"
    elif best.resolution == resolution:
        note = "ImageNet weights of this model"
    else:
        note = (f"trained at {best.resolution} px; no accuracy is published for it at "
                f"{resolution} px")
    return best.name, note, others


def _backbone_settings(entry_name: str | None) -> str:
    """The mmdet backbone arguments the weights need, written out (loading would set them)."""
    if entry_name is None:
        return ""
    kw = ENTRIES[entry_name].model_kwargs
    parts = []
    if kw.get("tf_padding"):
        parts.append("tf_padding=True")
    if "bn_eps" in kw:
        parts.append(f"norm_cfg=dict(type='BN', eps={kw['bn_eps']:g})")
    return "".join(", " + p for p in parts)


def usage(row: Row | ModelSpec, task: str | None = None) -> dict[str, object]:
    """How to build the chosen model: ``weights`` (entry name or None), ``weights_note``,
    ``other_weights``, ``mmdet`` (the ``backbone=dict(...)`` line, or the config to start from),
    ``torchvision`` (the ``get_model(...)`` line) and, for the classifier, ``core``."""
    task = task or getattr(row, "task", "classify")
    check_task(task)
    alpha, res = row.alpha, row.resolution
    entry, note, others = weights_entry(alpha, res, task)
    try:
        from .tv_models.classification import member_name
        member = member_name(entry) if entry else None
    except ImportError:  # torchvision missing: the enum name follows the same rule
        member = re.sub(r"[^0-9A-Za-z]+", "_", entry).strip("_").upper() if entry else None
    init = (f", init_cfg=dict(type='Pretrained', checkpoint='mnet://{entry}')" if entry else "")
    out: dict[str, object] = {"weights": entry, "weights_note": note, "other_weights": others}
    if task == "classify":
        out["mmdet"] = (f"backbone=dict(type='MobileNetV1', alpha={alpha}, out_indices=(4,)"
                        f"{_backbone_settings(entry)}{init})  # input {res} px")
        out["torchvision"] = (f"torchvision.models.get_model('mobilenet_v1', weights='{member}')"
                              if entry and note == "ImageNet weights of this model" else
                              f"torchvision.models.get_model('mobilenet_v1', alpha={alpha})"
                              f"  # input {res} px")
        out["core"] = (f"mnet_backbone.weights.mobilenet_v1(weights='{entry}')  # input {res} px"
                       if entry else f"mnet_backbone.MobileNetV1(alpha={alpha})  # input {res} px")
        return out
    weights = f"weights_backbone='{member}'" if entry else f"alpha={alpha}"
    line = f"torchvision.models.get_model('ssdlite320_mobilenet_v1', {weights}, num_classes=91)"
    if res != DETECTOR_SIZE:
        line += f"; model.transform.fixed_size = ({res}, {res})"
    out["torchvision"] = line
    if res == DETECTOR_SIZE:
        out["mmdet"] = (f"_base_ = 'configs/ssdlite320_mnet.py'; model = dict(backbone=dict("
                        f"alpha={alpha}{init}))")
    else:
        out["mmdet"] = (f"configs/ssdlite320_mnet.py writes its anchors for 320 px; at {res} px "
                        f"use the torchvision line (what was timed)")
    return out
