"""The paper's trade-off on this machine: which alpha x resolution model fits a latency budget.

The paper's two knobs, width multiplier alpha and resolution multiplier rho, trade ImageNet
accuracy for mult-adds (Tables 6-7, Figure 4). This module joins, per model:

* the published ImageNet accuracy (:func:`accuracy_table`): TF-slim's ``mobilenet_v1.md`` gives
  top-1 / top-5 for all 16 alpha x resolution checkpoints (first release and re-release, both
  kept); the paper prints top-1 for its 7 Table 6 / Table 7 rows. Every row names its source.
* mult-adds and parameters by the paper's rule (:mod:`mnet_backbone.cost`);
* latency measured on this machine (:func:`measure`): the classifier, or the SSDLite320
  detector built on each backbone, exported and run through :mod:`mnet_backbone.deploy`
  (ONNX Runtime / OpenVINO at fp32, bf16 or int8, ``backend="auto"``), or in PyTorch.

:func:`pareto` keeps the models that no other model beats (at least as fast and at least as
accurate, better in one); :func:`choose` picks the most accurate one within a latency budget;
:func:`frontier` measures and does both; :func:`usage` gives the config / builder lines and the
weights entry of a choice. The detector task has no published accuracy (no mAP is invented):
its frontier and choice rank by mult-adds instead, and say so.

Nothing is measured on import; plots and printed reports live in ``tools/tradeoff.py``.
"""
from __future__ import annotations

import math
import os
import re
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from .deploy import backends
from .model import (
    MIN_INPUT_SIZE,
    PAPER_RESOLUTIONS,
    PAPER_RHOS,
    SSD_EXTRA_CHANNELS,
    detector_widths,
    input_size,
)

__all__ = [
    "ACCURACY_SOURCES",
    "BACKEND_CHOICES",
    "DETECTOR_SIZE",
    "PAPER_ALPHAS",
    "SOURCES",
    "TASKS",
    "AccuracyRow",
    "BudgetError",
    "ModelSpec",
    "Row",
    "Tradeoff",
    "accuracy_table",
    "analyse",
    "check_options",
    "choose",
    "default_models",
    "frontier",
    "measure",
    "pareto",
    "parse_models",
    "published_accuracy",
    "score_name",
    "usage",
    "weights_entry",
]

TASKS = ("classify", "ssdlite320")
BACKEND_CHOICES = ("auto", "pytorch") + tuple(backends.BACKENDS)
PAPER_ALPHAS = (1.0, 0.75, 0.5, 0.25)
DETECTOR_SIZE = 320  # SSDLite320's input; rho scales it for the detector task's default grid

# --- published ImageNet accuracy ------------------------------------------------------------------

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
              "resolution), as the keras_* weights entries quote them"),
}
ACCURACY_SOURCES = tuple(SOURCES)

# (alpha, resolution) -> (top-1 %, top-5 %), copied from the two files named in SOURCES.
_TFSLIM = {
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
    top1: float | None            # from ``source``; None where that source prints nothing
    top5: float | None
    source: str                      # key of SOURCES
    tfslim_2017: tuple[float, float]  # both TF-slim releases, whatever ``source`` is
    tfslim_2018: tuple[float, float]
    paper_top1: float | None      # the paper's number where it prints the model
    paper_table: str                 # "6", "7", "6, 7" or ""

    @property
    def citation(self) -> str:
        if self.source == "paper":
            return f"paper Table {self.paper_table}" if self.paper_table else "not in the paper"
        return {"tfslim_2017": "TF-slim mobilenet_v1.md (2017_06_14)",
                "tfslim_2018": "TF-slim mobilenet_v1.md (2018 re-release)"}[self.source]


def _paper_top1(alpha: float, resolution: int) -> tuple[float | None, str]:
    """The paper's Table 6/7 top-1, read from the weights entry that quotes it (one owner)."""
    from .weights.entries import ENTRIES

    entry = ENTRIES.get(f"keras_{float(alpha)}_{resolution}")
    if entry is None or entry.top1 is None:
        return None, ""
    tables = (["6"] if resolution == 224 else []) + (["7"] if alpha == 1.0 else [])
    return entry.top1, ", ".join(tables)


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown accuracy source {source!r}; choose one of "
                         f"{', '.join(ACCURACY_SOURCES)}")


