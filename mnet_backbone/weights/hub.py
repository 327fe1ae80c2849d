"""Download, verify and cache weight files; the errors every weight source shares.

Files go to ``$MNET_CACHE/weights/`` when ``MNET_CACHE`` is set, else to the torch hub cache
(``$TORCH_HOME/hub/checkpoints/mnet_backbone/``, see :func:`torch.hub.get_dir`): the downloaded
original as ``<entry>-<file name>`` and its conversion to this package's format as
``<entry>.pth``, so each file is downloaded and converted once. A full disk is one
:class:`CacheFullError` naming the cache folder, not a raw ``OSError`` or torch's writer error.

Any number of processes may fill the cache at once: files are only ever renamed into place
(:func:`mnet_backbone.files.atomic_write`, a temporary name per writer), never deleted while
valid, and a cached file that is stale, truncated or damaged is downloaded or converted again
once instead of failing; the ``*.partial`` files of killed writers are removed whenever the cache
is used once they are old. :func:`load_checkpoint` is the one safe (weights-only) checkpoint
reader of the package; a file it cannot read raises :class:`UnreadableCheckpointError` naming
the file and what it really holds.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pickle
import re
import socket
import sys
import urllib.error
import urllib.request
from typing import Callable, Optional, TypeVar

import numpy as np
import torch

from ..files import atomic_write, clean_stale_partials, describe_file

__all__ = ["WeightsError", "UnknownEntryError", "WeightsDownloadError", "HashMismatchError",
           "CorruptWeightsError", "UnreadableCheckpointError", "IncompatibleWeightsError",
           "CacheFullError", "cache_dir", "sha256sum", "download", "cached_download",
           "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "runner_checkpoint_globals"]

# Bump when a converter changes its output: converted files of another version are redone.
FORMAT_VERSION = 1
DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


class WeightsError(Exception):
    """Base class of the errors of :mod:`mnet_backbone.weights`."""


class UnknownEntryError(WeightsError, ValueError):
    """A weights name that is not in the registry."""


class WeightsDownloadError(WeightsError, OSError):
    """A download that failed (offline, wrong URL, server error, interrupted transfer)."""


class HashMismatchError(WeightsDownloadError):
    """A downloaded file whose SHA-256 is not the published one (the file is deleted)."""


class CorruptWeightsError(WeightsError, ValueError):
    """A file that cannot be read as the weights it should hold (corrupt, truncated, other)."""


class UnreadableCheckpointError(CorruptWeightsError):
    """A file that cannot be read as a checkpoint at all: empty, truncated, not a checkpoint (an
    image, a web page, random bytes), or holding objects a safe load does not create. The
    message names the file and what it holds."""


class IncompatibleWeightsError(WeightsError, ValueError):
    """Weights that do not fit the model (width, classes, layers or settings)."""


class CacheFullError(WeightsError, OSError):
    """No space left on the disk of the weights cache (the message names the folder and
    ``MNET_CACHE``)."""


def cache_dir() -> str:
    """``$MNET_CACHE/weights`` when ``MNET_CACHE`` is set, else ``<torch hub dir>/checkpoints/
    mnet_backbone`` (follows ``$TORCH_HOME``)."""
    if os.environ.get("MNET_CACHE"):
        return os.path.join(os.environ["MNET_CACHE"], "weights")
    return os.path.join(torch.hub.get_dir(), "checkpoints", "mnet_backbone")


@contextlib.contextmanager
def _room_for(path: str):
    """A full disk (or quota) while ``path`` is written is one :class:`CacheFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CacheFullError(
            f"no space left to write {os.path.basename(path)} into the weights cache "
            f"{os.path.dirname(os.path.abspath(path))} ({exc.strerror}); free space there, or "
            f"set MNET_CACHE to a folder on a disk with room") from None


def sha256sum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: Optional[int], desc: str, enabled: bool):
    # torch.hub's tqdm: the real one when installed, else torch's own stderr bar.
    return torch.hub.tqdm(total=total, disable=not enabled, unit="B", unit_scale=True,
                          unit_divisor=1024, desc=desc, file=sys.stderr)


def download(url: str, dst: str, sha256: Optional[str] = None, progress: bool = True,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Download ``url`` to ``dst`` (atomically, with a progress bar on stderr).

    A transfer shorter than the announced Content-Length is an error, and so is a SHA-256 that
    differs from ``sha256`` (given in full or as a prefix); in both cases nothing is left at
    ``dst``.
    """
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "mnet-backbone"})
    try:
        # Checks inside the with: a failed one leaves nothing at dst (atomic_write removes the
        # temporary file), and a finished download replaces dst in one rename.
        with urllib.request.urlopen(request, timeout=timeout) as response, \
                atomic_write(dst) as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with _progress_bar(total, os.path.basename(dst), progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise WeightsDownloadError(f"download of {url} was interrupted: got {received} "
                                           f"of {total} bytes. Try again.")
            actual = digest.hexdigest()
            if sha256 and not actual.startswith(sha256.lower()):
                raise HashMismatchError(
                    f"SHA-256 of the file downloaded from {url} is {actual}, expected {sha256}; "
                    f"the file was deleted. Try again (a proxy or an interrupted transfer can "
                    f"corrupt it); if it persists the URL serves a different file than the "
                    f"registered one: pass check_hash=False to use it anyway.")
    except urllib.error.HTTPError as exc:
        raise WeightsDownloadError(
            f"could not download {url}: the server answered HTTP {exc.code} ({exc.reason}). "
            f"Check the URL; or download the file yourself and pass its path.") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsDownloadError(
            f"could not download {url}: {reason}. Are you offline or behind a proxy, or is "
            f"the URL unreachable? Download the file on a connected machine and put it at "
            f"{dst}, or pass its local path instead of the entry name.") from None
    return dst


def _matches(path: str, sha256: Optional[str]) -> bool:
    """``path`` exists and (when a hash is given) has it: a cached download to trust."""
    return os.path.isfile(path) and (not sha256 or sha256sum(path).startswith(sha256.lower()))


def cached_download(url: str, filename: str, sha256: Optional[str] = None,
                    progress: bool = True, check_hash: bool = True) -> str:
    """The cached copy of ``url`` in :func:`cache_dir`, downloaded on first use, and again when
    the cached file's SHA-256 is not ``sha256`` (truncated or damaged)."""
    dst = os.path.join(cache_dir(), filename)
    clean_stale_partials(cache_dir())
    sha256 = sha256 if check_hash else None
    if not _matches(dst, sha256):
        with _room_for(dst):
            download(url, dst, sha256, progress)
    return dst


def save_checkpoint(path: str, state_dict: dict, meta: dict) -> str:
    """Write ``{'state_dict', 'meta'}`` atomically (readable by ``torch.load(weights_only=True)``,
    mmengine's ``Pretrained`` init and :func:`mnet_backbone.weights.load_weights`)."""
    meta = dict(meta, format="mnet_backbone", format_version=FORMAT_VERSION)
    # Serialized in memory first: torch's file writer reports a full disk as "unexpected pos",
    # a plain write as OSError ENOSPC.
    data = io.BytesIO()
    torch.save({"state_dict": state_dict, "meta": meta}, data)
    with atomic_write(path) as f:
        f.write(data.getbuffer())
    return path


def _numpy_globals() -> list:
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    names = [multiarray._reconstruct, np.ndarray, np.dtype]
    if hasattr(multiarray, "scalar"):
        names.append(multiarray.scalar)
    # Each dtype pickles as its own class (numpy >= 1.25: numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return names


def _statistics_method(obj, name):
    """``builtins.getattr`` as a Runner checkpoint uses it, and nothing more: a ``HistoryBuffer``
    statistics method (``min``, ``max``, ``current``, ``mean`` or a registered one). The builtin
    itself is never allowed: it would hand the file any attribute of any allowed object."""
    from mmengine.logging import HistoryBuffer
    methods = set(getattr(HistoryBuffer, "_statistics_methods", {})) | {"min", "max", "current",
                                                                         "mean"}
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and isinstance(name, str) \
            and name in methods:
        return getattr(obj, name)
    owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    raise pickle.UnpicklingError(f"refused getattr({owner}, {name!r}): a Runner "
                                 f"checkpoint only refers to HistoryBuffer statistics methods")


def runner_checkpoint_globals() -> list:
    """What an mmengine Runner checkpoint stores besides tensors (its message hub's
    ``HistoryBuffer`` objects, the numpy arrays in them, the ``getattr`` reductions of their
    statistics methods, answered by :func:`_statistics_method`): the allow-list of a safe load of
    such a file. Needs ``mmengine.logging`` only (not mmdet); ``[]`` without mmengine."""
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:
        return []
    return [HistoryBuffer, (_statistics_method, "builtins.getattr"), *_numpy_globals()]


_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unreadable(path: str, exc: BaseException) -> UnreadableCheckpointError:
    """The one-line error for a file torch.load refused; torch's own text is not repeated (it
    suggests weights_only=False, which runs arbitrary code from an untrusted file)."""
    refused_getattr = re.search(r"refused getattr\([^)]*\)", str(exc))
    if refused_getattr:
        return UnreadableCheckpointError(
            f"{path} asks for {refused_getattr.group(0)[8:]}, which a safe, weights-only load "
            f"does not give; it is no checkpoint mmengine wrote (do not load it unsafely)")
    refused = _REFUSED_GLOBAL.search(str(exc))
    if refused:
        name = refused.group(1)
        if name.startswith("mmengine.") and not runner_checkpoint_globals():
            return UnreadableCheckpointError(
                f"{path} is an mmengine Runner checkpoint: reading it needs mmengine "
                f"(pip install mmengine), whose message-hub objects it stores")
        return UnreadableCheckpointError(
            f"{path} holds Python objects ({name}) that a safe, weights-only load does not "
            f"create; if it is yours, save the tensors alone: "
            f"torch.save(model.state_dict(), path)")
    found = describe_file(path)
    if found.startswith(("empty", "a truncated", "a pickle", "a PyTorch")):
        advice = ("it is corrupt or truncated (an interrupted save, copy or download?); save, "
                  "download or convert it again")
    elif found.startswith("unknown"):
        advice = ("it is corrupt or truncated, or not a checkpoint at all; save, download or "
                  "convert it again")
    else:  # an image, a web page, ...: the wrong file
        advice = "this is not a checkpoint; pass the checkpoint file itself"
    return UnreadableCheckpointError(f"{path} is not a readable checkpoint: the file is {found}; "
                                     f"{advice}")


def load_checkpoint(path: str, map_location="cpu"):
    """The package's one safe checkpoint reader: ``torch.load(weights_only=True)``, also for
    mmengine Runner checkpoints (their message-hub objects are allowed while this file is read;
    the process-wide allow-list is left alone). Needs torch only (mmengine for Runner files).

    A missing file raises FileNotFoundError; any other failure :class:`UnreadableCheckpointError`
    naming the file and what it holds (empty, truncated zip, JPEG, HTML page, a folder, ...).
    """
    if os.path.isdir(path):
        raise UnreadableCheckpointError(f"{path} is a folder, not a checkpoint file; pass the "
                                        f"checkpoint (.pth) file itself")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            allowed = runner_checkpoint_globals()
            refused = _REFUSED_GLOBAL.search(str(exc))
            if not (allowed and refused and refused.group(1).startswith(("mmengine.", "numpy."))):
                raise
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (zip, pickle, EOF, tensor errors: one message)
        raise _unreadable(path, exc) from None


def _cached_state_dict(path: str, entry) -> Optional[dict]:
    """The state dict in a converted cache file of ``entry``; None when the file is missing,
    unreadable (truncated, damaged) or stale (another format version or URL)."""
    try:
        checkpoint = load_checkpoint(path)
    except (FileNotFoundError, CorruptWeightsError):
        return None
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    if (meta.get("format_version") == FORMAT_VERSION and meta.get("url") == entry.url
            and isinstance(checkpoint.get("state_dict"), dict)):
        return checkpoint["state_dict"]
    return None


T = TypeVar("T")


def convert_download(url: str, path: str, convert: Callable[[str], T],
                     sha256: Optional[str] = None, progress: bool = True) -> T:
    """``convert(path)`` of the download of ``url`` kept at ``path``: downloaded when missing (or
    not of ``sha256``); a cached copy that does not convert is downloaded once more, a fresh one
    that does not is deleted (so the next call tries again) and reported. Stale ``*.partial``
    files next to ``path`` are removed first."""
    clean_stale_partials(os.path.dirname(os.path.abspath(path)))
    for again in (False, True):
        fresh = again or not _matches(path, sha256)
        if fresh:
            with _room_for(path):
                download(url, path, sha256, progress)
        try:
            return convert(path)
        except CorruptWeightsError as exc:
            if not fresh:  # damaged in the cache (e.g. by an older version): download again
                continue
            try:
                os.remove(path)
            except FileNotFoundError:  # another process removed it first
                pass
            raise CorruptWeightsError(f"{exc} The file downloaded from {url} ({path}) was "
                                      f"deleted; the next call downloads it again.") from None
    raise AssertionError("unreachable")


def cached_conversion(entry, convert: Callable[[str], dict], progress: bool = True,
                      check_hash: bool = True) -> dict:
    """``entry``'s weights in this package's format: downloaded, converted once, then cached.

    ``convert(path)`` turns the downloaded file into a state dict. Safe for any number of
    processes at once: a stale or damaged converted file is converted again and replaced (never
    deleted first, so another process never finds it missing); a cached download that does not
    convert is downloaded once more; one that was just downloaded and does not convert is deleted
    and reported. Stale ``*.partial`` files of killed writers are removed on every call.
    """
    folder = cache_dir()
    clean_stale_partials(folder)
    converted = os.path.join(folder, f"{entry.name}.pth")
    state_dict = _cached_state_dict(converted, entry)
    if state_dict is not None:
        return state_dict
    sha256 = entry.sha256 if check_hash else None
    raw = os.path.join(folder, entry.filename)
    state_dict = convert_download(entry.url, raw, convert, sha256, progress)
    with _room_for(converted):
        save_checkpoint(converted, state_dict, dict(
            entry=entry.name, source=entry.source, url=entry.url, alpha=entry.alpha,
            num_classes=entry.num_classes, model_kwargs=dict(entry.model_kwargs)))
    return state_dict
