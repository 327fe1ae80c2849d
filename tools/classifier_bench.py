"""The classifier CPU benchmark behind ``tools/benchmark.py``: this package's inference paths
against ONNX Runtime, OpenVINO, LiteRT, timm and torchvision (a tool module, not library code).

One run, one process, the same thread count everywhere (``torch.set_num_threads`` and ONNX Runtime's
``intra_op_num_threads``). Timings are *interleaved*: every round times each path in turn, so a
change of machine load during the run hits all paths alike; batch-1 latency is the median and 90th
percentile over all calls, batch-32 throughput the median over its calls.

Measured (``tools/benchmark.py`` writes ``benchmark.md``, ``benchmark.json``, ``benchmark.png``):

* this package's 1.0 MobileNet-224: eager (the core model, NCHW), deploy (BN folded, fused oneDNN
  conv + activation, channels-last, chunked batches), deploy + torch.compile, ONNX Runtime fp32
  and int8 (static, per-channel) through :class:`~mnet_backbone.deploy.runtime.OrtModel`
  (batches split between single-threaded streams); timm ``mobilenetv1_100`` eager and on ONNX
  Runtime (exported the same way, run plainly and through ``OrtModel``);
  torchvision ``mobilenet_v2`` and ``mobilenet_v3_large`` eager;
* the same fp32 / bf16 / int8 files on every configuration :mod:`mnet_backbone.deploy.backends`
  knows: the package's own settings (OpenVINO also compiled for the static batch-1 shape), the
  runtimes' own defaults (a plain ONNX Runtime ``InferenceSession``, a plain OpenVINO
  ``compile_model``: peers, what a user gets without this package) and ``backend="auto"``
  (which measures all of them first and keeps the fastest);
* a GEMM peak measured here (2048^3 fp32 MatMul in ONNX Runtime and ``torch.mm``; ONNX
  Runtime's counts, as in the issue) and each path's effective GFLOP/s (2 x paper mult-adds /
  time) as a share of it; the best fp32 path's batch-1 time as a multiple of the GEMM-peak time
  (the time the model's mult-adds take at that rate), with the CPU flags that change kernels
  (AVX512-VNNI, AVX512-BF16, AMX-BF16, AMX-INT8);
* the batching strategy: batch-32 time of whole-batch vs chunked runs, one stream vs several;
* the 16 alpha x resolution models: batch-1 latency vs their mult-adds, and how latency scales with
  alpha and rho (the paper: mult-adds scale with alpha^2 and rho^2);
* int8 vs fp32 top-1 agreement on a MobileNetV1 trained on rendered shape images
  (``tools/shapes_training.py``: ``shapes_classifier``).

All models have random weights for timing (weights do not change the work done); every model's
BatchNorm statistics are measured on rendered images first so activations have realistic scales,
and flush-to-zero is on for denormals.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mnet_backbone.cost import count, measure
from mnet_backbone.deploy import backends
from mnet_backbone.deploy.data import calibrate_bn
from mnet_backbone.deploy.fold import DEFAULT_CHUNKS, deploy
from mnet_backbone.deploy.runtime import OrtModel
from mnet_backbone.deploy.timing import time_interleaved
from mnet_backbone.model import PAPER_RESOLUTIONS, MobileNetV1

GRID_ALPHAS = (1.0, 0.75, 0.5, 0.25)
DEPLOY = "mnet deploy (folded, fused oneDNN, channels-last, chunks)"


@dataclass
class BenchConfig:
    threads: int = 2
    rounds: int = 10              # batch-1 rounds (each path timed ``calls`` times per round)
    calls: int = 5
    batch: int = 32
    batch_rounds: int = 3         # batch-32 rounds (one call per path per round)
    resolution: int = 224
    compile: bool = True
    peers: bool = True            # timm and torchvision
    grid: bool = True
    mobile: bool = True           # ExecuTorch .pte and LiteRT .tflite rows
    agreement: bool = True        # int8 vs fp32 agreement on a trained classifier
    grid_rounds: int = 5
    grid_calls: int = 4
    agreement_images: int = 500
    calibration_images: int = 200
    agreement_model: Dict[str, object] = field(default_factory=lambda: dict(
        alpha=1.0, resolution=128, num_train=3200, num_val=300, epochs=6, lr=3e-3,
        clutter=False))
    work_dir: str = "work_dirs/benchmark"
    log: Optional[Callable[[str], None]] = print


@dataclass
class PathResult:
    name: str
    family: str
    precision: str
    mult_adds: int
    b1_median_ms: float = float("nan")
    b1_p90_ms: float = float("nan")
    batch_ms: float = float("nan")
    batch: int = 32
    max_diff: Optional[float] = None  # vs the family's eager model, batch of 2
    note: str = ""

    @property
    def b1_img_s(self) -> float:
        return 1000.0 / self.b1_median_ms

    @property
    def batch_img_s(self) -> float:
        return 1000.0 * self.batch / self.batch_ms

    def gflops(self) -> float:
        return 2 * self.mult_adds / (self.b1_median_ms * 1e-3) / 1e9


def _log(cfg: BenchConfig, msg: str) -> None:
    if cfg.log:
        cfg.log(msg)


def _ort_runner(session) -> Callable[[Tensor], np.ndarray]:
    """A plain ONNX Runtime call on the whole batch (how the peers' exports are run)."""
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> np.ndarray:
        return session.run(None, {name: x.numpy()})[0]
    return run


def _first_output(runner) -> Callable[[Tensor], np.ndarray]:
    """A :class:`~mnet_backbone.deploy.backends.Runner` called on tensors, first output."""
    return lambda x: runner(x.numpy())[0]


def _torch_runner(model: nn.Module, channels_last: bool = False) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x)
    return run


