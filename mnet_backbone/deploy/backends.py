"""Runtimes for the exported ONNX files: ONNX Runtime and OpenVINO, at fp32, bf16 or int8.

:func:`load` opens a file on one backend and returns a :class:`Runner` (numpy in, list of
numpy outputs out). Precisions:

* ``fp32``: the fp32 file, computed in fp32 (OpenVINO is told so: on CPUs with AMX it would
  otherwise pick bf16 by itself);
* ``bf16``: the fp32 file run by OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``, only where
  the CPU has native bf16 (AVX512-BF16 or AMX-BF16; :func:`bf16_support` says which); ONNX
  Runtime has no bf16 CPU kernels for these graphs;
* ``int8``: a statically quantized (QDQ) file from :func:`mnet_backbone.deploy.quant.quantize_int8`,
  which both runtimes execute with int8 kernels.

:func:`choose_backend` (``backend="auto"`` in :func:`open_model`) times every installed backend
on the file, precision, batch size and thread count asked for, picks the fastest and remembers
the choice per machine in a JSON cache (``$MNET_BACKEND_CACHE``, default
``~/.cache/mnet-backbone/backend_choice.json``), so the measurement runs once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..files import atomic_write
from .timing import time_interleaved

__all__ = ["BACKENDS", "PRECISIONS", "Runner", "load", "open_model", "choose_backend",
           "available_backends", "bf16_support", "BackendNotInstalledError",
           "PrecisionNotSupportedError", "machine_fingerprint", "default_threads",
           "require_backend", "check_precision", "sample_input"]

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
_EXTRA = {"onnxruntime": "pip install 'mnet-backbone[deploy]' (or: pip install onnxruntime)",
          "openvino": "pip install 'mnet-backbone[deploy]' (or: pip install openvino)"}


class BackendNotInstalledError(ImportError):
    """The backend asked for is not installed (the message names what to install)."""


class PrecisionNotSupportedError(ValueError):
    """The precision asked for cannot run here (backend or CPU); the message says why."""


def default_threads() -> int:
    import torch
    return torch.get_num_threads()


def available_backends() -> List[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def require_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS} or 'auto'")
    if importlib.util.find_spec(backend) is None:
        raise BackendNotInstalledError(f"backend {backend!r} is not installed: {_EXTRA[backend]}")


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support() -> Dict[str, object]:
    """Which native bf16 the CPU has, and whether OpenVINO will use it."""
    flags = _cpu_flags()
    info: Dict[str, object] = {"avx512_bf16": "avx512_bf16" in flags,
                               "amx_bf16": "amx_bf16" in flags, "openvino_bf16": None}
    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        info["openvino_bf16"] = "BF16" in caps
    info["supported"] = bool(info["openvino_bf16"]) if info["openvino_bf16"] is not None else \
        bool(info["avx512_bf16"] or info["amx_bf16"])
    return info


def check_precision(backend: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "bf16":
        return
    if backend == "onnxruntime":
        raise PrecisionNotSupportedError(
            "bf16 is not available on ONNX Runtime's CPU backend; use backend='openvino' "
            "(or 'auto'), or precision 'fp32' / 'int8'")
    support = bf16_support()
    if not support["supported"]:
        raise PrecisionNotSupportedError(
            f"bf16: this CPU has no native bf16 (avx512_bf16={support['avx512_bf16']}, "
            f"amx_bf16={support['amx_bf16']}); use precision 'fp32' or 'int8'")


@dataclass
class Runner:
    """One file open on one backend: ``runner(x)`` -> list of output arrays."""

    backend: str
    precision: str
    path: str
    threads: int
    input_name: str
    output_names: List[str]
    _run: Callable[[np.ndarray], List[np.ndarray]]

    def __call__(self, x) -> List[np.ndarray]:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))


def _ort_runner(path: str, precision: str, threads: int) -> Runner:
    from .export import ort_session

    session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    return Runner("onnxruntime", precision, path, threads, name, outputs,
                  lambda x: session.run(outputs, {name: x}))


def _ov_runner(path: str, precision: str, threads: int) -> Runner:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1}
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    request = compiled.create_infer_request()
    outs = list(compiled.outputs)
    names = [o.get_any_name() for o in outs]
    name = compiled.inputs[0].get_any_name()

    def run(x: np.ndarray) -> List[np.ndarray]:
        result = request.infer({0: x})
        return [np.array(result[o]) for o in outs]

    return Runner("openvino", precision, path, threads, name, names, run)


def load(path: str, backend: str, precision: str = "fp32", threads: int = 0) -> Runner:
    """Open ``path`` on ``backend`` ('onnxruntime' or 'openvino') at ``precision``."""
    require_backend(backend)
    check_precision(backend, precision)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}")
    threads = threads or default_threads()
    return (_ort_runner if backend == "onnxruntime" else _ov_runner)(path, precision, threads)


def machine_fingerprint(threads: int) -> str:
    """CPU model, the ISA flags that change kernels, cores and threads, runtime versions."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         model)
    except OSError:
        pass
    isa = sorted(f for f in _cpu_flags() if f.startswith(("avx", "amx")))
    versions = []
    for backend in available_backends():
        from importlib.metadata import version
        versions.append(f"{backend}={version(backend)}")
    return f"{model}|{','.join(isa)}|cores={os.cpu_count()}|threads={threads}|{','.join(versions)}"


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _cache_path(cache: Optional[str]) -> str:
    return cache or os.environ.get("MNET_BACKEND_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mnet-backbone", "backend_choice.json")


