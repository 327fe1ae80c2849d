"""Download, verify and cache weight files; the errors every weight source shares.

Files go to the torch hub cache (``$TORCH_HOME/hub/checkpoints/mnet_backbone/``, see
:func:`torch.hub.get_dir`): the downloaded original as ``<entry>-<file name>`` and its conversion
to this package's format as ``<entry>.pth``, so each file is downloaded and converted once.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.error
import urllib.request
from typing import Callable, Optional

import torch

__all__ = ["WeightsError", "UnknownEntryError", "WeightsDownloadError", "HashMismatchError",
           "CorruptWeightsError", "IncompatibleWeightsError", "cache_dir", "sha256sum",
           "download", "cached_download", "FORMAT_VERSION", "save_checkpoint",
           "load_checkpoint"]

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


class IncompatibleWeightsError(WeightsError, ValueError):
    """Weights that do not fit the model (width, classes, layers or settings)."""


def cache_dir() -> str:
    """``<torch hub dir>/checkpoints/mnet_backbone`` (follows ``$TORCH_HOME``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", "mnet_backbone")


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
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    partial = f"{dst}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "mnet-backbone"})
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, \
                    open(partial, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with _progress_bar(total, os.path.basename(dst), progress) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
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
        if total is not None and received != total:
            raise WeightsDownloadError(
                f"download of {url} was interrupted: got {received} of {total} bytes. Try again.")
        actual = digest.hexdigest()
        if sha256 and not actual.startswith(sha256.lower()):
            raise HashMismatchError(
                f"SHA-256 of the file downloaded from {url} is {actual}, expected {sha256}; the "
                f"file was deleted. Try again (a proxy or an interrupted transfer can corrupt it); "
                f"if it persists the URL serves a different file than the registered one: pass "
                f"check_hash=False to use it anyway.")
        os.replace(partial, dst)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return dst


def cached_download(url: str, filename: str, sha256: Optional[str] = None,
                    progress: bool = True, check_hash: bool = True) -> str:
    """The cached copy of ``url`` (downloaded on first use) in :func:`cache_dir`."""
    dst = os.path.join(cache_dir(), filename)
    if not os.path.isfile(dst):
        download(url, dst, sha256 if check_hash else None, progress)
    return dst


def save_checkpoint(path: str, state_dict: dict, meta: dict) -> str:
    """Write ``{'state_dict', 'meta'}`` atomically (readable by ``torch.load(weights_only=True)``,
    mmengine's ``Pretrained`` init and :func:`mnet_backbone.weights.load_weights`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    meta = dict(meta, format="mnet_backbone", format_version=FORMAT_VERSION)
    try:
        torch.save({"state_dict": state_dict, "meta": meta}, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def load_checkpoint(path: str) -> dict:
    """``torch.load`` with ``weights_only=True``; unreadable files raise CorruptWeightsError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle, zip and tensor errors all mean the same to a user
        raise CorruptWeightsError(
            f"cannot read {path} as a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the file is corrupt, truncated or "
            f"not a weights-only checkpoint. Download or convert it again.") from None


def cached_conversion(entry, convert: Callable[[str], dict], progress: bool = True,
                      check_hash: bool = True) -> dict:
    """``entry``'s weights in this package's format: downloaded, converted once, then cached.

    ``convert(path)`` turns the downloaded file into a state dict. A downloaded file that cannot be
    converted is deleted so the next call downloads it again.
    """
    converted = os.path.join(cache_dir(), f"{entry.name}.pth")
    if os.path.isfile(converted):
        try:
            checkpoint = load_checkpoint(converted)
            meta = checkpoint.get("meta", {})
            if (meta.get("format_version") == FORMAT_VERSION and meta.get("url") == entry.url
                    and isinstance(checkpoint.get("state_dict"), dict)):
                return checkpoint["state_dict"]
        except CorruptWeightsError:
            pass
        os.remove(converted)  # stale or damaged: convert again
    raw = cached_download(entry.url, entry.filename, entry.sha256, progress, check_hash)
    try:
        state_dict = convert(raw)
    except CorruptWeightsError as exc:
        os.remove(raw)
        raise CorruptWeightsError(
            f"{exc} The downloaded file {raw} was deleted; the next call downloads it again.") \
            from None
    save_checkpoint(converted, state_dict, dict(
        entry=entry.name, source=entry.source, url=entry.url, alpha=entry.alpha,
        num_classes=entry.num_classes, model_kwargs=dict(entry.model_kwargs)))
    return state_dict