def accuracy_table(source: str = "tfslim_2017") -> list[AccuracyRow]:
    """The 16 paper models (alpha 1.0, 0.75, 0.5, 0.25 x 224, 192, 160, 128 px), ``top1`` /
    ``top5`` from ``source`` (``tfslim_2017``, ``tfslim_2018`` or ``paper``: 7 rows printed)."""
    _check_source(source)
    rows = []
    for alpha in PAPER_ALPHAS:
        for res in PAPER_RESOLUTIONS:
            paper, table = _paper_top1(alpha, res)
            if source == "paper":
                top1, top5 = paper, None
            else:
                top1, top5 = _TFSLIM[source][(alpha, res)]
            rows.append(AccuracyRow(alpha, res, top1, top5, source,
                                    _TFSLIM["tfslim_2017"][(alpha, res)],
                                    _TFSLIM["tfslim_2018"][(alpha, res)], paper, table))
    return rows


def published_accuracy(alpha: float, resolution: int,
                       source: str = "tfslim_2017") -> AccuracyRow | None:
    """The row of :func:`accuracy_table` for this model, None outside the 16."""
    for row in accuracy_table(source):
        if math.isclose(row.alpha, alpha) and row.resolution == resolution:
            return row
    return None


# --- which models -------------------------------------------------------------------------------

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
    _check_task(task)
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
    _check_task(task)
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
    _check_source(accuracy_source)
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


# --- measuring ----------------------------------------------------------------------------------