def _read_cache(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged cache is only a cache: measure again


def sample_input(path: str, batch: int = 1) -> np.ndarray:
    """A random input of the file's input shape (dynamic image sides from its detector spec)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else None for d in dims]
    shape[0] = batch
    if None in shape:
        from .detector_export import read_spec
        h, w = read_spec(path).input_size
        shape = [batch, shape[1] or 3, shape[2] or h, shape[3] or w]
    rng = np.random.default_rng(0)
    return (rng.random(shape, dtype=np.float32) * 255).astype(np.float32)


def choose_backend(path: str, precision: str = "fp32", batch: int = 1, threads: int = 0,
                   candidates: Optional[Sequence[str]] = None, cache: Optional[str] = None,
                   repeats: int = 10, refresh: bool = False) -> Tuple[str, Dict[str, float]]:
    """The fastest backend for this file, precision, batch and machine, and the median ms of
    each candidate. The choice is cached (see the module doc); ``refresh=True`` measures again.
    Candidates that cannot run the precision (ONNX Runtime for bf16) are left out."""
    threads = threads or default_threads()
    names = list(candidates) if candidates else available_backends()
    for name in names:
        require_backend(name)
    names = [n for n in names if not (precision == "bf16" and n == "onnxruntime")]
    if not names:
        raise BackendNotInstalledError(f"no backend installed that runs {precision}: "
                                       f"{_EXTRA['openvino']}")
    key = "|".join([machine_fingerprint(threads), _file_digest(path), precision, str(batch),
                    ",".join(sorted(names))])
    cache_file = _cache_path(cache)
    data = _read_cache(cache_file)
    if not refresh and key in data:
        return data[key]["backend"], data[key]["median_ms"]
    x = sample_input(path, batch)
    runners = {name: load(path, name, precision, threads) for name in names}
    times = time_interleaved(runners, x, rounds=repeats, calls=1)
    medians = {name: round(statistics.median(t) * 1e3, 3) for name, t in times.items()}
    best = min(medians, key=medians.get)
    data[key] = {"backend": best, "median_ms": medians, "measured": time.strftime("%Y-%m-%d")}
    with atomic_write(cache_file, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    return best, medians


def open_model(path: str, backend: str = "auto", precision: str = "fp32", threads: int = 0,
               batch: int = 1, cache: Optional[str] = None) -> Runner:
    """:func:`load` with ``backend="auto"``: the fastest measured backend (cached per machine)."""
    if backend == "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        if precision == "bf16":
            check_precision("openvino", precision)
        backend, _ = choose_backend(path, precision, batch, threads, cache=cache)
    return load(path, backend, precision, threads)
