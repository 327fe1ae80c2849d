"""A predictor over a source: drawn images or video, one COCO-results JSON, a summary.

:func:`predict_source` is what ``mnet predict`` does once MODEL and SOURCE are open
(:func:`~.models.open_predictor`, :func:`~.sources.open_source`). Into ``out_dir`` it writes

* ``predictions.json``: the run's results in COCO's results format, one record per detection:
  ``image_id`` (the image's position in the source, from 1; a video frame's number, from 1),
  ``category_id`` (the class's position in the model's class names, from 1: torchvision's
  label), ``bbox`` ``[x, y, width, height]`` in the image's pixels and ``score``; each record
  also names its ``file_name`` and ``category_name`` (and ``frame``, from 0, for a video). A
  classifier's records are its top-k classes (``category_id``, ``score``, ``rank``, no bbox);
* the drawn images under their own names, or a video's / camera's frames as one ``.mp4``.

Every file is written whole or not at all (:mod:`mnet_backbone.files`); Ctrl-C ends a camera
or video run early with everything done so far written.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..files import atomic_write, partial_name
from .drawing import draw_detections, draw_top_k
from .models import Prediction, Predictor
from .progress import progress_bar
from .sources import Frame, Source

__all__ = ["PredictSummary", "predict_source", "coco_records", "RESULTS_FILE"]

RESULTS_FILE = "predictions.json"
DEFAULT_FPS = 25.0  # a camera or video that does not say its frame rate


@dataclass
class PredictSummary:
    """What a run did; :meth:`line` is the summary ``mnet predict`` prints."""

    task: str
    backend: str
    images: int = 0
    detections: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (file, why)
    ignored: int = 0
    model_seconds: float = 0.0
    seconds: float = 0.0
    results: str = ""
    drawn: List[str] = field(default_factory=list)
    score_thr: float = 0.0
    top_k: int = 0
    interrupted: bool = False
    stream: bool = False

    @property
    def ms_per_image(self) -> float:
        return 1e3 * self.model_seconds / max(1, self.images)

    def line(self) -> str:
        unit = ("frame" if self.stream else "image") + ("s" if self.images != 1 else "")
        notes = []
        if self.skipped:
            notes.append(f"{len(self.skipped)} unreadable skipped")
        if self.ignored:
            notes.append(f"{self.ignored} non-image file{'s' if self.ignored > 1 else ''} "
                         f"not read")
        read = f"{self.images} {unit}" + (f" ({', '.join(notes)})" if notes else "")
        found = (f"{self.detections} detections at score >= {self.score_thr:g}"
                 if self.task == "detection" else f"top-{self.top_k} labels")
        drawn = (f" and the drawn video {self.drawn[0]}" if self.stream and self.drawn else
                 f" and {len(self.drawn)} drawn image{'s' if len(self.drawn) != 1 else ''}"
                 if self.drawn else "")
        stopped = " (stopped early by Ctrl-C)" if self.interrupted else ""
        return (f"{read}: {found}, {self.ms_per_image:.1f} ms per image on "
                f"{self.backend}{stopped}; wrote {self.results}{drawn}")


def coco_records(prediction: Prediction, image_id: int, file_name: str,
                 name_of: Callable[[int], str], frame: Optional[int] = None) -> List[dict]:
    """The COCO results records of one image's prediction (see the module doc)."""
    records = []
    for rank, (score, cls) in enumerate(zip(prediction.scores, prediction.classes)):
        record: Dict[str, object] = dict(image_id=image_id, file_name=file_name,
                                         category_id=int(cls) + 1,
                                         category_name=name_of(int(cls)))
        if prediction.boxes is not None:
            x1, y1, x2, y2 = (float(v) for v in prediction.boxes[rank])
            record["bbox"] = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
        else:
            record["rank"] = rank + 1
        record["score"] = round(float(score), 6)
        if frame is not None:
            record["frame"] = frame
        records.append(record)
    return records


