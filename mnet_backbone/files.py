"""Files on disk: written whole or not at all, and a plain name for what a file holds.

Every file the package writes for later reading (converted weights, downloads, checkpoints,
exported models, caches, summaries) goes through :func:`atomic_write` / :func:`atomic_path`: the
data goes to a temporary file in the same folder under a name no other process or thread uses, is
flushed and fsynced, and is renamed over the target only when the writer finished without an
error. A reader, in this or any other process, sees the old file or the new one, never half of
one; a writer killed with ``kill -9`` leaves only a ``*.partial`` file, which
:func:`clean_stale_partials` removes once it is old enough that no live writer can own it (or,
in a folder only this machine writes, such as a training run's work dir, once its writer is gone).

:func:`describe_file` says what a file that failed to load really is (empty, a truncated zip, a
JPEG renamed ``.pth``, an HTML error page, a Git LFS pointer, ...), so that errors can name it.
Standard library only.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import secrets
import tempfile
import time
import zipfile
from typing import IO, Iterator, List, Optional

__all__ = ["PARTIAL_SUFFIX", "atomic_write", "atomic_path", "partial_name",
           "clean_stale_partials", "describe_file", "UnwritableFolderError",
           "check_writable_folder"]

PARTIAL_SUFFIX = ".partial"
# A writer refreshes its partial file's mtime with every write; one untouched for an hour
# belongs to a process that died (kill -9, power loss).
STALE_PARTIAL_AGE_S = 3600.0


class UnwritableFolderError(PermissionError):
    """A folder that cannot be created or written to (the message names it and the fix)."""


def check_writable_folder(folder: str, fix: str) -> str:
    """Create ``folder`` if needed and make sure a file can be written there, before any work
    whose result would go there; else :class:`UnwritableFolderError` naming the folder, the
    reason and ``fix`` (e.g. ``"pass another --output"``). Returns ``folder``."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test"):
            pass
    except OSError as exc:
        raise UnwritableFolderError(f"folder {folder!r} cannot be written "
                                    f"({exc.strerror or exc}); {fix}") from None
    return folder


def partial_name(path: str) -> str:
    """A temporary name next to ``path`` that no other writer uses: the process id keeps
    processes apart, the random part keeps threads (and a reused pid) apart."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def _fsync(path: str) -> None:
    # Durability only (power loss): a kill -9 cannot tear a renamed file either way. Folders
    # cannot be opened on Windows, so failures are ignored.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_path(path: str, fsync: bool = True) -> Iterator[str]:
    """Context manager yielding a temporary path to write ``path``'s new content to by name
    (for writers that only take a path, e.g. ``onnx.save`` with external data).

    On a normal exit the file is fsynced and renamed to ``path``; on any exception (including
    KeyboardInterrupt) it is removed and ``path`` is left as it was. The folder is created if
    needed. The temporary name ends in ``.partial``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = partial_name(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if fsync:
        _fsync(folder)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", encoding: Optional[str] = None,
                 fsync: bool = True) -> Iterator[IO]:
    """Context manager yielding an open file whose content replaces ``path`` on success.

    ``mode`` is ``"wb"`` (default) or ``"w"`` (text, ``encoding`` defaults to UTF-8)::

        with atomic_write(path) as f:
            torch.save(checkpoint, f)
        with atomic_write(path, "w") as f:
            json.dump(summary, f)

    The temporary file is created exclusively (never shared with another writer) with the
    permissions of a normal new file (umask applies), flushed and fsynced, then renamed over
    ``path``; on any exception it is removed and ``path`` is unchanged.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path, fsync=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
        with (os.fdopen(fd, "wb") if mode == "wb" else
              os.fdopen(fd, "w", encoding=encoding or "utf-8")) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    if fsync:
        _fsync(os.path.dirname(os.path.abspath(path)))


_PARTIAL_PID = re.compile(r"\.(\d+)-[0-9a-f]+" + re.escape(PARTIAL_SUFFIX) + "$")


def _writer_is_dead(name: str) -> bool:
    """True when the process that :func:`partial_name` named in ``name`` no longer runs on this
    machine. POSIX only (``os.kill(pid, 0)`` only asks; on Windows it would end the process)."""
    found = _PARTIAL_PID.search(name)
    if found is None or os.name != "posix":
        return False
    pid = int(found.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    return False


def clean_stale_partials(folder: str, pattern: str = "*" + PARTIAL_SUFFIX,
                         max_age: float = STALE_PARTIAL_AGE_S,
                         dead_writers: bool = False) -> List[str]:
    """Remove files in ``folder`` (not below it) matching ``pattern`` whose last write is more
    than ``max_age`` seconds ago: the leftovers of writers that were killed. Returns their paths.
    A missing folder, and files another process removes first, are not errors.

    ``dead_writers=True`` also removes, at any age, a partial file whose writer (the process id
    in its name) no longer runs on this machine. Only for folders that writers on this machine
    alone fill (a training run's work dir: its checkpoints are written by its main process); a
    shared cache on a network disk keeps to ``max_age``, as other machines' pids mean nothing
    here.
    """
    removed: List[str] = []
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for name in names:
        if not fnmatch.fnmatch(name, pattern):
            continue
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path):
                continue
            if now - os.stat(path).st_mtime <= max_age and not (dead_writers
                                                                and _writer_is_dead(name)):
                continue
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


# (leading bytes, what a file starting with them is)
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras weights?)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself (run `git lfs pull`)"),
)


def describe_file(path: str) -> str:
    """What ``path`` holds, in a few words, for an error message: ``"empty (0 bytes)"``,
    ``"a JPEG image"``, ``"a truncated zip archive (12345 bytes, no end record)"``, ``"an HTML
    page"``, ``"a pickle"``, ``"a zip archive that is not a PyTorch checkpoint (holds a.txt)"``,
    or ``"unknown content (starts with b'...')"``. Never raises for a readable file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size == 0:
        return "empty (0 bytes)"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return f"a truncated zip archive ({size} bytes, its end record is missing)"
        if not any(n.endswith("data.pkl") for n in names):
            return (f"a zip archive that is not a PyTorch checkpoint (holds "
                    f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
        return f"a PyTorch zip checkpoint ({size} bytes) with a damaged record"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return f"a pickle ({size} bytes; truncated, or not written by torch.save)"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a download that got a web page instead of the file?)"
    if text.startswith((b"{", b"[")):
        return "JSON or other text"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "a safetensors file"
    return f"unknown content (starts with {head[:16]!r})"