def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def check_options(backend: str = "auto", precision: str = "fp32", task: str = "classify",
                  batch: int = 1, threads: int = 2) -> None:
    """Everything that can be wrong before any model is built: one error naming the fix."""
    _check_task(task)
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {backend!r}; choose one of "
                         f"{', '.join(BACKEND_CHOICES)}")
    if precision not in backends.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of "
                         f"{', '.join(backends.PRECISIONS)}")
    for name, value in (("batch", batch), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    import importlib.util
    if task == "ssdlite320" and importlib.util.find_spec("torchvision") is None:
        raise ImportError("the ssdlite320 task builds torchvision's SSDLite: pip install "
                          "'mnet-backbone[torchvision]'")
    if backend == "pytorch":
        if precision != "fp32":
            raise backends.PrecisionNotSupportedError(
                f"the pytorch backend times fp32 only; for {precision} use "
                f"--backend {'openvino' if precision == 'bf16' else 'onnxruntime'} (or auto)")
        return
    for package in ("onnx", "onnxscript"):  # the exporter's needs
        if importlib.util.find_spec(package) is None:
            raise backends.BackendNotInstalledError(
                f"exporting for {backend} needs {package}: pip install 'mnet-backbone[deploy]'"
                f" (or use --backend pytorch)")
    if backend == "auto":
        if not backends.available_backends():
            raise backends.BackendNotInstalledError(
                "backend 'auto' found neither onnxruntime nor openvino: pip install "
                "'mnet-backbone[deploy]' (or use --backend pytorch)")
        if precision == "bf16":
            backends.check_precision("openvino", precision)
    else:
        backends.require_backend(backend)
        backends.check_precision(backend, precision)
    if precision == "int8" and importlib.util.find_spec("onnxruntime") is None:
        raise backends.BackendNotInstalledError(
            "int8 files are made by ONNX Runtime's quantizer: pip install onnxruntime")


def _images(count: int, size: int, seed: int):
    """``count`` rendered RGB images (float32 0-255, N x 3 x size x size)."""
    from .deploy.data import render_shapes
    return render_shapes(count, size, seed)[0].float()


def _build_classifier(spec: ModelSpec, bn_images):
    import torch
    import torch.nn.functional as F

    from .deploy.data import calibrate_bn, normalize
    from .model import MobileNetV1

    torch.manual_seed(0)
    model = MobileNetV1(1000, spec.alpha)
    images = normalize(F.interpolate(bn_images, size=(spec.resolution,) * 2, mode="bilinear",
                                     align_corners=False))
    return calibrate_bn(model, images), images  # realistic activation scales for the timing


def _build_detector(spec: ModelSpec):
    """torchvision's SSDLite320 on the core backbone at ``spec.resolution`` px, random weights,
    the class head's background logit raised so no (box, class) pair passes ``score_thresh``:
    timed is the network, decoding and candidate selection (not NMS of random boxes)."""
    import torch

    from .tv_models.detection import ssdlite320_mobilenet_v1

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v1(alpha=spec.alpha)
    if spec.resolution != DETECTOR_SIZE:
        model.transform.fixed_size = (spec.resolution, spec.resolution)
    head = model.head.classification_head
    with torch.no_grad():
        for block in head.module_list:
            conv = block[-1]
            background = torch.arange(conv.out_channels) % head.num_columns == 0
            conv.bias[background] += 10.0
    return model.eval()


def measure(models: Sequence[ModelSpec] | None = None, *, task: str = "classify",
            backend: str = "auto", precision: str = "fp32", batch: int = 1, threads: int = 2,
            rounds: int = 20, calls: int = 3, warmup: int = 2, workdir: str | None = None,
            cache: str | None = None,
            log: Callable[[str], None] | None = None) -> list[Row]:
    """Latency of every model on this machine, batch ``batch``, ``threads`` threads.

    Each model is built with random weights (BN statistics from rendered images; weights do not
    change the work), exported (classifier: :func:`~mnet_backbone.deploy.export.export_onnx`;
    detector: :func:`~mnet_backbone.deploy.export_detector`, image to boxes), quantized for
    ``int8`` (:func:`~mnet_backbone.deploy.quant.quantize_int8`, per-channel 7-bit weights, the
    classifier fp32: the structure of the accurate int8 path; detectors: convolutions only) and
    opened on ``backend`` (``auto``: :func:`~mnet_backbone.deploy.backends.choose_backend` per
    file, cached per machine; ``pytorch``: :func:`~mnet_backbone.deploy.deploy` for the
    classifier, the torchvision model's own forward for the detector). All models are then timed
    together, round by round (:func:`~mnet_backbone.deploy.timing.time_interleaved`), so load
    changes hit them alike. ``workdir`` keeps the ONNX files (default: a temporary folder).
    """
    check_options(backend, precision, task, batch, threads)
    models = list(models) if models is not None else default_models(task)
    if not models:
        raise ValueError("no models to measure")
    for spec in models:  # the same checks as parse_models, for specs built by hand
        parse_models(f"{spec.alpha}:{spec.resolution}", task)
    say = log or (lambda msg: None)

    import numpy as np
    import torch

    from .cost import count
    from .cost import measure as count_hooks
    from .deploy.timing import time_interleaved

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="mnet_tradeoff_")
    folder = workdir or tmp.name
    os.makedirs(folder, exist_ok=True)
    try:
        biggest = max(s.resolution for s in models)
        images = _images(max(16, batch), biggest, seed=1)
        runners: dict[str, Callable] = {}
        info: dict[str, dict] = {}
        for i, spec in enumerate(models, 1):
            say(f"[tradeoff] {i}/{len(models)} {task} {spec.name}: build"
                + ("" if backend == "pytorch" else ", export") + f" ({backend} {precision})")
            if task == "classify":
                model, calib = _build_classifier(spec, images)
                cost = count(spec.alpha, spec.resolution)
            else:
                model = _build_detector(spec)
                calib = torch.nn.functional.interpolate(images, size=(spec.resolution,) * 2,
                                                        mode="bilinear", align_corners=False)
                cost = count_hooks(model, spec.resolution, forward=lambda m, t: m.head(
                    list(m.backbone(t).values())))
            x = calib[:batch].contiguous()
            row = {"alpha": spec.alpha, "resolution": spec.resolution, "task": task,
                   "mult_adds": int(cost.mult_adds), "params": int(cost.params),
                   "precision": precision, "batch": batch, "threads": threads,
                   "backend": backend}
            if backend == "pytorch":
                runners[spec.name] = _torch_runner(model, task, x)
            else:
                path = _export(model, spec, task, precision, folder, calib)
                chosen = backend
                if backend == "auto":
                    chosen, medians = backends.choose_backend(path, precision, batch, threads,
                                                              cache=cache)
                    row["auto_ms"] = medians
                row["backend"] = chosen
                run = backends.load(path, chosen, precision, threads)
                array = np.ascontiguousarray(x.numpy(), dtype=np.float32)
                runners[spec.name] = lambda _x, run=run, array=array: run(array)
            info[spec.name] = row
        say(f"[tradeoff] timing {len(runners)} models together: {rounds} rounds x {calls} calls")
        times = time_interleaved(runners, None, rounds=rounds, calls=calls, warmup=warmup)
    finally:
        torch.set_num_threads(saved_threads)
        if tmp is not None:
            tmp.cleanup()
    rows = []
    for name, row in info.items():
        ms = [t * 1e3 for t in times[name]]
        rows.append(Row(**row, latency_ms=round(statistics.median(ms), 4),
                        p90_ms=round(float(np.percentile(ms, 90)), 4),
                        min_ms=round(min(ms), 4), samples=len(ms)))
    return rows