def _p90(values: Sequence[float]) -> float:
    return float(np.percentile(values, 90))


def gemm_peak(threads: int, n: int = 2048, repeats: int = 10) -> Dict[str, float]:
    """fp32 GEMM GFLOP/s of ONNX Runtime (MatMul) and torch.mm on n x n x n: the best of
    ``repeats`` interleaved rounds (other work on the machine only ever slows a round down)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    runners: Dict[str, Callable[[object], object]] = {"torch.mm": lambda _: torch.mm(a, b)}
    try:
        import onnx
        from onnx import TensorProto, helper

        from mnet_backbone.deploy.export import ort_session
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]),
             helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
            [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gemm.onnx")
            onnx.save(proto, path)
            session = ort_session(path, threads)
        feeds = {"A": a.numpy(), "B": b.numpy()}
        runners["onnxruntime MatMul"] = lambda _: session.run(None, feeds)
    except ImportError:
        pass
    times = time_interleaved(runners, None, rounds=repeats, calls=1, warmup=1)
    return {name: 2 * n ** 3 / min(t) / 1e9 for name, t in times.items()}


def _peak(report: Dict[str, object]) -> float:
    """The GEMM peak the targets use: ONNX Runtime's MatMul (as in the issue), else torch.mm."""
    peaks = report["gemm_gflops"]
    return peaks.get("onnxruntime MatMul", peaks.get("torch.mm"))


def _max_diff(a, b) -> float:
    a = torch.as_tensor(np.asarray(a)) if not isinstance(a, Tensor) else a
    b = torch.as_tensor(np.asarray(b)) if not isinstance(b, Tensor) else b
    return float((a.float() - b.float()).abs().max())


