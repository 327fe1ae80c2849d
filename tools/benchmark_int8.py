"""Int8 vs fp32 on Google's real MobileNetV1 1.0-224 ImageNet weights, peers in the same run.

Calibration and evaluation images come from disjoint sets of real photos
(:mod:`mnet_backbone.deploy.photos`: 9 calibration photos, 10 evaluation photos, 12 crops and
flips of each). For every int8 method: logit SQNR (dB), top-1 agreement and top-5 overlap with
the fp32 model on the evaluation images, and batch-1 latency (interleaved timing, one process,
``--threads`` threads everywhere):

* ``ort-static-*``: the package's current :func:`~mnet_backbone.deploy.quant.quantize_int8`
  (ONNX Runtime static QDQ, per-channel weights) with minmax / entropy / percentile ranges;
* ``nncf-*``: OpenVINO NNCF post-training quantization (``nncf.quantize``, default CNN pipeline:
  min/max ranges + fast bias correction; ``performance`` and ``mixed`` presets) on the same fp32
  file, run on OpenVINO;
* ``mnet-accurate``: :func:`~mnet_backbone.deploy.quant.quantize_int8_accurate` (bias
  correction, 7-bit per-channel weights, classifier in fp32), run on ONNX Runtime and on
  OpenVINO; ablations with one step changed.

    python tools/benchmark_int8.py                    # work_dirs/int8/int8.{md,json}
    python tools/benchmark_int8.py --threads 1 --rounds 5

Needs the cached real graph (``bash tools/install.sh`` or
``python -m mnet_backbone.weights --fetch-imagenet-graph``), scikit-image, onnxruntime, openvino
and nncf (``pip install 'mnet-backbone[deploy]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mnet_backbone.deploy.backends import load  # noqa: E402
from mnet_backbone.deploy.export import export_onnx  # noqa: E402
from mnet_backbone.deploy.photos import (CALIBRATION_PHOTOS, EVALUATION_PHOTOS,  # noqa: E402
                                         photo_views)
from mnet_backbone.deploy.quant import (logit_metrics, quantize_int8,  # noqa: E402
                                        quantize_int8_accurate)
from mnet_backbone.deploy.timing import time_interleaved  # noqa: E402


def quantize_nncf(fp32_path: str, out_xml: str, calibration: torch.Tensor,
                  preset: str = "performance") -> str:
    """NNCF post-training quantization of the fp32 ONNX file on OpenVINO; writes an IR."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(fp32_path)
    data = nncf.Dataset([calibration[i:i + 1].numpy() for i in range(len(calibration))])
    quantized = nncf.quantize(model, data, subset_size=len(calibration),
                              preset={"performance": nncf.QuantizationPreset.PERFORMANCE,
                                      "mixed": nncf.QuantizationPreset.MIXED}[preset])
    ov.save_model(quantized, out_xml)
    return out_xml


def _logits(runner, images: torch.Tensor, batch: int = 20) -> np.ndarray:
    return np.concatenate([runner(images[i:i + batch].numpy())[0]
                           for i in range(0, len(images), batch)])


