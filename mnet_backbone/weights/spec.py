"""What a weights spec is, decided once for every face (nothing read or downloaded).

A spec is a :class:`WeightEntry` or a registered entry name, an ``http://`` / ``https://`` URL,
a local file, or a state dict. One precedence rule: a registered entry name wins over a file of
the same name (``./name`` reaches the file); a URL is downloaded once into
:func:`~mnet_backbone.weights.hub.cache_dir` and converted like a local file of that name.

:func:`locate` tells which of them a spec is: a :class:`Located`, whose ``key`` identifies the
weights for a cache (a file's includes its mtime); :func:`mnet_backbone.weights.load.load` does
the work.
"""
from __future__ import annotations

import hashlib
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from torch import Tensor

from .entries import ENTRIES, WeightEntry
from .hub import UnknownEntryError, cache_dir

__all__ = ["WeightsLike", "Located", "locate", "URL_SCHEMES", "url_filename"]

WeightsLike = Union[WeightEntry, str, "os.PathLike[str]", Mapping[str, Tensor], "Located"]
URL_SCHEMES = ("http://", "https://")


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
