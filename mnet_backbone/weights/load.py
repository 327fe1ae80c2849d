"""Loading located weights: a registered entry (downloaded, converted and cached once), a URL
(downloaded once, converted like a file), a file or a state dict, each to one
:class:`~mnet_backbone.weights.loaded.LoadedWeights`.

:func:`load_state_dict` is the one downloader of registered entries (tests that must not
download replace it here, or serve files from 127.0.0.1).
"""
from __future__ import annotations

import functools
import os
import urllib.parse
from typing import Dict, Optional

from torch import Tensor

from .convert import convert_file, convert_state_dict
from .entries import get_entry
from .hub import IncompatibleWeightsError, cached_conversion, convert_download, save_checkpoint
from .layout import block_prefixes
from .loaded import LoadedWeights
from .spec import Located, locate

__all__ = ["load_state_dict", "load", "convert_to_file"]


def load_state_dict(entry_or_name, progress: bool = True,
                    check_hash: bool = True) -> Dict[str, Tensor]:
    """The state dict (this package's keys) of a registered entry.

    Downloaded to the weights cache on first use (progress bar on stderr, SHA-256 checked when
    the entry has one), converted once and cached as ``<entry>.pth``.
    """
    entry = get_entry(entry_or_name)
    return cached_conversion(entry, lambda path: convert_file(path, entry.source).state_dict,
                             progress, check_hash)


def load(located: Located, progress: bool = True, check_hash: bool = True,
         source: Optional[str] = None) -> LoadedWeights:
    """The weights ``located`` names (see :func:`~mnet_backbone.weights.spec.locate`).

    A registered entry is downloaded (:func:`load_state_dict`) when its tensors are first used:
    its settings, ``alpha`` and ``num_classes`` are known before. A URL is downloaded and a file
    read here, for the settings they hold. ``source`` (one of
    :data:`~mnet_backbone.weights.convert.SOURCES`) is checked, or detected when None.
    """
    if located.kind == "entry":
        entry = located.entry
        if source is not None and source != entry.source:
            raise IncompatibleWeightsError(f"{entry.name} is a {entry.source!r} entry, not "
                                           f"{source!r}")
        return LoadedWeights(functools.partial(load_state_dict, entry, progress, check_hash),
                             dict(entry.model_kwargs), entry.source, f"weights {entry.name!r}",
                             entry.alpha, entry.num_classes)
    elif located.kind == "url":
        return convert_download(located.url, located.path,
                                  lambda path: convert_file(path, source, given=located.url),
                                  progress=progress)
    elif located.kind == "file":
        return convert_file(located.path, source, given=located.given)
    return convert_state_dict(dict(located.state_dict), source)


def convert_to_file(src: str, dst: str, source: Optional[str] = None,
                    backbone_only: bool = False, drop_background: bool = False) -> dict:
    """Convert the weights ``src`` (a registered entry name, an http(s) URL or a file; see
    :func:`~mnet_backbone.weights.spec.locate`) to the file ``dst``.

    ``drop_background`` turns a TF-slim 1001-class head into the 1000 ImageNet classes (see
    :meth:`~mnet_backbone.weights.loaded.LoadedWeights.without_background`).
    ``dst`` holds ``{'state_dict': ..., 'meta': ...}``: mmengine's ``Pretrained`` init reads it
    (the backbone's keys are this package's), and so does
    :func:`mnet_backbone.weights.load_weights`, which also applies the settings recorded in
    ``meta['model_kwargs']``. Returns the meta data.
    """
    located = locate(src)
    loaded = load(located, source=source)
    if drop_background:
        loaded = loaded.without_background()
    if backbone_only:
        loaded = loaded.without_classifier()
    state_dict = loaded.state_dict
    stem = state_dict.get(f"{block_prefixes()[0]}.conv.weight")
    name = urllib.parse.urlsplit(src).path if located.kind == "url" else src
    meta = dict(source=loaded.source, converted_from=os.path.basename(name),
                model_kwargs=loaded.model_kwargs,
                num_classes=int(state_dict["fc.weight"].shape[0]) if "fc.weight" in state_dict
                else 0,
                stem_channels=int(stem.shape[0]) if stem is not None else None)
    save_checkpoint(dst, state_dict, meta)
    return meta
