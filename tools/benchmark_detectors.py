"""End-to-end detector benchmark on the CPU: image tensor in, final boxes out (resize,
normalisation, network, box decoding, NMS), every model on every backend and precision, in one
run with the same thread count.

    python tools/benchmark_detectors.py [--threads 2] [--out work_dirs/benchmark_detectors]
        [--checkpoint work_dirs/main_job/epoch_30.pth]   # + mAP of the deployed main-job model

Models: SSDLite320-MobileNetV1 1.0 and 0.5 and SSD300-MobileNetV1 (this package's configs),
torchvision's ssdlite320_mobilenet_v3_large and mmdet's SSDLite-MobileNetV2 (its own config from
the mmdet wheel; its SSDHead swapped for SSDHeadPatched, which only adds the attribute mmdet
3.3.0's predict needs), all with COCO's 80 classes and random weights. Paths: PyTorch eager (the
model's own predict), and the exported graph on ONNX Runtime (fp32, int8) and OpenVINO (fp32,
bf16 where the CPU has it, int8), ExecuTorch (.pte) and LiteRT (.tflite) on XNNPACK (fp32, int8;
the same graph without NMS, which runs on the host: deploy.detector_mobile; a model a runtime
cannot take is listed with the exporter's error). Timings are interleaved round by round. With
random weights the number of (box, class) candidates that reach NMS differs per model: the table
lists it.
Post-processing (``--postprocess-batch``, default 32; ``--device cuda`` runs it on a GPU;
``--postprocess-only`` runs nothing else): the torchvision-face SSDLite320-MobileNetV1 1.0
(91 classes, random weights: every class passes the score threshold, 300 detections per image),
inference with post-processing and the post-processing alone, with torchvision's loop
(``SSD.postprocess_detections``) and with the package's batched one (``BatchedSSD``), the two
interleaved in the same run; target: batched >= 3x the loop.
Writes benchmark_detectors.{md,json,png}.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    "SSDLite320-MobileNetV1-1.0 (ours)": ("mmdet", osp.join(ROOT, "configs", "ssdlite320_mnet.py")),
    "SSDLite320-MobileNetV1-0.5 (ours)": ("mmdet", osp.join(ROOT, "configs",
                                                            "ssdlite320_mnet_a050.py")),
    "SSD300-MobileNetV1-1.0 (ours)": ("mmdet", osp.join(ROOT, "configs", "ssd_mnet.py")),
    "SSDLite320-MobileNetV3-Large (torchvision)": ("torchvision", "ssdlite320_mobilenet_v3_large"),
    "SSDLite320-MobileNetV2 (mmdet)": ("mmdet",
                                       "mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py"),
}
MAIN = "SSDLite320-MobileNetV1-1.0 (ours)"
TV_PEER = "SSDLite320-MobileNetV3-Large (torchvision)"


def build(family, source):
    """(model, eager runner on B x 3 x H x W RGB 0-255 tensors, mult-adds, params)."""
    from mnet_backbone.cost import measure

    if family == "torchvision":
        from torchvision.models import get_model
        model = get_model(source, weights=None, weights_backbone=None).eval()
        size = model.transform.fixed_size[0]
        cost = measure(model, size, forward=lambda m, x: m.head(list(m.backbone(x).values())))

        def eager(x):
            return model([im / 255 for im in x])
        return model, eager, cost
    from mmdet.registry import MODELS as REGISTRY
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    if source.startswith("mmdet::"):
        from mmengine.hub import get_config
        cfg = get_config(source)
    else:
        cfg = Config.fromfile(source)
    cfg.model.backbone.pop("init_cfg", None)  # no download: random weights time the same work
    if cfg.model.bbox_head.type == "SSDHead":  # mmdet 3.3.0's SSDHead cannot predict (#11780)
        cfg.model.bbox_head.type = "SSDHeadPatched"  # the same head + the missing loss_cls
    model = REGISTRY.build(cfg.model)
    model.init_weights()
    model.eval()
    from mmdet.evaluation import get_classes
    from mnet_backbone.deploy.detector_export import detector_spec
    model.dataset_meta = dict(classes=get_classes("coco"))
    model.cfg = cfg  # as mmdet.apis.init_detector keeps it: the test pipeline's input size
    size = detector_spec(model).input_size[0]
    cost = measure(model, size, forward=lambda m, x: m._forward(x))
    pre = model.data_preprocessor

    def eager(x):
        b, _, h, w = x.shape
        inputs = (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                  - pre.mean) / pre.std
        samples = [DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(h, w),
                                               scale_factor=(size / w, size / h)))
                   for _ in range(b)]
        return model.predict(inputs, samples, rescale=True)
    model.input_size = size
    return model, eager, cost


def sample_images(count, size, seed=0):
    from mnet_backbone.shapes import ShapesSpec, render_image
    rng = np.random.default_rng(seed)
    spec = ShapesSpec(image_size=(size, size))
    return np.stack([np.asarray(render_image(rng, spec)[0]).transpose(2, 0, 1)
                     for _ in range(count)]).astype(np.float32)


def candidates_per_image(model, image):
    from mnet_backbone.deploy.detector_export import DetectorGraph, detector_spec
    with torch.no_grad():
        scores = DetectorGraph(model, detector_spec(model))(torch.from_numpy(image[None]))[1]
    return int((scores > 0).sum())


def run(args):
    from mnet_backbone.deploy import DeployedDetector, backends, mobile
    from mnet_backbone.deploy.detector_export import export_detector
    from mnet_backbone.deploy.detector_mobile import export_detector_mobile
    from mnet_backbone.deploy.quant import DETECTOR_OP_TYPES, quantize_int8
    from mnet_backbone.deploy.timing import time_interleaved

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_det_")
    have = backends.available_backends()
    bf16 = backends.bf16_support()
    rows, b1_runners = [], {}
    inputs = {}
    mobile_runtimes, not_exported = [], []
    for runtime in mobile.RUNTIMES:
        try:
            mobile.require_runtime(runtime, export=True)
            mobile_runtimes.append(runtime)
        except mobile.MobileRuntimeNotInstalledError as exc:
            print(f"[bench] {runtime} skipped: {exc}", flush=True)
    for name, (family, source) in MODELS.items():
        print(f"[bench] building and exporting {name}", flush=True)
        model, eager, cost = build(family, source)
        size = model.transform.fixed_size[0] if family == "torchvision" else model.input_size
        images = sample_images(max(8, args.calib), size)
        inputs[size] = images
        base = dict(model=name, input=size, mult_adds=cost.mult_adds, params=cost.params,
                    candidates=candidates_per_image(model, images[0]))
        fp32 = osp.join(tmp, f"{len(rows)}_fp32.onnx")
        start = time.perf_counter()
        export_detector(model, fp32)
        export_s = time.perf_counter() - start
        int8 = osp.join(tmp, f"{len(rows)}_int8.onnx")
        quantize_int8(fp32, int8, images[:args.calib], op_types=DETECTOR_OP_TYPES)

        def eager_run(x, eager=eager):
            with torch.inference_mode():
                return eager(torch.from_numpy(x))
        paths = [("PyTorch eager", "fp32", eager_run)]
        for backend in have:
            for precision in ("fp32", "bf16", "int8"):
                if precision == "bf16" and (backend == "onnxruntime" or not bf16["supported"]):
                    continue
                file = int8 if precision == "int8" else fp32
                paths.append((backend, precision, backends.load(file, backend, precision,
                                                                args.threads)))
        for runtime in mobile_runtimes:  # the same graph as a .pte / .tflite, NMS on the host
            for precision in mobile.PRECISIONS:
                file = osp.join(tmp, f"{len(rows)}_{precision}{mobile.SUFFIXES[runtime]}")
                calib = torch.from_numpy(images[:args.calib]) if precision == "int8" else None
                try:
                    export_detector_mobile(model, file, runtime, precision=precision,
                                           calibration=calib)
                except (ValueError, TypeError) as exc:  # the exporters' one-line errors
                    not_exported.append(dict(model=name, path=runtime, precision=precision,
                                             why=str(exc)))
                    continue
                detector = DeployedDetector(file, threads=args.threads)
                paths.append((runtime, precision, lambda x, d=detector: d(x)))
        for path, precision, runner in paths:
            key = f"{name} | {path} | {precision}"
            rows.append(dict(base, path=path, precision=precision, key=key,
                             export_s=round(export_s, 1)))
            b1_runners[key] = (runner, size)
    print(f"[bench] timing {len(rows)} paths: batch 1 ({args.rounds} rounds), batch "
          f"{args.batch} ({args.batch_rounds} rounds)", flush=True)
    for size in sorted(inputs):  # one interleaved group per input size
        group = {k: r for k, (r, s) in b1_runners.items() if s == size}
        t1 = time_interleaved(group, inputs[size][:1], args.rounds, 1)
        tb = time_interleaved(group, inputs[size][:args.batch], args.batch_rounds, 1, warmup=1)
        for row in rows:
            if row["key"] in group:
                row["b1_ms"] = round(statistics.median(t1[row["key"]]) * 1e3, 2)
                row[f"b{args.batch}_img_s"] = round(
                    args.batch / statistics.median(tb[row["key"]]), 1)
    return dict(rows=rows, not_exported=not_exported, threads=args.threads, batch=args.batch,
                bf16=bf16,
                machine=_machine(args),
                versions={b: __import__(b).__version__ for b in have + ["torch"]})


def postprocess_section(args):
    """Rows: torchvision's post-processing loop vs the batched one on the torchvision-face
    SSDLite320-MobileNetV1 1.0 (random weights, many boxes above the threshold), at batch
    ``args.postprocess_batch`` on ``args.device``: inference with post-processing, and the
    post-processing alone on the same head outputs."""
    from torchvision.models import get_model
    from torchvision.models.detection.ssd import SSD
    import mnet_backbone.tv_models  # noqa: F401  (registers the builders)
    from mnet_backbone.deploy.timing import time_interleaved

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = get_model("ssdlite320_mobilenet_v1", weights=None, weights_backbone=None)
    model = model.eval().to(device)
    batch = args.postprocess_batch
    images = [im.to(device) for im in
              torch.from_numpy(sample_images(batch, 320) / 255).float().unbind(0)]
    loop = types.MethodType(SSD.postprocess_detections, model)  # torchvision's own
    batched = model.postprocess_detections                      # BatchedSSD's

    def synced(fn):
        def run(_):
            with torch.inference_mode():
                out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out
        return run

    def infer_with_loop():
        model.postprocess_detections = loop
        try:
            return model(images)
        finally:
            del model.postprocess_detections  # the class's (batched) method again

    with torch.inference_mode():
        transformed = model.transform(images)[0]
        features = list(model.backbone(transformed.tensors).values())
        head = model.head(features)
        anchors = model.anchor_generator(transformed, features)
        sizes = transformed.image_sizes
        per_image = sum(len(d["boxes"]) for d in batched(head, anchors, sizes)) / batch
    print(f"[bench] post-processing: batch {batch} on {device}, {per_image:.0f} detections per "
          f"image", flush=True)
    runners = {
        "inference, torchvision's loop": synced(infer_with_loop),
        "inference, batched": synced(lambda: model(images)),
        "post-processing only, torchvision's loop": synced(lambda: loop(head, anchors, sizes)),
        "post-processing only, batched": synced(lambda: batched(head, anchors, sizes)),
    }
    times = time_interleaved(runners, None, args.postprocess_rounds, 1, warmup=1)
    rows = []
    for name in runners:
        seconds = statistics.median(times[name])
        rows.append(dict(path=name, batch=batch, device=str(device),
                         detections_per_image=round(per_image, 1),
                         ms_per_batch=round(seconds * 1e3, 1),
                         img_s=round(batch / seconds, 1)))
    return rows


def postprocess_targets(rows):
    by = {r["path"]: r for r in rows}
    lines = []
    for what in ("inference", "post-processing only"):
        loop, ours = by[f"{what}, torchvision's loop"], by[f"{what}, batched"]
        ratio = loop["ms_per_batch"] / ours["ms_per_batch"]
        where = f"batch {ours['batch']}, {ours['device']}"
        value = f"{loop['ms_per_batch']} / {ours['ms_per_batch']} ms = {ratio:.2f}x"
        if what == "inference":
            lines.append(f"- [{'met' if ratio >= 3 else 'NOT met'}] SSDLite320-MobileNetV1 "
                         f"inference with batched post-processing >= 3x torchvision's loop "
                         f"({where}): {value}")
        else:
            lines.append(f"- [info] its post-processing alone, batched vs torchvision's loop "
                         f"({where}): {value}")
    return lines


def postprocess_markdown(rows):
    out = ["", "Post-processing: the torchvision-face SSDLite320-MobileNetV1 1.0, 91 classes, "
           "random weights (every class passes the score threshold):", "",
           "| path | device | batch | detections / image | ms / batch | img/s |",
           "|---|---|---|---|---|---|"]
    out += [f"| {r['path']} | {r['device']} | {r['batch']} | {r['detections_per_image']} | "
            f"{r['ms_per_batch']} | {r['img_s']} |" for r in rows]
    return out + [""] + postprocess_targets(rows)


def _check_device(device: str):
    """None, or why ``--device`` cannot be used here (one line)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        return f"--device {device!r} is not a device: use cpu, cuda or cuda:N"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device}: torch sees no CUDA GPU here (torch.cuda.is_available())"
    if dev.type not in ("cpu", "cuda"):
        return f"--device {device}: only cpu and cuda are measured"
    return None


