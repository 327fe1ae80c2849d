"""Detectors deployed end to end: ONNX graph with NMS, ONNX Runtime / OpenVINO, precisions.

The main job's SSDLite320-MobileNetV1-0.25, trained once on a generated shapes set and shipped
as a test fixture (tests/fixtures/make_detector_fixture.py), is exported with tools/deploy.py's
library path and compared with mmdet's own inference box by box and by COCO mAP; a torchvision
SSDLite with seeded, spread-out head weights is compared the same way. Nothing here trains: a
short run comes out differently on each CPU.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(
    not (has("mmdet") and has("onnx") and has("onnxruntime") and has("onnxscript")),
    reason="needs the mmdet and deploy extras")
BACKENDS = [b for b in ("onnxruntime", "openvino") if has(b)]
CONFIG = os.path.join(ROOT, "configs", "ssdlite320_mnet_shapes.py")


def match_fraction(ref: dict, got: dict, iou: float = 0.99, score_tol: float = 1e-3):
    """Fractions of reference / deployed detections that have a twin on the other side
    (same label, IoU >= iou, score within score_tol)."""
    from torchvision.ops import box_iou
    rb, rs, rl = (torch.as_tensor(np.asarray(ref[k])) for k in ("boxes", "scores", "labels"))
    gb, gs, gl = (torch.as_tensor(np.asarray(got[k])) for k in ("boxes", "scores", "labels"))
    if len(rb) == 0 or len(gb) == 0:
        return float(len(rb) == len(gb)), float(len(rb) == len(gb))
    ok = (box_iou(rb.float(), gb.float()) >= iou) & (rl[:, None] == gl[None]) & \
        ((rs[:, None] - gs[None]).abs() <= score_tol)
    return ok.any(1).float().mean().item(), ok.any(0).float().mean().item()


def comparable(ref: dict, got: dict, tol: float = 1e-5, max_per_img: int = 0):
    """Both results cut, class by class, to the detections scored above that class's first tie.

    Where two candidates of one class score the same (identical features on a flat patch give
    neighbouring anchors bit-identical scores), mmcv's / torchvision's NMS and the runtime's may
    keep either, and from there on suppress different boxes of that class. Greedy NMS never
    lets a lower score change a higher one, so everything of a class above its first tie is
    comparable one to one. A tie shows as two near-equal scores on one side, or as near-equal
    scores with different boxes across the sides (each side kept its own twin). With a full
    list (``max_per_img`` detections), the lowest score is a tie at the cut as well."""
    from torchvision.ops import box_iou
    r = {k: torch.as_tensor(np.asarray(v)) for k, v in ref.items()}
    g = {k: torch.as_tensor(np.asarray(v)) for k, v in got.items()}
    floor = {}  # label -> scores at or below this are not comparable
    for label in set(r["labels"].tolist()) | set(g["labels"].tolist()):
        rs, gs = r["scores"][r["labels"] == label], g["scores"][g["labels"] == label]
        near = lambda a, b: (a[:, None] - b[None]).abs() < tol  # noqa: E731
        own = [s[(near(s, s) & ~torch.eye(len(s), dtype=torch.bool)).any(1)] for s in (rs, gs)]
        rb, gb = r["boxes"][r["labels"] == label], g["boxes"][g["labels"] == label]
        other = near(rs, gs) & (box_iou(rb.float(), gb.float()) < 0.99)
        ties = torch.cat(own + [rs[other.any(1)]])
        floor[label] = float(ties.max()) + tol if len(ties) else -1.0
    if max_per_img:
        full = [x["scores"].min() for x in (r, g) if len(x["scores"]) >= max_per_img]
        for label in floor:
            floor[label] = max([floor[label]] + [float(s) + tol for s in full])

    def keep(x):
        ok = torch.tensor([float(s) > floor[int(lab)] for s, lab in zip(x["scores"],
                                                                        x["labels"])], dtype=bool)
        return {k: v[ok] for k, v in x.items()}

    return keep(r), keep(g)


def assert_same_detections(ref: dict, got: dict, max_per_img: int = 0) -> int:
    """Box by box above each class's first score tie; returns how many were compared."""
    r, g = comparable(ref, got, max_per_img=max_per_img)
    assert len(g["boxes"]) == len(r["boxes"])
    assert match_fraction(r, g) == (1.0, 1.0), match_fraction(r, g)
    return len(r["boxes"])