def run(args) -> Dict[str, object]:
    from mnet_backbone.weights import imagenet_graph_path, mobilenet_v1

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    model = mobilenet_v1(weights=imagenet_graph_path(), drop_background=True).eval()
    calib = photo_views(CALIBRATION_PHOTOS)
    evals = photo_views(EVALUATION_PHOTOS)
    fp32 = export_onnx(model, os.path.join(args.out, "fp32.onnx"))
    ref_runner = load(fp32, "onnxruntime", "fp32", args.threads)
    ref = _logits(ref_runner, evals)
    with torch.no_grad():
        torch_diff = float(np.abs(model(evals[:8]).numpy() - ref[:8]).max())
    print(f"fp32 file vs PyTorch: max |diff| {torch_diff:.1e}; {len(calib)} calibration images "
          f"({len(CALIBRATION_PHOTOS)} photos), {len(evals)} evaluation images "
          f"({len(EVALUATION_PHOTOS)} photos)", flush=True)

    files: Dict[str, tuple] = {}   # method -> (path, backend, description)
    seconds: Dict[str, float] = {}

    def build(name: str, fn: Callable[[], str], backends: List[str], text: str) -> None:
        t = time.time()
        path = fn()
        seconds[name] = round(time.time() - t, 1)
        for backend in backends:
            files[f"{name} [{backend}]"] = (path, backend, text)
        print(f"  {name}: {seconds[name]:.0f}s", flush=True)

    def out(name: str, ext: str = "onnx") -> str:
        return os.path.join(args.out, f"{name}.{ext}")

    for method in args.calibration_methods:
        build(f"ort-static-{method}", lambda m=method: quantize_int8(
            fp32, out(f"ort_static_{m}"), calib, method=m),
            ["onnxruntime", "openvino"] if method == "minmax" else ["onnxruntime"],
            f"package's current quantize_int8 (ORT static QDQ, per-channel), {method} ranges")
    if not args.no_nncf:
        try:
            for preset in ("performance", "mixed"):
                build(f"nncf-{preset}", lambda p=preset: quantize_nncf(
                    fp32, out(f"nncf_{p}", "xml"), calib, p), ["openvino"],
                    f"OpenVINO NNCF PTQ (nncf.quantize, preset {preset})")
        except ImportError as exc:
            print(f"  NNCF skipped ({exc}): pip install nncf")
    build("mnet-accurate", lambda: quantize_int8_accurate(
        model, out("mnet_accurate"), calib, fp32_path=out("mnet_accurate_fp32")),
        ["onnxruntime", "openvino"],
        "quantize_int8_accurate: bias correction, 7-bit per-channel weights, Gemm fp32")
    if not args.no_ablations:
        for name, kw in (("mnet-no-bias-correction", dict(correct_bias=False)),
                         ("mnet-8bit-weights", dict(reduce_range=False)),
                         ("mnet-accurate+cle", dict(equalize=True)),
                         ("mnet-accurate+first-fp32", dict(keep_first=True))):
            build(name, lambda n=name, k=kw: quantize_int8_accurate(
                model, out(n.replace("-", "_").replace("+", "_")), calib, **k),
                ["onnxruntime"], f"ablation: quantize_int8_accurate({kw})")

    rows = []
    runners = {}
    for key, (path, backend, text) in files.items():
        runner = load(path, backend, "int8", args.threads)
        metrics = logit_metrics(ref, _logits(runner, evals))
        rows.append(dict(method=key, backend=backend, file=path, description=text, **metrics))
        runners[key] = runner
        print(f"  {key}: SQNR {metrics['sqnr_db']:.2f} dB, top-1 {metrics['top1_agreement']:.3f}, "
              f"top-5 {metrics['top5_overlap']:.3f}", flush=True)

    timed = [k for k in runners if not k.startswith(("ort-static-entropy", "ort-static-percentile",
                                                       "mnet-no-", "mnet-8bit", "mnet-accurate+"))]
    timed_runners = {k: (lambda r: lambda x: r(x))(runners[k]) for k in timed}
    timed_runners["fp32 [onnxruntime]"] = ref_runner
    x1 = evals[:1].numpy()
    times = time_interleaved(timed_runners, x1, args.rounds, args.calls)
    latency = {k: statistics.median(t) * 1e3 for k, t in times.items()}
    for row in rows:
        row["b1_median_ms"] = latency.get(row["method"])
    report = dict(
        model="Google mobilenet_v1_1.0_224 (TF frozen graph), 1000 classes",
        calibration=dict(photos=list(CALIBRATION_PHOTOS), images=len(calib)),
        evaluation=dict(photos=list(EVALUATION_PHOTOS), images=len(evals)),
        threads=args.threads, fp32_file_vs_pytorch=torch_diff, rows=rows,
        fp32_b1_median_ms=latency["fp32 [onnxruntime]"], build_seconds=seconds,
        versions=_versions(), seconds=round(time.time() - start, 1))
    report["targets"] = _targets(rows)
    return report


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for p in ("torch", "onnxruntime", "openvino", "nncf"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def _targets(rows: List[dict]) -> List[dict]:
    ours = {r["method"]: r for r in rows if r["method"].startswith("mnet-accurate [")}
    peers = [r for r in rows if r["method"].startswith(("ort-static", "nncf"))]
    out = []
    for key, mine in ours.items():
        for metric in ("sqnr_db", "top1_agreement", "top5_overlap"):
            best = max(peers, key=lambda r: r[metric])
            out.append(dict(target=f"{key} {metric} >= best peer ({best['method']})",
                            met=mine[metric] >= best[metric],
                            value=f"{mine[metric]:.3f} vs {best[metric]:.3f}"))
    for backend in ("onnxruntime", "openvino"):
        cur = next((r for r in rows if r["method"] == f"ort-static-minmax [{backend}]"), None)
        mine = ours.get(f"mnet-accurate [{backend}]")
        if cur and mine and cur.get("b1_median_ms") and mine.get("b1_median_ms"):
            ratio = mine["b1_median_ms"] / cur["b1_median_ms"]
            out.append(dict(target=f"mnet-accurate as fast as the current int8 on {backend} "
                                   f"(batch 1, within 5%)", met=ratio <= 1.05,
                            value=f"{mine['b1_median_ms']:.2f} vs {cur['b1_median_ms']:.2f} ms "
                                  f"({ratio:.2f}x)"))
    return out


def format_markdown(report: Dict[str, object]) -> str:
    lines = [f"{report['model']}; calibration: {report['calibration']['images']} images "
             f"({len(report['calibration']['photos'])} photos), evaluation: "
             f"{report['evaluation']['images']} images of {len(report['evaluation']['photos'])} "
             f"other photos; {report['threads']} threads; fp32 batch 1 "
             f"{report['fp32_b1_median_ms']:.2f} ms (ONNX Runtime).", "",
             "| Method | Runtime | SQNR (dB) | Top-1 agreement | Top-5 overlap | "
             "Batch 1 median (ms) |", "|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        ms = "–" if r.get("b1_median_ms") is None else f"{r['b1_median_ms']:.2f}"
        lines.append(f"| {r['method'].split(' [')[0]} | {r['backend']} | {r['sqnr_db']:.2f} | "
                     f"{100 * r['top1_agreement']:.1f}% | {100 * r['top5_overlap']:.1f}% | {ms} |")
    lines += ["", "Targets:", ""]
    for t in report["targets"]:
        lines.append(f"- [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="work_dirs/int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--calibration-methods", nargs="+", default=["minmax"],
                        choices=["minmax", "entropy", "percentile"],
                        help="ranges of the current quantize_int8 to compare (entropy and "
                             "percentile take ~1 min each)")
    parser.add_argument("--no-nncf", action="store_true")
    parser.add_argument("--no-ablations", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    with open(os.path.join(args.out, "int8.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    text = format_markdown(report)
    with open(os.path.join(args.out, "int8.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