def _machine(args):
    from mnet_backbone.deploy import backends
    text = backends.machine_fingerprint(args.threads)
    if args.device.startswith("cuda"):
        text += f"; GPU {torch.cuda.get_device_name(torch.device(args.device))}"
    return text


def accuracy_section(args):
    """mAP of the main job's trained detector: PyTorch vs the deployed files on every backend
    and precision (one export, one int8 calibration on 100 training images)."""
    from mnet_backbone.deploy import DeployedDetector, backends
    from mnet_backbone.deploy.detector_pipeline import deploy_detector, val_predictions
    from mnet_backbone.deploy.detector_runtime import coco_map
    from mnet_backbone.mmdet_plugin.deploy import load_detector, pytorch_predict, val_set

    config = osp.join(ROOT, "configs", "ssdlite320_mnet_shapes.py")
    model, cfg = load_detector(config, args.checkpoint)
    val = val_set(cfg)
    out_dir = tempfile.mkdtemp(prefix="bench_map_")
    calib = osp.join(osp.dirname(osp.dirname(val.ann_file)), "train2017")
    print("[bench] mAP: export, int8 calibration, PyTorch reference", flush=True)
    s = deploy_detector(model, out_dir, precision="int8", backend="onnxruntime", calib_dir=calib,
                        val=val, pytorch_predict=pytorch_predict(model), threads=args.threads)
    out = []
    for backend in backends.available_backends():
        for precision in ("fp32", "bf16", "int8"):
            if precision == "bf16" and (backend == "onnxruntime" or
                                        not backends.bf16_support()["supported"]):
                continue
            det = DeployedDetector(out_dir, backend, precision, args.threads)
            preds, ms = val_predictions(det.predict, val)
            out.append(dict(backend=backend, precision=precision, map_pytorch=s["map_pytorch"],
                            map_deployed=coco_map(preds, val.ann_file, det.spec.class_names)[
                                "bbox_mAP"], ms_per_image_pytorch=s["ms_per_image_pytorch"],
                            ms_per_image_deployed=round(ms, 2)))
            print(f"[bench]   {backend} {precision}: {out[-1]}", flush=True)
    return out


