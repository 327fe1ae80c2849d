"""Parallel single-threaded streams for large batches.

A batch-1 MobileNet layer is too small to keep two cores busy without waiting at every layer's
barrier; a large batch is the opposite problem (its feature maps do not fit the caches). Splitting
a large batch between ``streams`` worker threads, each running its share with *one* intra-op
thread and in cache-sized chunks, uses every core without per-layer synchronisation. Used by
:class:`~mnet_backbone.deploy.fold.DeployedMobileNetV1` (PyTorch) and
:class:`~mnet_backbone.deploy.runtime.OrtModel` (ONNX Runtime).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Sequence, TypeVar

import torch

__all__ = ["StreamPool", "split_even"]

T = TypeVar("T")


def split_even(n: int, parts: int) -> List[slice]:
    """``parts`` contiguous slices of ``range(n)`` whose lengths differ by at most one."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (i < extra)
        out.append(slice(start, stop))
        start = stop
    return out


def _single_threaded_torch(barrier: threading.Barrier) -> None:
    torch.get_num_threads()  # run PyTorch's per-thread lazy init first, so it is not redone
    torch.set_num_threads(1)  # this thread's OpenMP / MKL setting
    barrier.wait()


class StreamPool:
    """``streams`` worker threads; with ``torch_threads_1`` each runs PyTorch single-threaded.

    The calling thread's PyTorch thread count is restored after the workers start.
    """

    def __init__(self, streams: int, torch_threads_1: bool = True):
        if streams < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        self.streams = streams
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="mnet-stream")
        if torch_threads_1:
            main_threads = torch.get_num_threads()
            barrier = threading.Barrier(streams)
            for f in [self._pool.submit(_single_threaded_torch, barrier) for _ in range(streams)]:
                f.result()
            torch.set_num_threads(main_threads)

    def map(self, fn: Callable[[object], T], items: Sequence[object]) -> List[T]:
        return [f.result() for f in [self._pool.submit(fn, item) for item in items]]

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        try:
            self._pool.shutdown(wait=False)
        except Exception:
            pass