def _machine(threads: int) -> Dict[str, object]:
    info: Dict[str, object] = dict(threads=threads, python=platform.python_version(),
                                   torch=torch.__version__, cpu_count=os.cpu_count())
    info["cpu"] = backends.machine_fingerprint(threads).split("|", 1)[0]  # the model name
    info["cpu_flags"] = backends.kernel_flags()
    info["isa"] = " ".join(f for f, have in info["cpu_flags"].items() if have)
    for package in ("onnxruntime", "openvino", "timm", "torchvision"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            pass
    info["loadavg_start"] = os.getloadavg()
    return info


def cpu_flags_text(machine: Dict[str, object]) -> str:
    """The kernel-changing CPU flags, present and absent: 'avx512_vnni yes, amx_int8 no, ...'."""
    return ", ".join(f"{flag} {'yes' if have else 'no'}"
                     for flag, have in machine["cpu_flags"].items())


def _render(count_: int, size: int, seed: int) -> Tensor:
    from mnet_backbone.deploy.data import normalize
    from mnet_backbone.shapes import render_shapes
    return normalize(render_shapes(count_, size, seed)[0])


def run_benchmark(cfg: BenchConfig) -> Dict[str, object]:
    """Run everything; returns a JSON-able dict (see :func:`format_markdown`)."""
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    os.makedirs(cfg.work_dir, exist_ok=True)
    report: Dict[str, object] = {"machine": _machine(cfg.threads), "config": {
        k: v for k, v in asdict(cfg).items() if k != "log"}}
    res = cfg.resolution
    bn_images = _render(32, res, seed=1)
    x1 = _render(1, res, seed=2)
    xb = _render(cfg.batch, res, seed=3)
    check_x = xb[:2]

    _log(cfg, f"GEMM peak ({cfg.threads} threads) ...")
    report["gemm_gflops_start"] = gemm_peak(cfg.threads)

    from mnet_backbone.deploy.export import export_onnx, ort_session
    from mnet_backbone.deploy.quant import quantize_int8

    paths: List[PathResult] = []
    runners: Dict[str, Callable[[Tensor], object]] = {}
    ma = count(1.0, res).mult_adds
    core = calibrate_bn(MobileNetV1(1000), bn_images)
    with torch.inference_mode():
        ref = core(check_x)

    def add(name: str, family: str, precision: str, mult_adds: int, run, reference=None,
            note: str = "") -> None:
        out = run(check_x)
        diff = _max_diff(out, reference) if reference is not None else None
        paths.append(PathResult(name, family, precision, mult_adds, batch=cfg.batch,
                                max_diff=diff, note=note))
        runners[name] = run

    _log(cfg, "building this package's paths ...")
    add("mnet eager (core model)", "ours", "fp32", ma, _torch_runner(core), ref)
    fast = deploy(core)
    add(DEPLOY, "ours", "fp32", ma, fast, ref,
        note=f"chunks {list(DEFAULT_CHUNKS)}, fused: {fast.fused}")
    if cfg.compile:
        start = time.time()
        compiled = deploy(core, compile=True)
        compiled(x1)
        compiled(xb)
        add("mnet deploy + torch.compile", "ours", "fp32", ma, compiled, ref,
            note=f"chunks {list(DEFAULT_CHUNKS)}, Inductor with frozen weights, compiling took "
                 f"{time.time() - start:.0f}s")
    fp32_path = os.path.join(cfg.work_dir, "mnet_1.0_224.onnx")
    export_onnx(core, fp32_path, resolution=res)
    add("mnet ONNX Runtime fp32", "ours", "fp32", ma, OrtModel(fp32_path, cfg.threads), ref,
        note=f"OrtModel: batches of >= {cfg.threads} images run in {cfg.threads} "
             f"single-threaded streams, chunks of 1")
    int8_path = os.path.join(cfg.work_dir, "mnet_1.0_224_int8.onnx")
    quantize_int8(fp32_path, int8_path, _render(64, res, seed=4))
    add("mnet ONNX Runtime int8", "ours", "int8", ma, OrtModel(int8_path, cfg.threads), None,
        note="static, per-channel, same streams; agreement: see below")
    _log(cfg, "ONNX Runtime and OpenVINO configurations on the same files ...")
    files = {"fp32": fp32_path, "int8": int8_path}
    precisions = ["fp32"] + (["bf16"] if backends.bf16_support()["supported"] else []) + ["int8"]
    notes = {"fp32": "the fp32 file, INFERENCE_PRECISION_HINT=f32",
             "bf16": "the fp32 file, INFERENCE_PRECISION_HINT=bf16",
             "int8": "the same QDQ int8 file as ONNX Runtime's"}
    ov = "openvino" in backends.available_backends()
    # A private choice cache: auto measures on this run, not on an earlier one.
    choice_cache = os.path.join(cfg.work_dir, "backend_choice.json")
    if os.path.exists(choice_cache):
        os.remove(choice_cache)
    report["auto"] = {}
    for precision in precisions:
        path = files.get(precision, fp32_path)
        reference = ref if precision == "fp32" else None
        if ov:
            add(f"mnet OpenVINO {precision}", "ours", precision, ma,
                _first_output(backends.load(path, "openvino", precision, cfg.threads)),
                reference, note=notes[precision] + ", LATENCY hint, 1 stream (own)")
            add(f"mnet OpenVINO {precision}, static batch-1 shape", "ours", precision, ma,
                _first_output(backends.load(path, "openvino", precision, cfg.threads,
                                            "own-static", batch=1)), reference,
                note="compiled for 1 x 3 x 224 x 224 (own-static); batch 32 runs the "
                     "dynamic-shape model")
        auto = backends.open_model(path, "auto", precision, cfg.threads, batch=1,
                                   cache=choice_cache)
        report["auto"][precision] = auto.choice.as_dict()
        add(f"mnet auto {precision}", "ours", precision, ma, _first_output(auto), reference,
            note=f"backend='auto', measured for batch 1 before this run's timing: "
                 f"{auto.choice.describe()}")

    from mnet_backbone.deploy import mobile
    mobile_runtimes = (("executorch", "ExecuTorch .pte"), ("litert", "LiteRT .tflite"))
    for runtime, label in mobile_runtimes if cfg.mobile else ():
        try:
            mobile.require_runtime(runtime, export=True)
        except mobile.MobileRuntimeNotInstalledError as exc:
            _log(cfg, f"  {label} skipped: {exc}")
            continue
        _log(cfg, f"{label} (XNNPACK) fp32 and int8 files of the same weights ...")
        for precision in mobile.PRECISIONS:
            path = os.path.join(cfg.work_dir,
                                f"mnet_1.0_224_{precision}{mobile.SUFFIXES[runtime]}")
            mobile.export_classifier(core, path, precision=precision, verify=False,
                                     calibration=_render(64, res, seed=4)
                                     if precision == "int8" else None)
            add(f"mnet {label} {precision} (XNNPACK)", "ours", precision, ma,
                _first_output(mobile.load(path, cfg.threads, precision=precision)),
                ref if precision == "fp32" else None,
                note=f"mnet_backbone.deploy.mobile, {mobile.file_size_mb(path)} MB; batch-1 file, "
                     f"batches run image by image" + (
                         "; PT2E int8 on the ONNX int8 path's calibration images"
                         if precision == "int8" else ""))

    # The runtimes' own defaults on the package's files: the configurations a user gets
    # without this package (auto's "default" candidates).
    peer_names = {"onnxruntime": "ONNX Runtime plain InferenceSession",
                  "openvino": "OpenVINO plain compile_model"}
    for backend in backends.available_backends():
        for precision in precisions:
            if precision == "bf16" and backend == "onnxruntime":
                continue
            runner = backends.load(files.get(precision, fp32_path), backend, precision,
                                   cfg.threads, "default")
            add(f"{peer_names[backend]}, {precision}", "runtime", precision, ma,
                _first_output(runner), ref if precision == "fp32" else None,
                note=f"the runtime's defaults on the package's {precision} file (threads "
                     f"and precision set)")

    if cfg.peers:
        import importlib.util
        if importlib.util.find_spec("litert_torch") and importlib.util.find_spec("ai_edge_litert"):
            _log(cfg, "LiteRT (litert-torch conversion of the same weights) ...")
            add("LiteRT (TFLite + XNNPACK), converted by litert-torch", "litert", "fp32", ma,
                litert_runner(core, res, os.path.join(cfg.work_dir, "mnet_1.0_224.tflite"),
                              cfg.threads), ref,
                note="batch 1 graph; batches run image by image")
        else:
            _log(cfg, "  LiteRT skipped: not installed (bash tools/install_litert.sh)")
        _log(cfg, "building timm and torchvision peers ...")
        try:
            import timm
            tm = calibrate_bn(timm.create_model("mobilenetv1_100", pretrained=False), bn_images)
            with torch.inference_mode():
                tref = tm(check_x)
            add("timm mobilenetv1_100 eager", "timm", "fp32", ma, _torch_runner(tm), tref)
            timm_path = os.path.join(cfg.work_dir, "timm_mobilenetv1_100.onnx")
            _export_plain(tm, timm_path, res)
            add("timm mobilenetv1_100 ONNX Runtime", "timm", "fp32", ma,
                _ort_runner(ort_session(timm_path, cfg.threads)), tref,
                note="one session call per batch, as timm users run it")
            add("timm mobilenetv1_100 ONNX Runtime via OrtModel", "timm", "fp32", ma,
                OrtModel(timm_path, cfg.threads), tref,
                note="this package's batching strategy on timm's export (same graph as ours)")
        except ImportError as exc:
            _log(cfg, f"  timm skipped: {exc}")
        try:
            import torchvision
            for arch in ("mobilenet_v2", "mobilenet_v3_large"):
                tv = calibrate_bn(getattr(torchvision.models, arch)(weights=None), bn_images)
                mult_adds = measure(tv, res).mult_adds
                with torch.inference_mode():
                    tvref = tv(check_x)
                add(f"torchvision {arch} eager", "torchvision", "fp32", mult_adds,
                    _torch_runner(tv), tvref, note="mult-adds counted by the same rule")
        except ImportError as exc:
            _log(cfg, f"  torchvision skipped: {exc}")

    _log(cfg, f"batch 1: {cfg.rounds} rounds x {cfg.calls} calls per path ...")
    times = time_interleaved(runners, x1, cfg.rounds, cfg.calls)
    for p in paths:
        p.b1_median_ms = statistics.median(times[p.name]) * 1e3
        p.b1_p90_ms = _p90(times[p.name]) * 1e3
    _log(cfg, f"batch {cfg.batch}: {cfg.batch_rounds} rounds ...")
    times = time_interleaved(runners, xb, cfg.batch_rounds, 1, warmup=0)
    for p in paths:
        p.batch_ms = statistics.median(times[p.name]) * 1e3
    _log(cfg, f"GEMM peak again ({cfg.threads} threads) ...")
    report["gemm_gflops_end"] = gemm_peak(cfg.threads)
    # The higher of the two: load on a shared machine lowers a peak and would flatter the ratio.
    report["gemm_gflops"] = {k: max(v, report["gemm_gflops_end"].get(k, v))
                             for k, v in report["gemm_gflops_start"].items()}
    peak = _peak(report)
    report["paths"] = [dict(asdict(p), b1_img_s=p.b1_img_s, batch_img_s=p.batch_img_s,
                            gflops=p.gflops(), pct_peak=100 * p.gflops() / peak) for p in paths]

    _log(cfg, "batching strategy (whole batch vs chunks) ...")
    report["batching"] = _batching(cfg, core, fp32_path, xb)
    if cfg.grid:
        _log(cfg, "16 alpha x resolution models ...")
        report["grid"] = _grid(cfg, bn_images)
    report["agreement"] = None
    if cfg.agreement:
        _log(cfg, "int8 agreement on a trained classifier ...")
        report["agreement"] = _agreement(cfg)
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["targets"] = _targets(report)
    return report


def _export_plain(model: nn.Module, path: str, res: int) -> str:
    """A peer model exported exactly like ours (dynamo exporter, opset 18, dynamic batch)."""
    import contextlib
    import io
    import warnings

    import onnx
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (torch.zeros(2, 3, res, res),), dynamo=True,
                                    opset_version=18, input_names=["input"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    onnx.save(program.model_proto, path, save_as_external_data=False)
    return path


def _batching(cfg: BenchConfig, core: MobileNetV1, fp32_path: str, xb: Tensor) -> List[dict]:
    """Batch time of the whole batch vs chunk plans, one stream vs parallel streams."""
    from mnet_backbone.deploy.fold import DeployedMobileNetV1, fold_bn
    folded = fold_bn(core)
    runners: Dict[str, Callable] = {}
    for streams in (1, cfg.threads):
        for plan in [(0,) * 5, (1,) * 5, (4,) * 5, DEFAULT_CHUNKS] if streams == 1 else [
                (0,) * 5, DEFAULT_CHUNKS]:
            if streams > 1 and plan == (0,) * 5:
                name = f"deploy, {streams} streams, whole share"
            else:
                name = (f"deploy, {streams} stream{'s' if streams > 1 else ''}, "
                        + ("whole batch" if plan == (0,) * 5 else f"chunks {list(plan)}"))
            runners[name] = DeployedMobileNetV1(folded, True, plan, streams=streams)
        if streams == 1:
            runners["eager core model (NCHW), whole batch"] = _torch_runner(core)
    for streams in sorted({1, cfg.threads}):
        for chunk in (0, 1, 8):
            runners[f"ONNX Runtime, {streams} stream{'s' if streams > 1 else ''}, "
                    + (f"chunks of {chunk}" if chunk else "whole batch")] = OrtModel(
                        fp32_path, cfg.threads, streams=streams, chunk=chunk)
    times = time_interleaved(runners, xb, cfg.batch_rounds, 1, warmup=0)
    return [dict(strategy=name, batch_ms=statistics.median(t) * 1e3,
                 img_s=len(xb) / statistics.median(t)) for name, t in times.items()]


def _grid(cfg: BenchConfig, bn_images: Tensor) -> List[dict]:
    """Batch-1 latency of the 16 paper models (ONNX Runtime fp32 and deploy eager)."""
    from mnet_backbone.deploy.export import export_onnx
    runners_ort: Dict[str, Callable] = {}
    runners_dep: Dict[str, Callable] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for alpha in GRID_ALPHAS:
            model = calibrate_bn(MobileNetV1(1000, alpha), bn_images)
            for res in PAPER_RESOLUTIONS:
                key = f"{alpha}-{res}"
                path = export_onnx(model, os.path.join(tmp, f"{key}.onnx"), resolution=res)
                runners_ort[key] = OrtModel(path, cfg.threads, streams=1)
                runners_dep[key] = deploy(model)
                rows.append(dict(alpha=alpha, resolution=res,
                                 mult_adds=count(alpha, res).mult_adds))
        inputs = {res: torch.nn.functional.interpolate(bn_images[:1], size=(res, res),
                                                       mode="bilinear")
                  for res in PAPER_RESOLUTIONS}
        for label, runners in (("ort_ms", runners_ort), ("deploy_ms", runners_dep)):
            # One timing call per model and round, rounds interleave the models.
            per = {k: [] for k in runners}
            for _ in range(cfg.grid_rounds):
                for row in rows:
                    key = f"{row['alpha']}-{row['resolution']}"
                    t = time_interleaved({key: runners[key]}, inputs[row["resolution"]], 1,
                                         cfg.grid_calls, warmup=0)[key]
                    per[key] += t
            for row in rows:
                row[label] = statistics.median(per[f"{row['alpha']}-{row['resolution']}"]) * 1e3
    return rows


def scaling_exponents(rows: List[dict], key: str) -> Dict[str, float]:
    """Least-squares exponents: latency ~ alpha^a (per resolution, averaged), ~ rho^r, ~ MA^m."""
    def slope(xs, ys):
        xs, ys = np.log(xs), np.log(ys)
        return float(np.polyfit(xs, ys, 1)[0])
    alphas = sorted({r["alpha"] for r in rows})
    res = sorted({r["resolution"] for r in rows})
    a = [slope([r["alpha"] for r in rows if r["resolution"] == s],
               [r[key] for r in rows if r["resolution"] == s]) for s in res]
    rho = [slope([r["resolution"] / 224 for r in rows if r["alpha"] == al],
                 [r[key] for r in rows if r["alpha"] == al]) for al in alphas]
    ma_a = [slope([r["alpha"] for r in rows if r["resolution"] == s],
                  [r["mult_adds"] for r in rows if r["resolution"] == s]) for s in res]
    ma_r = [slope([r["resolution"] / 224 for r in rows if r["alpha"] == al],
                  [r["mult_adds"] for r in rows if r["alpha"] == al]) for al in alphas]
    return dict(alpha=float(np.mean(a)), rho=float(np.mean(rho)),
                mult_adds=slope([r["mult_adds"] for r in rows], [r[key] for r in rows]),
                mult_adds_alpha=float(np.mean(ma_a)), mult_adds_rho=float(np.mean(ma_r)))


def _agreement(cfg: BenchConfig) -> Dict[str, object]:
    """Int8 vs fp32 on Google's real 1.0-224 ImageNet weights (the cached TF graph) and real
    photos, calibration and evaluation photos disjoint (:mod:`.photos`): the package's accurate
    int8 path (``result``) and the plain :func:`~.quant.quantize_int8` (``current``). Without
    the graph or scikit-image, the rendered-shapes classifier as before (``source: shapes``)."""
    import importlib.util

    from mnet_backbone.weights import MissingGraphError, imagenet_graph_path
    try:
        graph = imagenet_graph_path()
    except MissingGraphError as exc:
        _log(cfg, f"  real ImageNet weights missing, agreement on rendered shapes: {exc}")
        return _shapes_agreement(cfg)
    if importlib.util.find_spec("skimage") is None:
        _log(cfg, "  scikit-image missing (pip install scikit-image), agreement on rendered shapes")
        return _shapes_agreement(cfg)
    from mnet_backbone.weights import mobilenet_v1
    from mnet_backbone.deploy.export import export_onnx
    from mnet_backbone.deploy.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, photo_views
    from mnet_backbone.deploy.quant import agreement, quantize_int8, quantize_int8_accurate
    start = time.time()
    model = mobilenet_v1(weights=graph, drop_background=True).eval()
    calib = photo_views(CALIBRATION_PHOTOS)
    images = photo_views(EVALUATION_PHOTOS)
    fp32 = export_onnx(model, os.path.join(cfg.work_dir, "imagenet_fp32.onnx"))
    current = quantize_int8(fp32, os.path.join(cfg.work_dir, "imagenet_int8_current.onnx"), calib)
    accurate = quantize_int8_accurate(model, os.path.join(cfg.work_dir, "imagenet_int8.onnx"),
                                      calib)
    info = dict(source="imagenet", name="Google mobilenet_v1_1.0_224 (TF frozen graph)",
                calibration_photos=list(CALIBRATION_PHOTOS), calibration_images=len(calib),
                evaluation_photos=list(EVALUATION_PHOTOS), evaluation_images=len(images))
    return dict(model=info,
                result=agreement(fp32, accurate, images, threads=cfg.threads).as_dict(),
                current=agreement(fp32, current, images, threads=cfg.threads).as_dict(),
                seconds=round(time.time() - start, 1))


def _shapes_agreement(cfg: BenchConfig) -> Dict[str, object]:
    from shapes_training import shapes_classifier

    from mnet_backbone.deploy.data import normalize
    from mnet_backbone.shapes import render_shapes
    from mnet_backbone.deploy.export import export_onnx
    from mnet_backbone.deploy.quant import agreement, quantize_int8
    spec = dict(cfg.agreement_model)
    start = time.time()
    model, info = shapes_classifier(cache_dir=os.path.join(cfg.work_dir, "cache"),
                                    log=cfg.log, **spec)
    res = int(spec["resolution"])
    clutter = bool(spec.get("clutter", True))
    fp32 = export_onnx(model, os.path.join(cfg.work_dir, "shapes_cls_fp32.onnx"), resolution=res)
    calib = normalize(render_shapes(cfg.calibration_images, res, 20_000, clutter)[0])
    int8 = quantize_int8(fp32, os.path.join(cfg.work_dir, "shapes_cls_int8.onnx"), calib)
    images, labels = render_shapes(cfg.agreement_images, res, 30_000, clutter)
    result = agreement(fp32, int8, normalize(images), labels, threads=cfg.threads)
    out = dict(model=info, result=result.as_dict())
    if not clutter:  # harder images the model never saw: cluttered backgrounds, lower margins
        images, labels = render_shapes(cfg.agreement_images, res, 40_000, True)
        out["cluttered"] = agreement(fp32, int8, normalize(images), labels,
                                     threads=cfg.threads).as_dict()
    out["seconds"] = round(time.time() - start, 1)
    return out


def _targets(report: Dict[str, object]) -> List[dict]:
    paths = {p["name"]: p for p in report["paths"]}
    peak = _peak(report)
    ours_fp32 = [p for p in report["paths"] if p["family"] == "ours" and p["precision"] == "fp32"]
    best = min(ours_fp32, key=lambda p: p["b1_median_ms"])
    peak_ms = 2 * best["mult_adds"] / (peak * 1e9) * 1e3
    report["best_fp32"] = best["name"]
    out = []

    def target(text: str, ok: Optional[bool], value: str) -> None:
        out.append(dict(target=text, met=ok, value=value))

    timm_ort = paths.get("timm mobilenetv1_100 ONNX Runtime")
    timm_eager = paths.get("timm mobilenetv1_100 eager")
    deploy_ = paths[DEPLOY]
    ours_int8 = [p for p in report["paths"] if p["family"] == "ours" and p["precision"] == "int8"]
    int8 = min(ours_int8, key=lambda p: p["b1_median_ms"])
    int8_batch = max(ours_int8, key=lambda p: p["batch_img_s"])
    if timm_ort:
        target("best fp32 path at batch 1 faster than ONNX Runtime on timm's export",
               best["b1_median_ms"] < timm_ort["b1_median_ms"],
               f"{best['name']}: {best['b1_median_ms']:.2f} ms vs "
               f"{timm_ort['b1_median_ms']:.2f} ms")
    report["fp32_limit"] = dict(path=best["name"], ms=best["b1_median_ms"], peak_ms=peak_ms,
                                peak_gflops=peak, ratio=best["b1_median_ms"] / peak_ms)
    target("best fp32 path within 1.2x of the GEMM-peak time",
           best["b1_median_ms"] <= 1.2 * peak_ms,
           f"{best['name']}: {best['b1_median_ms']:.2f} ms vs {peak_ms:.2f} ms at {peak:.0f} "
           f"GFLOP/s ({best['b1_median_ms'] / peak_ms:.2f}x)")
    for precision, choice in (report.get("auto") or {}).items():
        auto = paths[f"mnet auto {precision}"]
        defaults = [p for p in report["paths"] if p["family"] == "runtime"
                    and p["precision"] == precision]
        fastest = min(defaults, key=lambda p: p["b1_median_ms"])
        # Information, not a target: where auto chose a default, the two rows are one
        # configuration timed twice, and which is faster is a coin toss.
        target(f"({precision} batch 1: backend='auto' chose {choice['backend']}/"
               f"{choice['config']}; vs the fastest runtime default)", None,
               f"{auto['b1_median_ms']:.2f} ms vs {fastest['name']} "
               f"{fastest['b1_median_ms']:.2f} ms")
    best_batch = max(ours_fp32, key=lambda p: p["batch_img_s"])
    target("batch-32 throughput >= batch-1 throughput (best fp32 path)",
           best["batch_img_s"] >= best["b1_img_s"],
           f"{best['name']}: {best['batch_img_s']:.0f} vs {best['b1_img_s']:.0f} img/s "
           f"(highest batch-32: {best_batch['name']}, {best_batch['batch_img_s']:.0f} img/s)")
    if timm_eager:
        s1 = timm_eager["b1_median_ms"] / deploy_["b1_median_ms"]
        s32 = timm_eager["batch_ms"] / deploy_["batch_ms"]
        target("PyTorch deploy >= 1.5x faster than timm eager at batch 1", s1 >= 1.5, f"{s1:.2f}x")
        target("PyTorch deploy >= 2x faster than timm eager at batch 32", s32 >= 2.0, f"{s32:.2f}x")
        compiled = paths.get("mnet deploy + torch.compile")
        if compiled:
            c1 = timm_eager["b1_median_ms"] / compiled["b1_median_ms"]
            c32 = timm_eager["batch_ms"] / compiled["batch_ms"]
            target("(deploy + torch.compile vs timm eager, batch 1 / 32)", None,
                   f"{c1:.2f}x / {c32:.2f}x")
    speed = best["b1_median_ms"] / int8["b1_median_ms"]
    target("best int8 path >= 1.8x faster than the best fp32 path (batch 1)", speed >= 1.8,
           f"{speed:.2f}x ({int8['name']} {int8['b1_median_ms']:.2f} ms)")
    speed32 = int8_batch["batch_img_s"] / best_batch["batch_img_s"]
    target("(best int8 vs best fp32 path, batch 32 throughput)", None,
           f"{speed32:.2f}x ({int8_batch['name']})")
    peers = [p for p in report["paths"] if p["family"] in ("runtime", "litert", "timm")]
    for precision in ("fp32", "int8"):
        ours = [p for p in report["paths"] if p["family"] == "ours" and p["precision"] == precision]
        theirs = [p for p in peers if p["precision"] == precision]
        if not (ours and theirs):
            continue
        o, t = (min(g, key=lambda p: p["b1_median_ms"]) for g in (ours, theirs))
        target(f"{precision} batch 1: the package's best path at least as fast as every peer",
               o["b1_median_ms"] <= t["b1_median_ms"],
               f"{o['name']} {o['b1_median_ms']:.2f} ms vs {t['name']} {t['b1_median_ms']:.2f} ms")
        o, t = (max(g, key=lambda p: p["batch_img_s"]) for g in (ours, theirs))
        target(f"{precision} batch {o['batch']}: the package's best path at least as fast as every "
               f"peer", o["batch_img_s"] >= t["batch_img_s"],
               f"{o['name']} {o['batch_img_s']:.0f} img/s vs {t['name']} "
               f"{t['batch_img_s']:.0f} img/s")
    if "mnet OpenVINO bf16" in paths:
        f32, b16 = paths["mnet OpenVINO fp32"], paths["mnet OpenVINO bf16"]
        r = f32["b1_median_ms"] / b16["b1_median_ms"]
        target("OpenVINO bf16 >= 1.4x fp32 (batch 1; native bf16: " + ", ".join(
            f for f in ("amx_bf16", "avx512_bf16") if report["machine"]["cpu_flags"][f]) + ")",
            r >= 1.4,
               f"{b16['b1_median_ms']:.2f} vs {f32['b1_median_ms']:.2f} ms = {r:.2f}x")
    if not report["agreement"]:
        return out
    result, current = report["agreement"]["result"], report["agreement"].get("current")
    if current is None:  # no real weights here: the rendered-shapes classifier
        target("int8 top-1 agreement with fp32 >= 99% (rendered shapes)",
               result["top1_agreement"] >= 0.99,
               f"{100 * result['top1_agreement']:.1f}% of {result['images']} images")
    else:  # real ImageNet weights; NNCF as a peer: tools/benchmark_int8.py
        better = all(result[k] >= current[k] for k in ("top1_agreement", "top5_overlap",
                                                       "sqnr_db"))
        target("accurate int8 at least as close to fp32 as the plain static int8 (real weights)",
               better, f"top-1 {100 * result['top1_agreement']:.1f}% vs "
                       f"{100 * current['top1_agreement']:.1f}%, SQNR {result['sqnr_db']:.1f} vs "
                       f"{current['sqnr_db']:.1f} dB, {result['images']} held-out images")
    return out


def format_markdown(report: Dict[str, object]) -> str:
    m = report["machine"]
    peak = _peak(report)
    lines = [f"Machine: {m.get('cpu')} ({m.get('isa')}), {m['cpu_count']} cores, "
             f"{m['threads']} threads; torch {m['torch']}, onnxruntime {m.get('onnxruntime')}, "
             f"openvino {m.get('openvino')}, "
             f"timm {m.get('timm')}, torchvision {m.get('torchvision')}; load average "
             f"{m['loadavg_start'][0]:.2f} at start, {m.get('loadavg_end', [float('nan')])[0]:.2f}"
             f" at end.",
             f"CPU flags that change the kernels: {cpu_flags_text(m)}.",
             "fp32 limit (batch 1): {path} {ms:.2f} ms = {ratio:.2f}x the GEMM-peak time "
             "({peak_ms:.2f} ms at {peak_gflops:.0f} GFLOP/s); the target is <= 1.2x.".format(
                 **report["fp32_limit"]),
             "GEMM peak (2048^3 fp32, the higher of before and after the paths' timing): "
             + ", ".join(f"{k} {v:.0f} GFLOP/s ({report['gemm_gflops_start'][k]:.0f} before, "
                         f"{report['gemm_gflops_end'][k]:.0f} after)"
                         for k, v in report["gemm_gflops"].items())
             + f"; the peak used for the % column and the targets: {peak:.0f} GFLOP/s "
             f"(ONNX Runtime MatMul, as in the issue)"
             f" = {2 * report['paths'][0]['mult_adds'] / peak / 1e6:.2f} ms for the 1.0-224 "
             f"model's {2 * report['paths'][0]['mult_adds'] / 1e9:.2f} GFLOP.",
             "",
             "| Path | Prec. | Batch 1 median (ms) | p90 (ms) | Batch 1 img/s | "
             f"Batch {report['config']['batch']} (ms) | img/s | GFLOP/s (b1) | % of fp32 peak | "
             "max abs diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in report["paths"]:
        diff = "–" if p["max_diff"] is None else f"{p['max_diff']:.1e}"
        lines.append(f"| {p['name']} | {p['precision']} | {p['b1_median_ms']:.2f} | "
                     f"{p['b1_p90_ms']:.2f} | {p['b1_img_s']:.0f} | {p['batch_ms']:.0f} | "
                     f"{p['batch_img_s']:.0f} | {p['gflops']:.0f} | {p['pct_peak']:.0f}% | "
                     f"{diff} |")
    lines += ["", "GFLOP/s = 2 x paper mult-adds (569M for 1.0 MobileNet-224, conv + fc weights) "
              "/ batch-1 median time; max abs diff: logits vs the same family's eager model on two "
              "images (int8: see agreement). Notes: " + "; ".join(
                  f"{p['name']}: {p['note']}" for p in report["paths"] if p["note"]), ""]
    lines += ["Targets:", ""]
    for t in report["targets"]:
        mark = {True: "met", False: "NOT met", None: "info"}[t["met"]]
        lines.append(f"- [{mark}] {t['target']}: {t['value']}")
    lines += ["", f"Batching strategy (batch {report['config']['batch']}):", "",
              "| Strategy | ms per batch | img/s |", "|---|---:|---:|"]
    lines += [f"| {b['strategy']} | {b['batch_ms']:.0f} | {b['img_s']:.0f} |"
              for b in report["batching"]]
    if report.get("grid"):
        rows = report["grid"]
        base = next(r for r in rows if r["alpha"] == 1.0 and r["resolution"] == 224)
        lines += ["", "The 16 alpha x resolution models, batch 1 (ms; ratio to 1.0-224 in "
                  "brackets):", "",
                  "| alpha | res | mult-adds (M) | MA ratio | ONNX Runtime fp32 | deploy eager |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['alpha']} | {r['resolution']} | {r['mult_adds'] / 1e6:.0f} | "
                         f"{r['mult_adds'] / base['mult_adds']:.2f} | {r['ort_ms']:.2f} "
                         f"({r['ort_ms'] / base['ort_ms']:.2f}) | {r['deploy_ms']:.2f} "
                         f"({r['deploy_ms'] / base['deploy_ms']:.2f}) |")
        lines.append("")
        for key, label in (("ort_ms", "ONNX Runtime"), ("deploy_ms", "deploy eager")):
            e = scaling_exponents(rows, key)
            lines.append(f"- {label}: latency ~ alpha^{e['alpha']:.2f} and rho^{e['rho']:.2f} "
                         f"(mult-adds ~ alpha^{e['mult_adds_alpha']:.2f}, "
                         f"rho^{e['mult_adds_rho']:.2f}); latency ~ mult-adds^"
                         f"{e['mult_adds']:.2f} over the 16 models.")
    a = report["agreement"]
    if not a:
        return "\n".join(lines)
    r, info = a["result"], a["model"]
    if info.get("source") == "imagenet":
        c = a["current"]
        lines += ["", f"Int8 agreement on real ImageNet weights ({info['name']}), "
                  f"{info['evaluation_images']} crops and flips of {len(info['evaluation_photos'])}"
                  f" real photos, calibrated on {info['calibration_images']} of "
                  f"{len(info['calibration_photos'])} other photos: quantize_int8_accurate "
                  f"{100 * r['top1_agreement']:.1f}% top-1 agreement, top-5 overlap "
                  f"{100 * r['top5_overlap']:.1f}%, logit SQNR {r['sqnr_db']:.1f} dB; plain "
                  f"quantize_int8 {100 * c['top1_agreement']:.1f}%, {100 * c['top5_overlap']:.1f}%,"
                  f" {c['sqnr_db']:.1f} dB (tools/benchmark_int8.py compares more methods)."]
        return "\n".join(lines)
    lines += ["", f"Int8 agreement: {100 * r['top1_agreement']:.1f}% top-1 agreement on "
              f"{r['images']} held-out rendered shape images; model: {info['alpha']} MobileNetV1-"
              f"{info['resolution']}, 5 classes, trained here on {info['num_train']} rendered "
              f"images ({'cluttered' if info.get('clutter', True) else 'gradient'} backgrounds) x "
              f"{info['epochs']} epochs (val accuracy {100 * info['val_accuracy']:.1f}%); "
              f"fp32 accuracy {100 * r['fp32_accuracy']:.1f}%, int8 {100 * r['int8_accuracy']:.1f}%"
              f"; calibration: {report['config']['calibration_images']} other rendered images; "
              f"mean |logit diff| {r['mean_abs_logit_diff']:.3f}."]
    if a.get("cluttered"):
        c = a["cluttered"]
        lines.append(f"On {c['images']} harder images it never saw (the same shapes on the "
                     f"cluttered backgrounds of `mnet_backbone.shapes`): "
                     f"{100 * c['top1_agreement']:.1f}% agreement (fp32 accuracy "
                     f"{100 * c['fp32_accuracy']:.1f}%, int8 {100 * c['int8_accuracy']:.1f}%).")
    return "\n".join(lines)


def plot(report: Dict[str, object], path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    paths = report["paths"]
    names = [p["name"].replace(" (", "\n(") for p in paths]
    y = np.arange(len(paths))
    ax.barh(y - 0.2, [p["b1_median_ms"] for p in paths], 0.4, label="batch 1 latency")
    ax.barh(y + 0.2, [p["batch_ms"] / p["batch"] for p in paths], 0.4,
            label=f"batch {paths[0]['batch']}: ms per image")
    peak = _peak(report)
    ax.axvline(2 * paths[0]["mult_adds"] / (peak * 1e9) * 1e3, color="k", ls="--", lw=1,
               label=f"GEMM-peak time ({peak:.0f} GFLOP/s)")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title("MobileNet inference, CPU")
    ax.legend(fontsize=8)
    ax = axes[1]
    if report.get("grid"):
        rows = report["grid"]
        for key, marker in (("ort_ms", "o"), ("deploy_ms", "s")):
            for res in PAPER_RESOLUTIONS:
                sub = [r for r in rows if r["resolution"] == res]
                ax.plot([r["mult_adds"] / 1e6 for r in sub], [r[key] for r in sub], marker,
                        ls="-" if key == "ort_ms" else ":",
                        label=f"{'ORT' if key == 'ort_ms' else 'deploy'} {res}px")
        base = next(r for r in rows if r["alpha"] == 1.0 and r["resolution"] == 224)
        xs = np.array([min(r["mult_adds"] for r in rows), base["mult_adds"]]) / 1e6
        ax.plot(xs, base["ort_ms"] * xs / (base["mult_adds"] / 1e6), "k--", lw=1,
                label="latency proportional to mult-adds")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("mult-adds (M)")
        ax.set_ylabel("batch-1 latency (ms)")
        ax.set_title("16 alpha x resolution models")
        ax.legend(fontsize=6, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(report: Dict[str, object], out_dir: str) -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    files = dict(json=os.path.join(out_dir, "benchmark.json"),
                 md=os.path.join(out_dir, "benchmark.md"),
                 png=os.path.join(out_dir, "benchmark.png"))
    with open(files["json"], "w") as f:
        json.dump(report, f, indent=1, default=float)
    with open(files["md"], "w") as f:
        f.write(format_markdown(report) + "\n")
    plot(report, files["png"])
    return files


def litert_runner(model: nn.Module, res: int, path: str, threads: int):
    """``model`` converted by litert-torch to a .tflite file and run by LiteRT's interpreter
    (XNNPACK delegate), batch 1 (a LiteRT interpreter has one static input shape)."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    litert_torch.convert(model.eval(), (torch.zeros(1, 3, res, res),)).export(path)
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(x: Tensor) -> np.ndarray:
        results = []
        for image in x.numpy():  # one static batch-1 graph: images in turn
            interpreter.set_tensor(inp, np.ascontiguousarray(image[None]))
            interpreter.invoke()
            results.append(interpreter.get_tensor(out).copy())
        return np.concatenate(results)
    return run