def targets(report):
    rows, lines = report["rows"], []

    def row(model, path, precision):
        return next((r for r in rows if r["model"] == model and r["path"] == path
                     and r["precision"] == precision), None)

    def target(text, ok, value):
        lines.append(f"- [{'info' if ok is None else 'met' if ok else 'NOT met'}] {text}: {value}")

    eager = row(MAIN, "PyTorch eager", "fp32")
    best = min((r for r in rows if r["model"] == MAIN and r["path"] != "PyTorch eager"),
               key=lambda r: r["b1_ms"])
    ratio = eager["b1_ms"] / best["b1_ms"]
    target(f"{MAIN} on the best backend >= 3x faster than its PyTorch eager (batch 1)",
           ratio >= 3, f"{best['path']} {best['precision']} {best['b1_ms']} ms vs "
                       f"{eager['b1_ms']} ms = {ratio:.2f}x")
    for r in rows:
        if r["model"] != MAIN or r["path"] == "PyTorch eager":
            continue
        peer = row(TV_PEER, r["path"], r["precision"])
        if peer is None:
            target(f"faster per mult-add than torchvision's ssdlite320_mobilenet_v3_large on "
                   f"{r['path']} {r['precision']}", None, "the peer did not run there (see "
                   "'Not exported')")
            continue
        ours = r["b1_ms"] / r["mult_adds"]
        theirs = peer["b1_ms"] / peer["mult_adds"]
        target(f"faster per mult-add than torchvision's ssdlite320_mobilenet_v3_large on "
               f"{r['path']} {r['precision']}", ours < theirs,
               f"{ours * 1e9:.2f} vs {theirs * 1e9:.2f} ms per GMAC "
               f"({r['b1_ms']} ms / {r['mult_adds'] / 1e9:.2f} GMAC vs {peer['b1_ms']} ms / "
               f"{peer['mult_adds'] / 1e9:.2f} GMAC)")
    f32, i8 = row(MAIN, "executorch", "fp32"), row(MAIN, "executorch", "int8")
    if f32 and i8:
        target(f"int8 {MAIN} .pte >= 1.8x faster than its fp32 .pte (batch 1)",
               f32["b1_ms"] / i8["b1_ms"] >= 1.8,
               f"{f32['b1_ms']} / {i8['b1_ms']} ms = {f32['b1_ms'] / i8['b1_ms']:.2f}x")
    if report["bf16"]["supported"]:
        for model in MODELS:
            f32, b16 = row(model, "openvino", "fp32"), row(model, "openvino", "bf16")
            if f32 and b16:
                target(f"OpenVINO bf16 >= 1.4x fp32 ({model}, batch 1)",
                       f32["b1_ms"] / b16["b1_ms"] >= 1.4, f"{f32['b1_ms']} / {b16['b1_ms']} ms "
                                                           f"= {f32['b1_ms'] / b16['b1_ms']:.2f}x")
    for acc in report.get("accuracy", []):
        if acc["precision"] == "fp32":
            d = abs(acc["map_deployed"] - acc["map_pytorch"])
            target(f"exported fp32 mAP within 0.005 of PyTorch ({acc['backend']})", d <= 0.005,
                   f"{acc['map_deployed']} vs {acc['map_pytorch']}")
        if acc["precision"] == "int8":
            d = abs(acc["map_deployed"] - acc["map_pytorch"])
            target(f"int8 mAP within 0.02 of PyTorch ({acc['backend']})", d <= 0.02,
                   f"{acc['map_deployed']} vs {acc['map_pytorch']}")
        if acc["precision"] == "bf16":
            target(f"bf16 mAP ({acc['backend']})", None,
                   f"{acc['map_deployed']} vs {acc['map_pytorch']}")
    return lines


