"""A progress bar with rate and ETA on stderr: tqdm's when it is installed, else a plain one."""
from __future__ import annotations

import importlib.util
import sys
import time
from typing import Optional, TextIO

__all__ = ["progress_bar", "PlainBar"]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class PlainBar:
    """What ``mnet predict`` shows without tqdm: ``desc 12/40 [#####     ] 3.1 img/s ETA 00:09``
    on one line, redrawn at most every ``interval`` seconds (the total unknown: count and rate)."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "img",
                 file: TextIO = sys.stderr, interval: float = 0.5):
        self.total, self.desc, self.unit = total, desc, unit
        self.file, self.interval = file, interval
        self.n = 0
        self._start = time.perf_counter()
        self._shown = 0.0

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = self.n / elapsed
        if not self.total:
            return f"{self.desc} {self.n} {self.unit} {rate:.1f} {self.unit}/s {_duration(elapsed)}"
        done = min(self.n / self.total, 1.0)
        bar = "#" * int(done * 20)
        eta = (self.total - self.n) / rate if rate > 0 else 0.0
        return (f"{self.desc} {self.n}/{self.total} [{bar:<20}] {rate:.1f} {self.unit}/s "
                f"ETA {_duration(eta)}")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._shown >= self.interval:
            self._shown = now
            self.file.write("\r" + self.line())
            self.file.flush()

    def close(self) -> None:
        self.file.write("\r" + self.line() + "\n")
        self.file.flush()


class _Off:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: Optional[int], desc: str, enabled: bool = True, unit: str = "img"):
    """A bar with ``update()`` and ``close()``: tqdm's (rate, ETA) when installed, else
    :class:`PlainBar`; one that draws nothing when not ``enabled``."""
    if not enabled:
        return _Off()
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
    return PlainBar(total, desc, unit)