class _ImageWriter:
    """Drawn images into ``folder`` under their own names (a repeated name gets its index)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.written: List[str] = []
        self._names = set()

    def write(self, frame: Frame, image: np.ndarray) -> None:
        name = frame.name if frame.name not in self._names else f"{frame.index:05d}_{frame.name}"
        self._names.add(name)
        path = os.path.join(self.folder, name)
        fmt = Image.registered_extensions().get(os.path.splitext(name)[1].lower(), "PNG")
        with atomic_write(path) as f:
            Image.fromarray(image).save(f, format=fmt)
        self.written.append(path)

    def close(self, completed: bool) -> None:
        pass


class _VideoWriter:
    """A stream's drawn frames as one ``.mp4`` (MPEG-4 Part 2, which every OpenCV build
    writes) under a temporary name, renamed into place when the run ends."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.written: List[str] = []
        self._tmp = partial_name(path) + ".mp4"  # OpenCV picks the container by the extension
        self._writer = None

    def write(self, frame: Frame, image: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write the video {self.path!r}; pass --no-draw, or "
                              f"install an OpenCV build with FFmpeg (opencv-python-headless)")
        self._writer.write(np.ascontiguousarray(image[..., ::-1]))

    def close(self, completed: bool) -> None:
        """Rename the video into place after a run that completed; else remove it."""
        if self._writer is None:
            return
        self._writer.release()
        if completed:
            os.replace(self._tmp, self.path)
            self.written.append(self.path)
        elif os.path.exists(self._tmp):
            os.remove(self._tmp)


def _output(source: Source, out_dir: str, draw: bool):
    if not draw:
        return None
    if source.is_stream:
        stem = os.path.splitext(os.path.basename(source.description))[0].replace(" ", "")
        return _VideoWriter(os.path.join(out_dir, f"{stem}.mp4"), source.fps or DEFAULT_FPS)
    return _ImageWriter(out_dir)


def _cut(prediction: Prediction, task: str, score_thr: float, top_k: int) -> Prediction:
    return prediction.above(score_thr) if task == "detection" else prediction.top(top_k)


def _drawn(frame: Frame, prediction: Prediction, predictor: Predictor,
           score_thr: float) -> np.ndarray:
    if predictor.task == "detection":
        return draw_detections(frame.image, prediction, predictor.name_of, score_thr)
    return draw_top_k(frame.image, prediction, predictor.name_of)


def predict_source(predictor: Predictor, source: Source, out_dir: str, *,
                   score_thr: float = 0.3, top_k: int = 5, draw: bool = True,
                   max_frames: Optional[int] = None, progress: bool = True) -> PredictSummary:
    """Run ``predictor`` on every frame of ``source``; write the results (see the module doc)
    into ``out_dir`` (which must exist and be writable). Detections below ``score_thr`` are
    left out of the JSON and the drawings; a classifier keeps its ``top_k`` classes.

    The progress bar counts the source's files (unreadable ones included) or frames; it
    appears with the first image read, so a source that fails shows only its error."""
    summary = PredictSummary(predictor.task, predictor.backend, score_thr=score_thr,
                             top_k=top_k, stream=source.is_stream)
    records: List[dict] = []
    output = _output(source, out_dir, draw)
    total = min(filter(None, (source.total, max_frames)), default=None)
    bar = None
    start = time.perf_counter()
    completed = False
    position = 0  # frames and files passed, unreadable ones included: the bar's count
    try:
        for frame in source:
            if bar is None:
                bar = progress_bar(total, os.path.basename(source.description.rstrip("/")),
                                   enabled=progress and source.kind != "image")
            tick = time.perf_counter()
            prediction = _cut(predictor(frame.image), predictor.task, score_thr, top_k)
            summary.model_seconds += time.perf_counter() - tick
            summary.detections += len(prediction.scores)
            records += coco_records(prediction, frame.index + 1, frame.name, predictor.name_of,
                                    frame.index if source.is_stream else None)
            if output is not None:
                output.write(frame, _drawn(frame, prediction, predictor, score_thr))
            summary.images += 1
            bar.update(frame.index + 1 - position)
            position = frame.index + 1
            if max_frames and summary.images >= max_frames:
                break
        completed = True
        if bar is not None and not (source.is_stream or max_frames):
            bar.update(len(source.files) - position)  # unreadable files at the end
    except KeyboardInterrupt:
        summary.interrupted = completed = True
    finally:
        if bar is not None:
            bar.close()
        source.close()
        if output is not None:
            output.close(completed)
    summary.skipped = list(source.skipped)
    summary.ignored = source.ignored
    summary.results = os.path.join(out_dir, RESULTS_FILE)
    with atomic_write(summary.results, "w") as f:
        json.dump(records, f)
    summary.drawn = output.written if output is not None else []
    summary.seconds = time.perf_counter() - start
    return summary
