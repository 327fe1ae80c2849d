"""Runtimes for the exported ONNX files: ONNX Runtime and OpenVINO, at fp32, bf16 or int8.

:func:`load` opens a file on one backend and returns a :class:`Runner` (numpy in, list of
numpy outputs out). Precisions:

* ``fp32``: the fp32 file, computed in fp32 (OpenVINO is told so: on CPUs with native bf16,
  AMX or AVX512-BF16, it would otherwise pick bf16 by itself);
* ``bf16``: the fp32 file run by OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``, only where
  the CPU has native bf16 (AVX512-BF16 or AMX-BF16; :func:`bf16_support` says which); ONNX
  Runtime has no bf16 CPU kernels for these graphs;
* ``int8``: a statically quantized (QDQ) file from :func:`mnet_backbone.deploy.quant.quantize_int8`,
  which both runtimes execute with int8 kernels.

:func:`choose` (``backend="auto"`` in :func:`open_model`) times every configuration of every
installed backend on the file, precision, batch size and thread count asked for, picks the
fastest and remembers the choice per machine in a JSON cache (``$MNET_BACKEND_CACHE``, default
``~/.cache/mnet-backbone/backend_choice.json``), so the measurement runs once.

Every backend runs a file in one of its *configurations* (:data:`BACKEND_CONFIGS`):

* ``own``: the package's settings (ONNX Runtime: ``threads`` intra-op threads, one inter-op
  thread, sequential execution, all graph optimizations; OpenVINO: ``PERFORMANCE_HINT=LATENCY``,
  one stream, ``threads`` threads, the input shared with the request instead of copied);
* ``own-static`` (OpenVINO): the same, compiled for the one input shape of the batch size the
  runner is opened for (a static shape lets OpenVINO plan memory and kernels once); other shapes
  run on the ``own`` model, compiled when first needed;
* ``default``: the runtime's own defaults on the same file, as a plain user would open it (a
  plain ``InferenceSession``; a plain ``compile_model`` called on the array). Only what the
  caller asked for is set: the thread count, and OpenVINO's inference precision (its default
  on a CPU with bf16 is bf16, which would not be the fp32 or int8 asked for).

``backend="auto"`` measures every configuration of every installed backend: the package keeps
its own settings only where they measure faster on the machine at hand. The loaded
:class:`Runner` says which configuration it runs (``runner.config``) and, when ``auto`` chose
it, the whole measurement (``runner.choice``, a :class:`Choice`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..files import atomic_write
from .timing import time_interleaved

__all__ = ["BACKENDS", "PRECISIONS", "CONFIGS", "BACKEND_CONFIGS", "Runner", "Choice", "load",
           "open_model", "choose", "choose_backend", "candidate_labels", "candidate_label",
           "available_backends", "bf16_support", "kernel_flags", "BackendNotInstalledError",
           "PrecisionNotSupportedError", "machine_fingerprint", "default_threads",
           "require_backend", "check_precision", "check_config", "input_shape", "sample_input",
           "KERNEL_FLAGS"]

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
CONFIGS = ("own", "own-static", "default")
BACKEND_CONFIGS = {"onnxruntime": ("own", "default"),
                   "openvino": ("own", "own-static", "default")}
# The CPU flags that change which kernels the runtimes pick (reported with every benchmark).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
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


def kernel_flags() -> Dict[str, bool]:
    """Which of the CPU flags that change the runtimes' kernels (:data:`KERNEL_FLAGS`) this CPU
    has: what a benchmark table must name to be read on another machine."""
    flags = _cpu_flags()
    return {flag: flag in flags for flag in KERNEL_FLAGS}


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


def check_config(backend: str, config: str) -> None:
    if config not in BACKEND_CONFIGS.get(backend, CONFIGS):
        raise ValueError(f"unknown configuration {config!r} for {backend}; choose one of "
                         f"{BACKEND_CONFIGS.get(backend, CONFIGS)}")


@dataclass
class Runner:
    """One file open on one backend: ``runner(x)`` -> list of output arrays.

    ``config``: the backend configuration it runs (see the module doc); ``choice``: when
    ``backend="auto"`` opened it, what was measured and why this one (a :class:`Choice`)."""

    backend: str
    precision: str
    path: str
    threads: int
    input_name: str
    output_names: List[str]
    _run: Callable[[np.ndarray], List[np.ndarray]]
    config: str = "own"
    choice: Optional["Choice"] = None

    def __call__(self, x) -> List[np.ndarray]:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def describe(self) -> str:
        """One line: backend, configuration, precision, threads (and how ``auto`` chose)."""
        text = f"{self.backend} ({self.config} configuration), {self.precision}, " \
               f"{self.threads} threads"
        return text + (f"; {self.choice.describe()}" if self.choice else "")


def _ort_runner(path: str, precision: str, threads: int, config: str,
                shape: Sequence[int]) -> Runner:
    import onnxruntime as ort

    from .export import ort_session

    if config == "default":  # a plain session: ONNX Runtime's defaults but the thread count
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    else:
        session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    return Runner("onnxruntime", precision, path, threads, name, outputs,
                  lambda x: session.run(outputs, {name: x}), config)


def _ov_runner(path: str, precision: str, threads: int, config: str,
               shape: Sequence[int]) -> Runner:
    import openvino as ov

    core = ov.Core()
    # Set in every configuration: the precision asked for (OpenVINO's default on a CPU with
    # bf16 is bf16, also for the fp32 parts of an int8 file) and the thread count.
    asked = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
             "INFERENCE_NUM_THREADS": int(threads)}
    if config == "default":  # a plain compile_model, called on the array
        compiled = core.compile_model(path, "CPU", asked)
        outs = list(compiled.outputs)

        def run_default(x: np.ndarray) -> List[np.ndarray]:
            return list(compiled(x).values())
        return Runner("openvino", precision, path, threads, compiled.inputs[0].get_any_name(),
                      [o.get_any_name() for o in outs], run_default, config)

    own = dict(asked, PERFORMANCE_HINT="LATENCY", NUM_STREAMS=1)
    requests = {}  # input shape (None: any) -> infer request, compiled on first use

    def request(key: Optional[Tuple[int, ...]]):
        if key not in requests:
            model = core.read_model(path)
            if key is not None:
                model.reshape(list(key))
            requests[key] = core.compile_model(model, "CPU", own).create_infer_request()
        return requests[key]

    static = tuple(shape) if config == "own-static" else None
    first = request(static)  # compile now: errors (a shape the graph cannot take) show here
    outs = list(first.model_outputs)

    def run(x: np.ndarray) -> List[np.ndarray]:
        req = first if static is None or x.shape == static else request(None)
        # The request reads the caller's array in place (infer is synchronous); its outputs
        # are copies the caller owns.
        result = req.infer({0: x}, share_inputs=True)
        # In output order (the static and the dynamic model's output objects differ).
        return list(result.values())

    return Runner("openvino", precision, path, threads, first.model_inputs[0].get_any_name(),
                  [o.get_any_name() for o in outs], run, config)


def load(path: str, backend: str, precision: str = "fp32", threads: int = 0,
         config: str = "own", batch: int = 1) -> Runner:
    """Open ``path`` on ``backend`` ('onnxruntime' or 'openvino') at ``precision`` in the
    backend configuration ``config`` (:data:`BACKEND_CONFIGS`); ``batch``: the batch size a
    static-shape configuration is compiled for."""
    require_backend(backend)
    check_precision(backend, precision)
    check_config(backend, config)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}")
    threads = threads or default_threads()
    shape = input_shape(path, batch) if config == "own-static" else ()
    opener = _ort_runner if backend == "onnxruntime" else _ov_runner
    return opener(path, precision, threads, config, shape)


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


def input_shape(path: str, batch: int = 1) -> List[int]:
    """The file's input shape for ``batch`` images (dynamic image sides from its detector
    spec)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else None for d in dims]
    shape[0] = batch
    if None in shape:
        from .detector_export import read_spec
        h, w = read_spec(path).input_size
        shape = [batch, shape[1] or 3, shape[2] or h, shape[3] or w]
    return shape


