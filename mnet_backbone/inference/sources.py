"""What ``mnet predict`` reads: an image, a folder of images, a glob, a video file or a camera.

:func:`open_source` turns the SOURCE argument into a :class:`Source`, an iterable of
:class:`Frame` (RGB uint8 arrays with where they came from). Images are decoded by the package's
one decoder (:func:`mnet_backbone.images.load_rgb`); videos and cameras by OpenCV (``cv2``,
installed with mmcv), imported on use.

Bad input is one :class:`SourceError` naming the problem and the fix, raised before any frame:
a missing path, a glob or a folder without images, a video OpenCV cannot decode, a camera that
does not open. Unreadable images among several are skipped and listed in
:attr:`Source.skipped`; when none of them can be read, that is an error too.
"""
from __future__ import annotations

import contextlib
import glob
import os
import sys
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..images import IMAGE_EXTENSIONS, load_rgb

__all__ = ["Frame", "Source", "SourceError", "open_source", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv")
_KINDS = ("an image, a folder of images, a glob in quotes ('photos/*.jpg'), a video file ("
          f"{', '.join(VIDEO_EXTENSIONS)}) or a camera index (0)")
_GLOB_CHARS = "*?["


class SourceError(ValueError):
    """A SOURCE that cannot be read (the message names the problem and the fix)."""


@dataclass
class Frame:
    """One image of a source: ``index`` counts from 0 in the source's order; ``name`` is the
    image's file name (a video's or camera's frames share theirs)."""

    index: int
    name: str
    image: np.ndarray  # H x W x 3 uint8 RGB


@dataclass
class Source:
    """An iterable of :class:`Frame`. ``kind``: image, folder, glob, video or camera;
    ``total``: the number of frames when known; ``fps``: a video's or camera's frame rate;
    ``skipped``: (file, reason) of the images that could not be read; ``ignored``: files of a
    folder that are not images (not read)."""

    kind: str
    description: str
    total: Optional[int] = None
    fps: Optional[float] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    ignored: int = 0
    files: Sequence[str] = ()
    capture: object = None  # the cv2.VideoCapture of a video or camera

    @property
    def is_stream(self) -> bool:
        """Frames of one video or camera (drawn into one video file), not separate images."""
        return self.kind in ("video", "camera")

    def __iter__(self) -> Iterator[Frame]:
        return self._stream() if self.is_stream else self._images()

    def _images(self) -> Iterator[Frame]:
        read = 0
        for index, path in enumerate(self.files):
            try:
                image = load_rgb(path)
            except (ValueError, OSError) as exc:
                if self.kind == "image":
                    raise SourceError(f"{exc}; pass a readable image ({_image_types()})") \
                        from None
                self.skipped.append((path, str(exc)))
                continue
            read += 1
            yield Frame(index, os.path.basename(path), image)
        if self.files and not read:
            raise SourceError(f"none of the {len(self.files)} images of {self.description} "
                              f"could be read (e.g. {self.skipped[0][1]}); pass readable images")

    def _stream(self) -> Iterator[Frame]:
        import cv2

        index = 0
        name = os.path.basename(self.description) if self.kind == "video" else self.description
        try:
            while True:
                ok, bgr = self.capture.read()
                if not ok:
                    break
                yield Frame(index, name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            self.capture.release()
        if index == 0:
            raise SourceError(_undecodable(self.description))

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


def _image_types() -> str:
    return "/".join(e.lstrip(".").upper() for e in IMAGE_EXTENSIONS[:4]) + ", ..."


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _undecodable(video: str) -> str:
    return (f"video {video!r} cannot be decoded by OpenCV (no frame could be read); convert it, "
            f"e.g. ffmpeg -i {video} -c:v libx264 out.mp4, or pass its frames as images")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SourceError("reading videos and cameras needs OpenCV: pip install "
                          "opencv-python-headless (mmcv installs it)") from None
    return cv2


@contextlib.contextmanager
def _native_stderr_silenced():
    """OpenCV and FFmpeg print their own lines (``moov atom not found``, ``can't open camera
    by index``) straight to file descriptor 2 when a file or camera does not open; the
    :class:`SourceError` that follows says it in one line with the fix."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_capture(target, description: str, kind: str) -> Source:
    cv2 = _cv2()
    with _native_stderr_silenced():
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        if kind == "camera":
            raise SourceError(f"camera {target} cannot be opened (no such device, or another "
                              f"program holds it); pass another camera index or a video file")
        raise SourceError(_undecodable(description))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return Source(kind, description, total=count if kind == "video" and count > 0 else None,
                  fps=fps if fps > 0 else None, capture=capture)


def _folder(folder: str) -> Source:
    names = sorted(os.listdir(folder))
    files = [os.path.join(folder, n) for n in names if _is_image(n)]
    others = [n for n in names if not _is_image(n) and os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise SourceError(f"folder {folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                          f"pass a folder of images, or a video file itself")
    return Source("folder", folder, total=len(files), files=files, ignored=len(others))


def _glob(pattern: str) -> Source:
    matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    files = [p for p in matches if _is_image(p)]
    if not files:
        videos = [p for p in matches if p.lower().endswith(VIDEO_EXTENSIONS)]
        fix = ("pass one video at a time" if videos else
               f"pass a pattern that matches images ({_image_types()})")
        raise SourceError(f"glob {pattern!r} matches no images ({len(matches)} files); {fix}")
    return Source("glob", pattern, total=len(files), files=files,
                  ignored=len(matches) - len(files))


def open_source(source: str) -> Source:
    """The :class:`Source` of a SOURCE argument (see the module doc)."""
    source = str(source)
    if source.isdigit() and not os.path.exists(source):
        return _open_capture(int(source), f"camera {source}", "camera")
    if os.path.isdir(source):
        return _folder(source)
    if os.path.isfile(source):
        if source.lower().endswith(VIDEO_EXTENSIONS):
            return _open_capture(source, source, "video")
        return Source("image", source, total=1, files=[source])
    if any(c in source for c in _GLOB_CHARS):
        return _glob(source)
    raise SourceError(f"source {source!r} does not exist; pass {_KINDS}")