def markdown(report):
    b = report["batch"]
    out = [f"Machine: {report['machine']}; versions {report['versions']}; bf16: "
           f"{report['bf16']}.", "",
           f"| model | input | mult-adds | params | NMS candidates | path | precision | batch 1 "
           f"(ms) | batch {b} (img/s) | vs eager (b1) |", "|" + "---|" * 10]
    eager = {r["model"]: r["b1_ms"] for r in report["rows"] if r["path"] == "PyTorch eager"}
    for r in report["rows"]:
        out.append(f"| {r['model']} | {r['input']} | {r['mult_adds'] / 1e9:.2f}B | "
                   f"{r['params'] / 1e6:.2f}M | {r['candidates']} | {r['path']} | "
                   f"{r['precision']} | {r['b1_ms']:.2f} | {r[f'b{b}_img_s']:.1f} | "
                   f"{eager[r['model']] / r['b1_ms']:.2f}x |")
    if report.get("not_exported"):
        out += ["", "Not exported (the exporter's error):", ""]
        out += [f"- {r['model']}, {r['path']} {r['precision']}: {r['why']}"
                for r in report["not_exported"]]
    if report.get("accuracy"):
        out += ["", "Main job detector (SSDLite320-MobileNetV1-0.25, shapes val set, COCO "
                "bbox mAP):", "",
                "| backend | precision | mAP PyTorch | mAP deployed | ms/image PyTorch (mmdet "
                "inference_detector) | ms/image deployed (val images, image to boxes) |",
                "|---|---|---|---|---|---|"]
        for a in report["accuracy"]:
            out.append(f"| {a['backend']} | {a['precision']} | {a['map_pytorch']} | "
                       f"{a['map_deployed']} | {a['ms_per_image_pytorch']} | "
                       f"{a['ms_per_image_deployed']} |")
    if report.get("postprocess"):
        out += postprocess_markdown(report["postprocess"])
    out += ["", "Targets:", ""] + targets(report)
    return "\n".join(out) + "\n"


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in report["rows"]))
    paths = list(dict.fromkeys(f"{r['path']} {r['precision']}" for r in report["rows"]))
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / len(paths)
    for j, p in enumerate(paths):
        ys = [next((r["b1_ms"] for r in report["rows"] if r["model"] == m and
                    f"{r['path']} {r['precision']}" == p), np.nan) for m in models]
        ax.bar(np.arange(len(models)) + j * width, ys, width, label=p)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2)
    ax.set_xticklabels([m.replace(" (", "\n(") for m in models], fontsize=8)
    ax.set_ylabel("batch-1 latency, image to boxes (ms, log)")
    ax.set_yscale("log")
    ax.set_title(f"End-to-end detector latency, {report['threads']} threads")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="batch-1 rounds")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batch-rounds", type=int, default=3)
    p.add_argument("--calib", type=int, default=16, help="rendered images to calibrate int8")
    p.add_argument("--checkpoint", help="main job checkpoint for the mAP section (default: "
                   "work_dirs/main_job/last_checkpoint if present)")
    p.add_argument("--out", default="work_dirs/benchmark_detectors")
    p.add_argument("--postprocess-batch", type=int, default=32,
                   help="batch of the post-processing rows (loop vs batched)")
    p.add_argument("--postprocess-rounds", type=int, default=3)
    p.add_argument("--device", default="cpu",
                   help="device of the post-processing rows: cpu, cuda, cuda:1 (the deploy "
                        "runtimes' rows are CPU rows)")
    p.add_argument("--postprocess-only", action="store_true",
                   help="only the post-processing rows (e.g. on a GPU machine)")
    args = p.parse_args(argv)
    device_error = _check_device(args.device)
    if device_error:
        p.error(device_error)
    if args.checkpoint is None and osp.exists("work_dirs/main_job/last_checkpoint"):
        with open("work_dirs/main_job/last_checkpoint") as f:
            args.checkpoint = f.read().strip()
    if args.postprocess_only:
        report = dict(rows=[], threads=args.threads, batch=args.batch,
                      machine=_machine(args), postprocess=postprocess_section(args))
    else:
        report = run(args)
        report["postprocess"] = postprocess_section(args)
        if args.checkpoint:
            report["accuracy"] = accuracy_section(args)
    os.makedirs(args.out, exist_ok=True)
    md = markdown(report) if report["rows"] else (
        f"Machine: {report['machine']}.\n" + "\n".join(postprocess_markdown(
            report["postprocess"])) + "\n")
    with open(osp.join(args.out, "benchmark_detectors.md"), "w") as f:
        f.write(md)
    with open(osp.join(args.out, "benchmark_detectors.json"), "w") as f:
        json.dump(report, f, indent=1)
    if report["rows"]:
        plot(report, osp.join(args.out, "benchmark_detectors.png"))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