def sample_input(path: str, batch: int = 1) -> np.ndarray:
    """A random input of the file's input shape (:func:`input_shape`)."""
    rng = np.random.default_rng(0)
    return (rng.random(input_shape(path, batch), dtype=np.float32) * 255).astype(np.float32)


def candidate_label(backend: str, config: str) -> str:
    return f"{backend}/{config}"


def candidate_labels(names: Optional[Sequence[str]] = None, precision: str = "fp32") -> List[str]:
    """The ``backend/config`` labels ``auto`` measures: every configuration of each backend in
    ``names`` (default: the installed ones); a name may also be one ``backend/config``. Backends
    that cannot run ``precision`` (ONNX Runtime for bf16) are left out."""
    out = []
    for name in names or available_backends():
        backend, _, config = name.partition("/")
        require_backend(backend)
        if config:
            check_config(backend, config)
        if precision == "bf16" and backend == "onnxruntime":
            continue
        out += [candidate_label(backend, c) for c in ([config] if config else
                                                       BACKEND_CONFIGS[backend])]
    return out


@dataclass(frozen=True)
class Choice:
    """What ``backend="auto"`` measured on one file, precision, batch and thread count.

    ``median_ms``: every candidate (``backend/config``) -> median ms per call, measured
    interleaved on this machine; ``skipped``: candidates that could not be opened -> why;
    ``cached``: read from the choice cache instead of measured now."""

    backend: str
    config: str
    median_ms: Dict[str, float]
    skipped: Dict[str, str] = field(default_factory=dict)
    measured: str = ""
    cached: bool = False

    @property
    def label(self) -> str:
        return candidate_label(self.backend, self.config)

    def backend_medians(self) -> Dict[str, float]:
        """Each backend's best configuration's median ms."""
        best: Dict[str, float] = {}
        for label, ms in self.median_ms.items():
            backend = label.split("/", 1)[0]
            best[backend] = min(ms, best.get(backend, ms))
        return best

    def describe(self) -> str:
        others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.median_ms.items(),
                                                             key=lambda kv: kv[1]))
        text = (f"auto chose {self.label} ({'cached, ' if self.cached else ''}measured "
                f"{self.measured}: {others} ms)")
        return text + "".join(f"; {k} skipped: {v}" for k, v in self.skipped.items())

    def as_dict(self) -> Dict[str, object]:
        return {"backend": self.backend, "config": self.config, "median_ms": self.median_ms,
                "skipped": self.skipped, "measured": self.measured, "cached": self.cached}


