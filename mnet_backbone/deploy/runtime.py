"""Running an exported model in ONNX Runtime with the deploy batching strategy."""
from __future__ import annotations

from typing import List, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .export import ort_session
from .streams import StreamPool, split_even

__all__ = ["OrtModel"]


class OrtModel:
    """An ``.onnx`` file (fp32 or int8) on the CPU, callable on tensors or arrays.

    Batches of fewer than ``streams`` images run in one session with ``threads`` intra-op threads
    (lowest latency). Larger batches are split between ``streams`` worker threads that share a
    second, single-threaded session, each running its share in chunks of ``chunk`` images
    (0: all at once; 1, the default, measured fastest: see docs/benchmarks.md);
    see :mod:`mnet_backbone.deploy.streams`. ``streams=1``: one stream, ``threads`` threads.
    Returns the first output (``all_outputs=True``: the list of outputs).
    """

    def __init__(self, path: str, threads: int = 0, streams: Optional[int] = None,
                 chunk: int = 1, all_outputs: bool = False):
        self.path = path
        self.threads = threads or torch.get_num_threads()
        self.streams = self.threads if streams is None else streams
        self.chunk = chunk
        self.all_outputs = all_outputs
        self.session = ort_session(path, self.threads)
        self.input_name = self.session.get_inputs()[0].name
        self._single = ort_session(path, 1) if self.streams > 1 else None
        self._pool = StreamPool(self.streams, torch_threads_1=False) if self._single else None

    def _run(self, session, x: np.ndarray) -> List[np.ndarray]:
        if self.chunk and len(x) > self.chunk:
            parts = [session.run(None, {self.input_name: x[i:i + self.chunk]})
                     for i in range(0, len(x), self.chunk)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        return session.run(None, {self.input_name: x})

    def __call__(self, x: Union[Tensor, np.ndarray]) -> Union[np.ndarray, List[np.ndarray]]:
        if isinstance(x, Tensor):
            x = x.detach().cpu().float().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._pool is not None and len(x) >= self.streams:
            parts = self._pool.map(lambda s: self._run(self._single, x[s]),
                                   split_even(len(x), self.streams))
            outs = [np.concatenate(o) for o in zip(*parts)]
        else:
            outs = self._run(self.session, x)
        return outs if self.all_outputs else outs[0]