@torch.no_grad()
def spread_scores(model: torch.nn.Module, images: list, gain: float = 3.0) -> None:
    """Make a freshly built torchvision SSD score images with well-spread, mostly distinct
    scores, without training: BN statistics measured on ``images`` (a random network's
    activations otherwise fade to nothing, and every score is 1 / num_classes) and the class
    predictors' weights scaled by ``gain``. Deterministic for a seed, on any CPU."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the one batch
    model.train()
    batch = model.transform([torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 255
                             for im in images])[0].tensors
    model.head(list(model.backbone(batch).values()))
    for predictor in model.head.classification_head.module_list:  # one per feature map
        [m for m in predictor.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.mul_(gain)
    model.eval()


# Made by tests/fixtures/make_detector_fixture.py: the main job's detector (alpha 0.25) trained
# once on the set `shapes320` generates. Shipped, not trained here: a short run comes out
# differently on each CPU, and so did the ties a comparison could trip on.
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "ssdlite320_mnet025_shapes.pth")


@pytest.fixture(scope="session")
def shapes320(tmp_path_factory):
    from mnet_backbone.shapes import make_shapes_dataset
    from fixtures.make_detector_fixture import SPEC  # the set the fixture was trained on
    root = tmp_path_factory.mktemp("shapes320")
    make_shapes_dataset(str(root), SPEC)
    return str(root)


@pytest.fixture(scope="session")
def trained(shapes320):
    """(config options, checkpoint) of the main job's detector, from the shipped fixture."""
    from mmdet_utils import tiny_options
    return tiny_options(CONFIG, shapes320, batch_size=8), FIXTURE


@pytest.fixture(scope="session")
def mmdet_model(trained):
    from mnet_backbone.mmdet_plugin.deploy import load_detector
    from mnet_backbone.openmmlab.commands import parse_cfg_options
    opts, ckpt = trained
    model, cfg = load_detector(CONFIG, ckpt, parse_cfg_options(opts))
    return model, cfg


@pytest.fixture(scope="session")
def deployed(mmdet_model, tmp_path_factory):
    """(folder, summary) of tools/deploy.py's library path on the fixture, fp32, with mAP: one
    export serves every test of the file that needs the fp32 graph (each export takes ~15 s)."""
    from mnet_backbone.deploy.detector_pipeline import deploy_detector
    from mnet_backbone.mmdet_plugin.deploy import pytorch_predict, val_set
    model, cfg = mmdet_model
    folder = tmp_path_factory.mktemp("deployed")
    summary = deploy_detector(model, str(folder), backend="onnxruntime", val=val_set(cfg),
                              pytorch_predict=pytorch_predict(model))
    return folder, summary


