"""What a weights spec is, decided once for every face, and its state dict.

A spec is a :class:`WeightEntry` or a registered entry name, an ``http://`` / ``https://`` URL,
a local file, or a state dict. One precedence rule: a registered entry name wins over a file of
the same name (``./name`` reaches the file); a URL is downloaded once into
:func:`~mnet_backbone.weights.hub.cache_dir` and converted like a local file of that name.

* :func:`locate`: which of them a spec is (nothing read or downloaded): a :class:`Located`,
  whose ``key`` identifies the weights for a cache (a file's includes its mtime).
* :func:`resolve_weights`: ``(state_dict, model_kwargs, description)``, doing the work.
"""
from __future__ import annotations

import hashlib
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple, Union

from torch import Tensor

from .convert import (SOURCE_MODEL_KWARGS, convert_file, detect_source, from_plain, from_sequential,
                      from_timm, unwrap)
from .convert import drop_background as _drop_background
from .entries import ENTRIES, WeightEntry
from .hub import (IncompatibleWeightsError, UnknownEntryError, cache_dir,
                  convert_download)

__all__ = ["WeightsLike", "Located", "locate", "resolve_weights", "convert_weights",
           "URL_SCHEMES", "url_filename"]

WeightsLike = Union[WeightEntry, str, "os.PathLike[str]", Mapping[str, Tensor], "Located"]
URL_SCHEMES = ("http://", "https://")
_MAPPING_CONVERTERS = {"timm": from_timm, "sequential": from_sequential, "plain": from_plain}


@dataclass(frozen=True)
class Located:
    """What a weights spec is: ``kind`` is ``"entry"``, ``"file"``, ``"url"`` or
    ``"state_dict"``."""

    kind: str
    given: str                           # the spec as written (descriptions quote it)
    entry: Optional[WeightEntry] = None  # kind "entry"
    path: Optional[str] = None           # "file": expanded, absolute; "url": its cached copy
    url: Optional[str] = None            # kind "url"
    state_dict: Optional[Mapping[str, Tensor]] = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple:
        """Hashable identity of the weights, for caching a conversion: an entry's name and URL,
        a file's path and mtime (an edited file is new), a URL; a state dict's object id."""
        if self.kind == "entry":
            return ("entry", self.entry.name, self.entry.url)
        if self.kind == "file":
            return ("file", self.path, os.path.getmtime(self.path))
        if self.kind == "url":
            return ("url", self.url)
        return ("state_dict", id(self.state_dict))


def url_filename(url: str) -> str:
    """The cached copy's name: ``url-<hash of the URL>-<the URL's file name>`` (the suffix kept,
    so the file's format is told as for a local file)."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "weights"
    return f"url-{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def locate(weights: WeightsLike) -> Located:
    """What ``weights`` is, without reading or downloading anything.

    A :class:`WeightEntry` or registered entry name, then an ``http(s)://`` URL, then an existing
    file (``~`` expanded); a string that is none of them raises :class:`UnknownEntryError` listing
    the entries. A :class:`Located` passes through.
    """
    if isinstance(weights, Located):
        return weights
    if isinstance(weights, WeightEntry):
        return Located("entry", weights.name, entry=weights)
    if isinstance(weights, str) and weights in ENTRIES:
        return Located("entry", weights, entry=ENTRIES[weights])
    if isinstance(weights, (str, os.PathLike)):
        given = os.fspath(weights)
        if isinstance(given, str) and given.lower().startswith(URL_SCHEMES):
            return Located("url", given, url=given,
                           path=os.path.join(cache_dir(), url_filename(given)))
        path = os.path.expanduser(given)
        if not os.path.isfile(path):
            raise UnknownEntryError(
                f"weights {given!r} are neither a registered entry nor an existing file (nor an "
                f"http:// or https:// URL); valid entries: {', '.join(ENTRIES)}")
        return Located("file", given, path=os.path.abspath(path))
    if isinstance(weights, Mapping):
        return Located("state_dict", "state dict", state_dict=weights)
    raise TypeError(f"weights must be a WeightEntry, an entry name, a file path, a URL or a state "
                    f"dict, got {type(weights).__name__}")


def _convert_download(located: Located, source: Optional[str],
                      progress: bool) -> Tuple[Dict[str, Tensor], dict, str]:
    """Download once, convert (see :func:`~mnet_backbone.weights.hub.convert_download`)."""
    return convert_download(located.url, located.path, lambda p: convert_file(p, source),
                            progress=progress)


def convert_weights(weights: WeightsLike, source: Optional[str] = None, progress: bool = True,
                    check_hash: bool = True) -> Tuple[Dict[str, Tensor], dict, str, str]:
    """``(state_dict, model_kwargs, source, description)`` of any spec (see :func:`locate`);
    ``source`` (one of :data:`~mnet_backbone.weights.convert.SOURCES`) is checked, or detected
    when None."""
    located = locate(weights)
    if located.kind == "entry":
        from . import load_state_dict  # the package's attribute: tests replace the downloader
        entry = located.entry
        if source is not None and source != entry.source:
            raise IncompatibleWeightsError(f"{entry.name} is a {entry.source!r} entry, not "
                                           f"{source!r}")
        return (load_state_dict(entry, progress, check_hash), dict(entry.model_kwargs),
                entry.source, f"weights {entry.name!r}")
    if located.kind == "url":
        state_dict, model_kwargs, detected = _convert_download(located, source, progress)
        return state_dict, model_kwargs, detected, f"{detected} weights from {located.url}"
    if located.kind == "file":
        state_dict, model_kwargs, detected = convert_file(located.path, source)
        return state_dict, model_kwargs, detected, f"{detected} weights from {located.given}"
    state_dict = unwrap(dict(located.state_dict))
    detected = detect_source(state_dict)
    if source is not None and source != detected:
        raise IncompatibleWeightsError(f"the state dict was given as {source!r} weights but its "
                                       f"keys are of the {detected!r} layout")
    return (_MAPPING_CONVERTERS[detected](state_dict), dict(SOURCE_MODEL_KWARGS[detected]),
            detected, f"{detected} state dict")


def resolve_weights(weights: WeightsLike, progress: bool = True, check_hash: bool = True,
                    drop_background: bool = False) -> Tuple[Dict[str, Tensor], dict, str]:
    """``(state_dict, model_kwargs, description)`` of an entry, entry name, URL, file or state
    dict (see :func:`locate`).

    ``drop_background``: a TF-slim 1001-class head becomes the 1000 ImageNet classes (any other
    head is an error, see :func:`~mnet_backbone.weights.convert.drop_background`).
    """
    state_dict, model_kwargs, _, what = convert_weights(weights, None, progress, check_hash)
    if drop_background:
        state_dict = _drop_background(state_dict, what)
        what = f"{what} (background class dropped)"
    return state_dict, model_kwargs, what