def _open_candidates(path: str, labels: Sequence[str], precision: str, threads: int,
                     batch: int) -> Tuple[Dict[str, Runner], Dict[str, str]]:
    runners, skipped = {}, {}
    for label in labels:
        backend, config = label.split("/", 1)
        try:
            runners[label] = load(path, backend, precision, threads, config, batch)
        except RuntimeError as exc:
            if config != "own-static":
                raise
            # A graph OpenVINO cannot compile for one fixed shape: a candidate fewer, said so.
            skipped[label] = str(exc).strip().splitlines()[0][:200]
    return runners, skipped


def choose(path: str, precision: str = "fp32", batch: int = 1, threads: int = 0,
           candidates: Optional[Sequence[str]] = None, cache: Optional[str] = None,
           repeats: int = 10, refresh: bool = False) -> Choice:
    """The fastest backend configuration for this file, precision, batch and machine.

    Every candidate (:func:`candidate_labels` of ``candidates``: backend names or ``backend/config``
    labels, default every configuration of every installed backend, the runtimes' defaults
    included) runs the same random input, interleaved (:func:`~.timing.time_interleaved`,
    ``repeats`` rounds); the one with the lowest median wins. The choice is cached (see the
    module doc); ``refresh=True`` measures again."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    threads = threads or default_threads()
    labels = candidate_labels(candidates, precision)
    if not labels:
        raise BackendNotInstalledError(f"no backend installed that runs {precision}: "
                                       f"{_EXTRA['openvino']}")
    key = "|".join([machine_fingerprint(threads), _file_digest(path), precision, str(batch),
                    ",".join(sorted(labels))])
    cache_file = _cache_path(cache)
    data = _read_cache(cache_file)
    entry = data.get(key)
    if not refresh and isinstance(entry, dict) and {"backend", "config", "median_ms"} <= set(
            entry):
        return Choice(entry["backend"], entry["config"], entry["median_ms"],
                      entry.get("skipped", {}), entry.get("measured", ""), cached=True)
    runners, skipped = _open_candidates(path, labels, precision, threads, batch)
    times = time_interleaved(runners, sample_input(path, batch), rounds=repeats, calls=1)
    medians = {label: round(statistics.median(t) * 1e3, 3) for label, t in times.items()}
    best = min(medians, key=medians.get)
    backend, config = best.split("/", 1)
    choice = Choice(backend, config, medians, skipped, time.strftime("%Y-%m-%d"))
    entry = choice.as_dict()
    del entry["cached"]
    data[key] = entry
    with atomic_write(cache_file, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    return choice


def choose_backend(path: str, precision: str = "fp32", batch: int = 1, threads: int = 0,
                   candidates: Optional[Sequence[str]] = None, cache: Optional[str] = None,
                   repeats: int = 10, refresh: bool = False) -> Tuple[str, Dict[str, float]]:
    """:func:`choose` reduced to the winning backend and each backend's best median ms.

    The winning *configuration* is ``choose(...).config``: a caller that loads the backend
    itself should pass it to :func:`load` (or open the file with :func:`open_model`, which
    does)."""
    choice = choose(path, precision, batch, threads, candidates, cache, repeats, refresh)
    return choice.backend, choice.backend_medians()


def open_model(path: str, backend: str = "auto", precision: str = "fp32", threads: int = 0,
               batch: int = 1, cache: Optional[str] = None, config: str = "own") -> Runner:
    """:func:`load`; ``backend="auto"``: the fastest measured backend configuration (cached
    per machine, see :func:`choose`), the runner's ``choice`` saying what was measured."""
    if backend != "auto":
        return load(path, backend, precision, threads, config, batch)
    if precision == "bf16":
        check_precision("openvino", precision)
    choice = choose(path, precision, batch, threads, cache=cache)
    runner = load(path, choice.backend, precision, threads, choice.config, batch)
    runner.choice = choice
    return runner