def _torch_runner(model, task: str, x) -> Callable:
    import torch

    if task == "classify":
        from .deploy import deploy
        fast = deploy(model)

        def run(_x):
            with torch.inference_mode():
                return fast(x)
        return run
    images = [im / 255.0 for im in x]

    def run_detector(_x):
        with torch.inference_mode():
            return model(images)
    return run_detector


def _export(model, spec: ModelSpec, task: str, precision: str, folder: str, calib) -> str:
    """The file to time: the fp32 export, or its int8 version calibrated on ``calib`` (the
    rendered images, as the model takes them)."""
    from .deploy.quant import DETECTOR_OP_TYPES, quantize_int8

    stem = os.path.join(folder, f"{task}_{spec.name}")
    if task == "classify":
        from .deploy.export import export_onnx
        fp32 = export_onnx(model, stem + "_fp32.onnx", resolution=spec.resolution)
        if precision != "int8":
            return fp32
        # the graph of quantize_int8_accurate (7-bit weights, classifier fp32): the same kernels
        return quantize_int8(fp32, stem + "_int8.onnx", calib.numpy(), keep_fp32=("last",),
                             reduce_range=True)
    from .deploy import export_detector
    fp32 = stem + "_fp32.onnx"
    export_detector(model, fp32)
    if precision != "int8":
        return fp32
    return quantize_int8(fp32, stem + "_int8.onnx", calib.numpy(), op_types=DETECTOR_OP_TYPES)


def frontier(models: Sequence[ModelSpec] | None = None, *, budget_ms: float | None = None,
             task: str = "classify", backend: str = "auto", precision: str = "fp32",
             batch: int = 1, threads: int = 2, accuracy_source: str = "tfslim_2017",
             rounds: int = 20, calls: int = 3, cache: str | None = None,
             log: Callable[[str], None] | None = None) -> Tradeoff:
    """:func:`measure` the models, then :func:`analyse`: the frontier and, with ``budget_ms``,
    the best model within it (``result.choice``; :func:`usage` for its config lines).

    >>> result = frontier(budget_ms=3, backend="onnxruntime")   # the 16 paper models
    >>> print(result.choice.name, usage(result.choice)["torchvision"])
    """
    _check_source(accuracy_source)
    if budget_ms is not None and not budget_ms > 0:
        raise ValueError(f"the latency budget must be > 0 ms, got {budget_ms!r}")
    rows = measure(models, task=task, backend=backend, precision=precision, batch=batch,
                   threads=threads, rounds=rounds, calls=calls, cache=cache, log=log)
    options = {"backend": backend, "precision": precision, "batch": batch, "threads": threads,
                   "rounds": rounds, "calls": calls}
    return analyse(rows, budget_ms, accuracy_source, options)


# --- from a choice to a config ------------------------------------------------------------------

def weights_entry(alpha: float, resolution: int, task: str = "classify"
                  ) -> tuple[str | None, str, list[str]]:
    """(entry name or None, a note, other entries of the same model) from
    :data:`mnet_backbone.weights.ENTRIES`: the Keras file of Google's checkpoint at this alpha
    and resolution (the detector's backbone: its 224 px checkpoint, as TF's SSD-MobileNet
    used); else the nearest resolution at this alpha; else none."""
    from .weights.entries import ENTRIES

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
    from .weights.entries import ENTRIES

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
    _check_task(task)
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
