"""Data checks before (and during) training: a bad annotation or image is named once, not a
silent mAP or a traceback hours into a run.

* :func:`check_coco` reads a COCO annotation file (malformed JSON: one error naming the file,
  line and column) and counts each kind of problem in :data:`PROBLEMS` once: boxes of
  non-positive size, boxes reaching outside their image, category ids not in ``categories``,
  annotations of unlisted images, duplicate image / annotation ids, images without annotations,
  image files that are missing or empty (with ``img_dir``), an empty set. A policy per kind
  (``skip`` with a count, ``error``, ``keep``; ``clip`` for boxes outside the image) decides what
  happens; it returns the cleaned annotation dict and a :class:`DataReport`.
* ``CheckedCocoDataset`` (mmdet's ``CocoDataset`` + ``data_checks=dict(...)``) runs it when the
  data set loads and indexes the cleaned annotations; the plain image loader of its pipeline runs
  as the checked one below (skip in training, error in test mode).
* ``CheckedLoadImageFromFile`` (mmcv's ``LoadImageFromFile`` + ``on_error``): an image that is
  missing or cannot be decoded during a run is skipped with one warning naming the file and the
  image id that lists it, and counted; more than ``max_failed_fraction`` of the images loaded
  failing is an error (the data set is broken, not one file).
* ``CheckedCocoMetric`` (mmdet's ``CocoMetric``): scores against the annotations the data set
  served (its checks applied to ``ann_file``); an ``ann_file`` without annotations is an error,
  not mAP -1.

Importing this module registers the three classes in mmdet's registries (the package's COCO
configs use them).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple, Union

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric
from mmengine.logging import print_log

from ..files import describe_file
from ..images import UnreadableImageError

__all__ = ["PROBLEMS", "POLICIES", "DataCheckError", "UnreadableImageError", "DataReport",
           "read_coco_json", "check_coco", "CheckedCocoDataset", "CheckedLoadImageFromFile",
           "CheckedCocoMetric"]

# kind: (what it is, in a report line; default policy)
PROBLEMS: Dict[str, Tuple[str, str]] = {
    "malformed_box": ("annotations without a finite [x, y, w, h] bbox", "skip"),
    "non_positive_box": ("boxes of non-positive width or height", "skip"),
    "box_outside_image": ("boxes reaching outside their image", "skip"),
    "unknown_category": ("annotations whose category_id is not in 'categories'", "error"),
    "unknown_image": ("annotations whose image_id is not in 'images'", "skip"),
    "duplicate_image_id": ("images whose id was listed before", "error"),
    "duplicate_annotation_id": ("annotations whose id was listed before", "error"),
    "missing_image_file": ("images whose file is missing or empty (with their annotations)",
                           "skip"),
    "image_without_annotations": ("images without annotations", "keep"),
    "empty": ("an empty set (no images, categories or usable annotations)", "error"),
}
POLICIES = ("skip", "error", "keep", "clip")
# Boxes may pass the border by rounding (COCO stores floats); beyond this many pixels they are
# outside.
BORDER_TOLERANCE = 1.0


class DataCheckError(ValueError):
    """An annotation file that cannot be trained on as it is (the message names the file, what is
    wrong and how to change the policy)."""


@dataclass
class DataReport:
    """What :func:`check_coco` found: counts, one example and the action per problem kind."""

    source: str
    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, str] = field(default_factory=dict)
    actions: Dict[str, str] = field(default_factory=dict)
    images: int = 0
    annotations: int = 0

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def lines(self) -> List[str]:
        """One line per kind of problem found."""
        done = {"skip": "skipped", "error": "", "keep": "kept", "clip": "clipped to the image"}
        return [f"{self.source}: an empty set: {self.examples[kind]}" if kind == "empty" else
                f"{self.source}: {n} {PROBLEMS[kind][0]}"
                + (f" {done[self.actions[kind]]}" if done[self.actions[kind]] else "")
                + f" (e.g. {self.examples[kind]})"
                for kind, n in self.counts.items()]

    def __str__(self) -> str:
        summary = f"{self.source}: {self.images} images, {self.annotations} annotations"
        return "\n".join([summary, *self.lines()]) if self.counts else summary + ", no problems"


def read_coco_json(path: str) -> dict:
    """A COCO annotation file as a dict; malformed JSON is one :class:`DataCheckError` naming the
    file, line and column (json's own error names neither file nor fix)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataCheckError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg}; fix the file (an interrupted write or a hand edit?)"
                             ) from None
    except UnicodeDecodeError as exc:
        raise DataCheckError(f"{path}: not UTF-8 text (byte {exc.start}): the file is "
                             f"{describe_file(path)}, not a COCO annotation file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataCheckError(f"{path}: not a COCO annotation file (expected an object with "
                             f"'images', 'annotations' and 'categories' lists)")
    return data


def _policies(policy: Optional[Mapping[str, str]]) -> Dict[str, str]:
    chosen = {kind: default for kind, (_, default) in PROBLEMS.items()}
    for kind, value in (policy or {}).items():
        if kind not in PROBLEMS:
            raise ValueError(f"data checks: unknown problem kind {kind!r}; kinds: "
                             f"{', '.join(PROBLEMS)}")
        allowed = {"box_outside_image": POLICIES, "empty": ("error", "keep")}.get(kind,
                                                                               POLICIES[:3])
        if value not in allowed:
            raise ValueError(f"data checks: policy {value!r} for {kind!r} is not one of "
                             f"{', '.join(allowed)}")
        chosen[kind] = value
    return chosen


def _box(ann: dict) -> Optional[List[float]]:
    box = ann.get("bbox")
    if (not isinstance(box, (list, tuple)) or len(box) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
        return None
    return [float(v) for v in box]


class _Checker:
    """A policy per problem kind and the report that counts what was found."""

    def __init__(self, report: DataReport, chosen: Dict[str, str]):
        self.report, self.chosen = report, chosen

    def drops(self, kind: str, example: str) -> bool:
        """Count a problem; True when its item is to be dropped (skip; error raises later)."""
        self.report.add(kind, example)
        return self.chosen[kind] in ("skip", "error")


def _image_file_problem(img_dir: Optional[str], image: dict) -> Optional[str]:
    """The example line for an image whose file is missing or empty (None with no ``img_dir``)."""
    if img_dir is None:
        return None
    path = os.path.join(img_dir, str(image.get("file_name")))
    what = ("missing" if not os.path.isfile(path) else
            "empty" if os.path.getsize(path) == 0 else None)
    return f"{path} of image id {image.get('id')!r}: {what}" if what else None


def _check_images(images: List[dict], img_dir: Optional[str],
                  check: _Checker) -> Tuple[Dict[object, dict], set]:
    """The images kept, by id, and the ids of those dropped for their file."""
    kept: Dict[object, dict] = {}
    dropped_files = set()
    for image in images:
        image_id = image.get("id")
        if image_id in kept and check.drops("duplicate_image_id",
                                            f"image id {image_id!r} ({image.get('file_name')})"):
            continue
        problem = _image_file_problem(img_dir, image)
        if problem and check.drops("missing_image_file", problem):
            dropped_files.add(image_id)
            continue
        kept[image_id] = image
    return kept, dropped_files


def _outside(box: List[float], image: Optional[dict]) -> bool:
    """A box reaching past its image's border by more than :data:`BORDER_TOLERANCE`."""
    if image is None or not {"width", "height"} <= image.keys():
        return False
    x, y, w, h = box
    width, height, tol = image["width"], image["height"], BORDER_TOLERANCE
    return x < -tol or y < -tol or x + w > width + tol or y + h > height + tol


def _box_outside(ann: dict, box: List[float], image: dict, where: str,
                 check: _Checker) -> Optional[dict]:
    """An annotation whose box reaches outside its image, as the policy wants it: clipped to the
    image, kept, or None (dropped; also when nothing is left to clip to)."""
    width, height = image["width"], image["height"]
    drop = check.drops("box_outside_image",
                       f"{where}: bbox {ann.get('bbox')!r} in a {width}x{height} image")
    if check.chosen["box_outside_image"] != "clip":
        return None if drop else ann
    x, y, w, h = box
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return dict(ann, bbox=[x0, y0, x1 - x0, y1 - y0],
                area=min(float(ann.get("area", w * h)), (x1 - x0) * (y1 - y0)))


def _check_annotation(ann: dict, images: Dict[object, dict], categories: set, seen_ids: set,
                      check: _Checker) -> Optional[dict]:
    """The annotation as it is kept (clipped, with an ``area``: mmdet's parser needs one), or
    None when it is dropped. ``seen_ids`` collects the annotation ids met so far."""
    where = f"annotation id {ann.get('id')!r} of image {ann.get('image_id')!r}"
    if ann.get("id") in seen_ids and check.drops("duplicate_annotation_id", where):
        return None
    seen_ids.add(ann.get("id"))
    image = images.get(ann.get("image_id"))
    if image is None and check.drops("unknown_image", where):
        return None
    if ann.get("category_id") not in categories and check.drops(
            "unknown_category", f"{where}: category_id {ann.get('category_id')!r}"):
        return None
    box = _box(ann)
    if box is None:
        return None if check.drops("malformed_box", f"{where}: bbox {ann.get('bbox')!r}") else ann
    w, h = box[2], box[3]
    if w <= 0 or h <= 0:
        if check.drops("non_positive_box", f"{where}: bbox {ann.get('bbox')!r}"):
            return None
    elif _outside(box, image):
        ann = _box_outside(ann, box, image, where, check)
        if ann is None:
            return None
    return ann if "area" in ann else dict(ann, area=w * h)


def _empty_set(images: List[dict], categories: set, kept: List[dict],
               annotations: List[dict]) -> Optional[str]:
    """What makes the checked set empty, or None."""
    if not images:
        return "no images"
    if not categories:
        return "no categories"
    if not annotations:
        return "no annotations"
    if not kept:
        return f"no usable annotations (all {len(annotations)} dropped)"
    return None


def _raise_chosen_errors(report: DataReport, chosen: Dict[str, str]) -> None:
    """One :class:`DataCheckError` for the kinds whose policy is ``error``, the others after
    them."""
    errors = [kind for kind in report.counts if chosen[kind] == "error"]
    if not errors:
        return
    lines = [line for kind, line in zip(report.counts, report.lines()) if kind in errors]
    others = [line for kind, line in zip(report.counts, report.lines()) if kind not in errors]
    fix = (f"fix the annotation file, or choose another policy, e.g. "
           f"data_checks=dict({errors[0]}='skip')" if errors[0] != "empty" else
           "point the config at annotations with boxes (data_root / ann_file)")
    found = lines + [f"  (also: {line})" for line in others]
    # one problem: one line; several: one line each, the fix last
    raise DataCheckError("\n".join(found) + ("; " if len(found) == 1 else "\n  ") + fix)


def check_coco(annotations: Union[str, dict], img_dir: Optional[str] = None,
               policy: Optional[Mapping[str, str]] = None,
               source: Optional[str] = None) -> Tuple[dict, DataReport]:
    """Check a COCO annotation file (path) or dict; return ``(cleaned dict, report)``.

    ``policy`` overrides the defaults of :data:`PROBLEMS` per kind, e.g.
    ``dict(box_outside_image='clip', unknown_category='skip')``. ``skip`` drops the annotation
    (or the image with its annotations), ``keep`` only reports, ``error`` raises one
    :class:`DataCheckError` listing every problem found (all kinds are counted first). With
    ``img_dir`` every listed image file must exist and be non-empty. The input is not changed.
    """
    if isinstance(annotations, str):
        source = source or annotations
        annotations = read_coco_json(annotations)
    check = _Checker(DataReport(source or "annotations"), _policies(policy))
    categories = {c.get("id") for c in annotations.get("categories") or [] if isinstance(c, dict)}
    images, dropped_files = _check_images(annotations.get("images") or [], img_dir, check)
    given = annotations.get("annotations") or []
    kept: List[dict] = []
    seen_ids: set = set()
    for ann in given:
        if ann.get("image_id") in dropped_files and ann.get("image_id") not in images:
            continue  # gone with its image file, uncounted
        checked = _check_annotation(ann, images, categories, seen_ids, check)
        if checked is not None:
            kept.append(checked)
    annotated = {ann.get("image_id") for ann in given}
    out_images = [image for image_id, image in images.items()
                  if image_id in annotated or not check.drops(
                      "image_without_annotations",
                      f"image id {image_id!r} ({image.get('file_name')})")]
    empty = _empty_set(out_images, categories, kept, given)
    if empty:
        check.report.add("empty", empty)
    report = check.report
    report.actions = {kind: check.chosen[kind] for kind in report.counts}
    report.images, report.annotations = len(out_images), len(kept)
    _raise_chosen_errors(report, check.chosen)
    return dict(annotations, images=out_images, annotations=kept), report


def _coco_from_dict(data: dict):
    """mmdet's COCO API object over an annotation dict (instead of a file)."""
    from mmdet.datasets.api_wrappers import COCO

    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs  # mmdet's aliases
    return coco


class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` whose annotation file passes :func:`check_coco` first, and whose
    images are checked as they load.

    ``data_checks``: the policy per problem kind (see :data:`PROBLEMS`), plus
    ``check_files=True`` to also require every listed image file (stat only, no decoding) and
    ``max_failed_fraction`` (default 0.01) for the image loader below. The report goes to the log
    once, before training or testing starts. In test mode (val and test sets, where every image
    counts) ``check_files`` defaults to True and ``missing_image_file`` to ``'error'``: a missing
    or empty image stops a training run when it starts, not at its first validation.

    A plain ``LoadImageFromFile`` in its pipeline runs as :class:`CheckedLoadImageFromFile`:
    ``on_error='skip'`` in training, ``'error'`` in test mode (every test image counts). The
    config keeps mmdet's ``LoadImageFromFile``, which mmdet's ``DetInferencer`` and
    ``inference_detector`` look for by that name in the test pipeline; put a
    ``CheckedLoadImageFromFile`` in the pipeline yourself to choose other settings.

    The checks it applied go to ``metainfo['data_checks']``, so that :class:`CheckedCocoMetric`
    scores against the annotations this data set served.
    """

    def __init__(self, *args, data_checks: Optional[dict] = None, **kwargs):
        self.data_checks = dict(data_checks or {})
        if kwargs.get("test_mode", False):
            self.data_checks.setdefault("check_files", True)
            self.data_checks.setdefault("missing_image_file", "error")
        self._max_failed = float(self.data_checks.pop("max_failed_fraction", 0.01))
        _policies({k: v for k, v in self.data_checks.items() if k != "check_files"})
        super().__init__(*args, **kwargs)
        self._check_image_loads()
        self._metainfo["data_checks"] = dict(policy=self._policy(), img_dir=self._img_dir())

    def _policy(self) -> dict:
        return {k: v for k, v in self.data_checks.items() if k != "check_files"}

    def _img_dir(self) -> Optional[str]:
        return self.data_prefix.get("img") if self.data_checks.get("check_files") else None

    def _check_image_loads(self) -> None:
        transforms = getattr(self.pipeline, "transforms", [])
        for i, t in enumerate(transforms):
            # exactly mmcv's class: subclasses (LoadImageFromNDArray, ...) load otherwise;
            # ignore_empty=True is a choice to keep
            if type(t) is LoadImageFromFile and not t.ignore_empty:
                transforms[i] = CheckedLoadImageFromFile.from_loader(
                    t, on_error="error" if self.test_mode else "skip",
                    max_failed_fraction=self._max_failed)

    def load_data_list(self) -> List[dict]:
        cleaned, report = check_coco(self.ann_file, img_dir=self._img_dir(),
                                     policy=self._policy())
        for line in str(report).splitlines():
            print_log(line, logger="current",
                      level=logging.WARNING if report.counts else logging.INFO)
        # CocoDataset reads the file through self.COCOAPI(path): index the cleaned dict instead.
        self.COCOAPI = lambda _path: _coco_from_dict(cleaned)
        try:
            return super().load_data_list()
        finally:
            del self.COCOAPI  # back to the class's


class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that survives a broken image in a long run.

    ``on_error='skip'`` (training): a missing, empty or undecodable image is skipped (the
    transform returns None and mmengine's data set draws another sample) with one warning
    naming the file and the image id that lists it; when more than ``max_failed_fraction`` of
    the images loaded in this process failed (and more than ``min_failures``), it is an
    :class:`UnreadableImageError`. ``on_error='error'`` (testing, where every image counts): the
    first failure is that error, in one line. Counts are per data loader worker process.
    """

    def __init__(self, *args, on_error: str = "skip", max_failed_fraction: float = 0.01,
                 min_failures: int = 3, **kwargs):
        if kwargs.get("ignore_empty"):
            raise ValueError("CheckedLoadImageFromFile: use on_error='skip' instead of "
                             "ignore_empty=True")
        super().__init__(*args, **kwargs)
        self._checked(on_error, max_failed_fraction, min_failures)

    @classmethod
    def from_loader(cls, loader: LoadImageFromFile, **settings) -> "CheckedLoadImageFromFile":
        """The checked loader with the settings of a plain ``loader`` (decoding backend, colour,
        file backend), plus ``on_error`` / ``max_failed_fraction`` / ``min_failures``."""
        checked = cls.__new__(cls)
        checked.__dict__.update(vars(loader))
        checked._checked(**settings)
        return checked

    def _checked(self, on_error: str = "skip", max_failed_fraction: float = 0.01,
                 min_failures: int = 3) -> None:
        if on_error not in ("skip", "error"):
            raise ValueError(f"CheckedLoadImageFromFile: on_error must be 'skip' or 'error', "
                             f"got {on_error!r}")
        self.on_error, self.max_failed_fraction = on_error, float(max_failed_fraction)
        self.min_failures = int(min_failures)
        self.seen, self.failed = 0, {}  # failed: path -> why

    @staticmethod
    def _why(path: str) -> str:
        if not os.path.exists(path):
            return "the file does not exist"
        return f"the file is {describe_file(path)} and cannot be decoded"

    def transform(self, results: dict) -> Optional[dict]:
        self.seen += 1
        try:
            return super().transform(results)
        except Exception as exc:  # noqa: BLE001 (FileNotFoundError, cv2.error, the assert, ...)
            path = str(results.get("img_path"))
            listed = (f" (image id {results['img_id']!r} of the annotation file)"
                      if "img_id" in results else "")
            why = self._why(path) if "://" not in path else f"{type(exc).__name__}: {exc}"
            if self.on_error == "error":
                raise UnreadableImageError(f"image {path}{listed}: {why}") from None
        first = path not in self.failed
        self.failed[path] = why
        failed = len(self.failed)
        if failed > max(self.min_failures, self.max_failed_fraction * self.seen):
            raise UnreadableImageError(
                f"{failed} of the {self.seen} images loaded could not be read (more than "
                f"{self.max_failed_fraction:.1%}): the data set is damaged, not one file; e.g. "
                f"{path}{listed}: {why}. Fix or remove the files (check_coco with "
                f"check_files=True lists missing ones), or raise max_failed_fraction")
        if first:
            print_log(f"skipped image {path}{listed}: {why}; {failed} of {self.seen} images "
                      f"skipped so far", logger="current", level=logging.WARNING)
        return None


class CheckedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` scoring against the annotations its data set served.

    ``CocoMetric`` reads ``ann_file`` as it is, so the boxes a :class:`CheckedCocoDataset`
    dropped (non-positive, outside the image, of an unlisted image; ``clip``: clipped) would still
    count as ground truth: misses no detector can avoid, a lower mAP than the data set's own
    boxes give, or a crash in pycocotools on an annotation without a box. When the data set
    publishes its checks (``metainfo['data_checks']``, set when the loop hands the metric its
    data set's meta) this metric applies the same policy to ``ann_file``. Without them (a plain
    ``CocoDataset``) it scores the file as ``CocoMetric`` does. An ``ann_file`` without a single
    annotation is a :class:`DataCheckError` before any inference (``CocoMetric`` reports mAP -1).
    """

    def __init__(self, ann_file: Optional[str] = None, *args, sort_categories: bool = False,
                 **kwargs):
        super().__init__(None, *args, sort_categories=sort_categories, **kwargs)
        self.ann_file, self.sort_categories = ann_file, sort_categories
        if ann_file is not None:
            self._coco_api = self._ground_truth(None)

    def _ground_truth(self, checks: Optional[dict]):
        from mmengine.fileio import get_local_path

        with get_local_path(self.ann_file, backend_args=self.backend_args) as local:
            data = read_coco_json(local)
        if checks is None:
            if not data.get("annotations"):
                raise DataCheckError(
                    f"{self.ann_file}: no annotations to score against (COCO mAP would be -1); "
                    f"point the evaluator's ann_file at the annotations of the test images")
        else:
            data, report = check_coco(data, img_dir=checks.get("img_dir"),
                                      policy=checks.get("policy"), source=self.ann_file)
            if report.counts:
                print_log(f"CheckedCocoMetric: scoring against {self.ann_file} as its data set "
                          f"was checked ({report.images} images, {report.annotations} "
                          f"annotations)", logger="current")
        coco = _coco_from_dict(data)
        if self.sort_categories:  # as CocoMetric does (objects365's unsorted categories)
            coco.cats = {i: coco.cats[i] for i in sorted(coco.cats)}
            coco.dataset["categories"] = sorted(coco.dataset["categories"], key=lambda c: c["id"])
        return coco

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = dataset_meta
        checks = (dataset_meta or {}).get("data_checks")
        if checks is not None and self.ann_file is not None:
            self._coco_api = self._ground_truth(checks)