@pytest.fixture(scope="session")
def exported(deployed):
    """(file, spec) of the fp32 graph (raw head outputs kept)."""
    from mnet_backbone.deploy.detector_export import read_spec
    path = str(deployed[0] / "detector_fp32.onnx")
    return path, read_spec(path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_match_mmdet_inference(mmdet_model, exported, backend):
    from mnet_backbone.deploy import DeployedDetector
    from mnet_backbone.mmdet_plugin.deploy import pytorch_predict, val_set
    model, cfg = mmdet_model
    val = val_set(cfg)
    images = [val.load(p) for _, p in val.images]
    ref = pytorch_predict(model)(images)
    det = DeployedDetector(exported[0], backend=backend)
    got = det.predict(images)
    assert sum(len(r["boxes"]) for r in ref) > 20, "the trained model should detect something"
    max_per_img = cfg.model.test_cfg.max_per_img
    compared = [assert_same_detections(r, g, max_per_img) for r, g in zip(ref, got)]
    assert min(compared) >= 10 and sum(compared) >= 400, compared
    # mmdet style: DetDataSample with pred_instances in the image's pixels
    sample = det.predict(images[:1], style="mmdet")[0]
    assert torch.allclose(sample.pred_instances.bboxes, got[0]["boxes"])
    assert sample.ori_shape == images[0].shape[:2]


@pytest.mark.slow
def test_other_image_sizes_are_resized_and_boxes_rescaled(mmdet_model, exported):
    """A 480 x 400 image: the graph resizes it (bilinear) and maps boxes back, as mmdet does."""
    import cv2
    from mnet_backbone.deploy import DeployedDetector
    from mnet_backbone.mmdet_plugin.deploy import pytorch_predict, val_set
    model, cfg = mmdet_model
    val = val_set(cfg)
    image = cv2.resize(val.load(val.images[0][1]), (480, 400), interpolation=cv2.INTER_LINEAR)
    ref = pytorch_predict(model)([image])[0]
    got = DeployedDetector(exported[0], backend="onnxruntime").predict([image])[0]
    confident = ref["scores"] > 0.3
    assert confident.any()
    ref = {k: v[confident] for k, v in ref.items()}
    # mmdet resizes uint8 pixels with cv2, the graph floats: the same boxes within a pixel or two
    assert match_fraction(ref, got, iou=0.9, score_tol=0.05)[0] >= 0.9


@pytest.mark.slow
def test_raw_head_outputs_and_map_match_pytorch(mmdet_model, deployed):
    from mnet_backbone.deploy import DeployedDetector
    from mnet_backbone.deploy.detector_pipeline import val_predictions
    from mnet_backbone.deploy.detector_runtime import coco_map
    from mnet_backbone.mmdet_plugin.deploy import val_set
    val = val_set(mmdet_model[1])
    tmp_path, s = deployed
    assert s["backend"] == "onnxruntime" and s["precision"] == "fp32"
    assert s["max_abs_diff_vs_pytorch"] < 1e-3
    assert s["map_pytorch"] > 0.1  # the fixture scores about 0.2
    assert abs(s["map_deployed"] - s["map_pytorch"]) <= 0.005, s
    manifest = json.loads((tmp_path / "deploy.json").read_text())
    assert manifest["files"] == {"fp32": "detector_fp32.onnx"}
    assert manifest["summary"]["map_deployed"] == s["map_deployed"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]
    for backend in BACKENDS:  # the same file on every backend scores the same
        det = DeployedDetector(str(tmp_path), backend=backend)
        preds, _ = val_predictions(det.predict, val)
        m = coco_map(preds, val.ann_file, det.spec.class_names)["bbox_mAP"]
        assert abs(m - s["map_pytorch"]) <= 0.005, (backend, m, s["map_pytorch"])


@pytest.mark.slow
def test_int8_detector_runs_on_both_backends(mmdet_model, shapes320, tmp_path):
    import onnx
    from mnet_backbone.deploy import DeployedDetector
    from mnet_backbone.deploy.detector_pipeline import deploy_detector
    from mnet_backbone.mmdet_plugin.deploy import pytorch_predict, val_set
    model, cfg = mmdet_model
    calib = tmp_path / "calib"
    calib.mkdir()
    for name in sorted(os.listdir(os.path.join(shapes320, "train2017")))[:8]:
        os.symlink(os.path.join(shapes320, "train2017", name), calib / name)
    (calib / "notes.txt").write_text("not an image")
    (calib / "broken.jpg").write_bytes(b"not a jpeg")
    s = deploy_detector(model, str(tmp_path / "out"), precision="int8", backend="onnxruntime",
                        calib_dir=str(calib), val=val_set(cfg),
                        pytorch_predict=pytorch_predict(model))
    assert "1 non-image files, 1 undecodable skipped" in s["calibration"]
    proto = onnx.load(s["file"])
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression"} <= ops
    assert abs(s["map_deployed"] - s["map_pytorch"]) <= 0.1, s  # a barely trained model
    for backend in BACKENDS:
        det = DeployedDetector(str(tmp_path / "out"), backend=backend, precision="int8")
        assert det.path.endswith("detector_int8.onnx")
        assert len(det.predict([np.zeros((320, 320, 3), np.uint8)])) == 1


@pytest.mark.slow
@pytest.mark.skipif(not has("openvino"), reason="needs openvino")
def test_bf16_only_where_supported(exported, monkeypatch):
    from mnet_backbone.deploy import backends
    with pytest.raises(backends.PrecisionNotSupportedError, match="openvino"):
        backends.load(exported[0], "onnxruntime", "bf16")
    if backends.bf16_support()["supported"]:
        runner = backends.load(exported[0], "openvino", "bf16")
        x = backends.sample_input(exported[0], 1)
        fp32 = backends.load(exported[0], "openvino", "fp32")
        raw = runner.output_names.index("raw_cls")
        assert np.abs(runner(x)[raw] - fp32(x)[raw]).max() < 0.5  # bf16 keeps 8 bits
    monkeypatch.setattr(backends, "bf16_support", lambda: dict(
        avx512_bf16=False, amx_bf16=False, openvino_bf16=False, supported=False))
    with pytest.raises(backends.PrecisionNotSupportedError, match="no native bf16"):
        backends.load(exported[0], "openvino", "bf16")


@pytest.mark.slow
def test_auto_picks_a_measured_backend_and_caches_it(exported, tmp_path, monkeypatch):
    from mnet_backbone.deploy import backends
    cache = str(tmp_path / "choice.json")
    best, medians = backends.choose_backend(exported[0], "fp32", 1, 1, cache=cache, repeats=3)
    assert set(medians) == set(BACKENDS) and best == min(medians, key=medians.get)
    assert json.loads(open(cache).read())  # remembered for this machine
    monkeypatch.setattr(backends, "time_interleaved",
                        lambda *a, **k: pytest.fail("measured again despite the cache"))
    assert backends.choose_backend(exported[0], "fp32", 1, 1, cache=cache) == (best, medians)
    assert backends.open_model(exported[0], "auto", threads=1, cache=cache).backend == best


@pytest.mark.slow
def test_backend_errors(exported, monkeypatch, tmp_path):
    import importlib.util
    from mnet_backbone.deploy import backends
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        backends.load(exported[0], "tensorrt")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(backends.BackendNotInstalledError, match=r"mnet-backbone\[deploy\]"):
        backends.load(exported[0], "openvino")


def test_bad_input_fails_before_any_export(mmdet_model, tmp_path, monkeypatch):
    from mnet_backbone.deploy import detector_pipeline as dp
    model, _ = mmdet_model
    monkeypatch.setattr(dp, "export_detector", lambda *a, **k: pytest.fail("exported"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(dp.CalibrationError, match="holds no images"):
        dp.deploy_detector(model, str(tmp_path / "o"), precision="int8", calib_dir=str(empty))
    with pytest.raises(dp.CalibrationError, match="does not exist"):
        dp.deploy_detector(model, str(tmp_path / "o"), precision="int8",
                           calib_dir=str(tmp_path / "missing"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot be written"):
        dp.deploy_detector(model, str(blocker / "out"))


def test_checkpoint_of_another_alpha_is_refused(trained):
    from mnet_backbone.mmdet_plugin.deploy import load_detector
    from mnet_backbone.openmmlab.commands import parse_cfg_options
    from mnet_backbone.state_dicts import CheckpointMismatchError
    opts, ckpt = trained
    options = parse_cfg_options(opts)
    options["model.bbox_head.num_classes"] = 3
    with pytest.raises(CheckpointMismatchError, match=r"another number of classes"):
        load_detector(CONFIG, ckpt, options)


@pytest.mark.slow
def test_deploy_command_line(trained, tmp_path):
    opts, ckpt = trained
    out = tmp_path / "deployed"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), CONFIG, ckpt, "--output",
           str(out), "--backend", BACKENDS[-1], "--val", "--val-limit", "4", "--cfg-options",
           *opts]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("backend", "precision", "file", "max_abs_diff_vs_pytorch", "latency_ms_b1",
                "map_pytorch", "map_deployed"):
        assert key in summary
    assert os.path.isfile(summary["file"]) and (out / "deploy.json").is_file()
    bad = subprocess.run(cmd[:4] + ["--output", str(tmp_path / "x"), "--precision", "int8"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "calibration folder None does not exist" in bad.stderr


@pytest.mark.slow
def test_torchvision_ssdlite_exports_with_its_own_postprocessing(shapes320, tmp_path):
    """torchvision's post-processing (per-class top-k, NMS in network pixels, then rescale)."""
    from torchvision.models import get_model
    from mnet_backbone.deploy import DeployedDetector
    from mnet_backbone.deploy.detector_export import export_detector
    from mnet_backbone.images import load_rgb
    from mnet_backbone.tv_models.deploy import load_tv_detector, pytorch_predict
    torch.manual_seed(0)
    model = get_model("ssdlite320_mobilenet_v1", num_classes=6, alpha=0.25, weights=None,
                      weights_backbone=None, score_thresh=0.05)
    train = os.path.join(shapes320, "train2017")
    spread_scores(model, [load_rgb(os.path.join(train, f)) for f in sorted(os.listdir(train))[:8]])
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    model = load_tv_detector("ssdlite320_mobilenet_v1", str(tmp_path / "tv.pth"), num_classes=6,
                             alpha=0.25, score_thresh=0.05)
    path = str(tmp_path / "tv.onnx")
    export_detector(model, path)
    rgb = [load_rgb(os.path.join(shapes320, "val2017", im["file_name"]))
           for im in json.load(open(os.path.join(shapes320, "annotations",
                                                 "instances_val2017.json")))["images"][:4]]
    rgb.append(np.ascontiguousarray(rgb[0][:, :240]))  # another size: NMS before the rescale
    ref = pytorch_predict(model)(rgb)
    assert sum(len(r["boxes"]) for r in ref) > 10
    for backend in BACKENDS:
        got = DeployedDetector(path, backend=backend).predict(rgb)
        compared = [assert_same_detections(r, g, model.detections_per_img)
                    for r, g in zip(ref, got)]
        assert min(compared) >= 50, compared
        assert all(set(g["labels"].tolist()) <= set(range(1, 6)) for g in got)
    with pytest.raises(ValueError, match="does not fit"):
        load_tv_detector("ssdlite320_mobilenet_v1", str(tmp_path / "tv.pth"), num_classes=6,
                         alpha=0.5)
