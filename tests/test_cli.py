"""The ``mnet`` command: predict (mmdet checkpoint, torchvision state dict, deployed ONNX folder,
classifiers) on a generated image folder and a generated video, deploy, info, flops,
convert-weights, and bad input as one error line with exit code 2.

The predictions in ``predictions.json`` are compared with the library's own calls on the same
pixels (mmdet's inference through the mmdet face, the torchvision model's forward,
``DeployedDetector.predict``): the command must add nothing and drop nothing but what the score
threshold drops. The detector is the shipped fixture (tests/fixtures/make_detector_fixture.py);
nothing trains here.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not (has("mmdet") and has("cv2") and has("onnxruntime")),
                                reason="needs the mmdet and deploy extras (OpenCV comes with "
                                       "mmcv)")
CONFIG = os.path.join(ROOT, "configs", "ssdlite320_mnet_shapes.py")
DETECTOR = os.path.join(ROOT, "tests", "fixtures", "ssdlite320_mnet025_shapes.pth")
CLASSIFIER = os.path.join(ROOT, "tests", "fixtures", "mnet025_colour64.pth")
CLASSES = ["circle", "square", "triangle", "star", "cross"]
TV_KWARGS = {"num_classes": 6, "alpha": 0.25}
THR = 0.05


def mnet(*args) -> int:
    from mnet_backbone.cli import main
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of 3 generated 320 x 320 images (plus an unreadable .jpg and a text file) and
    a 3-frame video of the same images written with OpenCV."""
    import cv2
    from mnet_backbone.shapes import ShapesSpec, make_shapes_dataset
    root = tmp_path_factory.mktemp("cli_data")
    make_shapes_dataset(str(root), ShapesSpec(num_train=1, num_val=3, image_size=(320, 320),
                                              max_objects=3, seed=3))
    folder = root / "val2017"
    names = sorted(os.listdir(folder))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    video = str(root / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (320, 320))
    for name in names:
        writer.write(cv2.imread(str(folder / name)))
    writer.release()
    return dict(folder=str(folder), names=names, video=video, root=root)


def folder_images(data):
    from mnet_backbone.images import load_rgb
    return [load_rgb(os.path.join(data["folder"], n)) for n in data["names"]]


def video_frames(path):
    """The video's frames as OpenCV decodes them (RGB), as the command reads them."""
    import cv2
    capture, frames = cv2.VideoCapture(path), []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def tv_checkpoint(tmp_path_factory):
    """A seeded torchvision SSDLite320-MobileNetV1-0.25 state dict (5 classes + background)."""
    from torchvision.models import get_model
    torch.manual_seed(0)
    model = get_model("ssdlite320_mobilenet_v1", weights=None, weights_backbone=None,
                      **TV_KWARGS)
    path = tmp_path_factory.mktemp("tv") / "tv.pth"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """``mnet deploy`` of the fixture to ONNX Runtime: the deployed folder."""
    folder = tmp_path_factory.mktemp("deployed")
    assert mnet("deploy", CONFIG, DETECTOR, "--output", folder, "--backend", "onnxruntime") == 0
    return str(folder)


def reference(kind, request):
    """(the command's model arguments, its options, the library's own predict on RGB arrays,
    label offset)."""
    if kind == "mmdet":
        from mnet_backbone.mmdet_plugin.deploy import load_detector, pytorch_predict
        return [CONFIG, DETECTOR], [], pytorch_predict(load_detector(CONFIG, DETECTOR)[0]), 0
    if kind == "torchvision":
        from mnet_backbone.tv_models.deploy import load_tv_detector, pytorch_predict
        checkpoint = request.getfixturevalue("tv_checkpoint")
        model = load_tv_detector("ssdlite320_mobilenet_v1", checkpoint, **TV_KWARGS)
        return (["torchvision:ssdlite320_mobilenet_v1", checkpoint],
                ["--model-kwargs", json.dumps(TV_KWARGS), "--class-names", *CLASSES],
                pytorch_predict(model), 1)
    from mnet_backbone.deploy import DeployedDetector
    folder = request.getfixturevalue("deployed")
    detector = DeployedDetector(folder, backend="onnxruntime")
    return [folder], ["--backend", "onnxruntime"], detector.predict, 0


def expected_records(results, names, offset, thr):
    """COCO results records of the library's results at the threshold, in a comparable form."""
    out = []
    for i, (result, name) in enumerate(zip(results, names)):
        for box, score, label in zip(*(np.asarray(result[k]) for k in ("boxes", "scores",
                                                                       "labels"))):
            if score >= thr:
                x1, y1, x2, y2 = box.tolist()
                out.append((i + 1, name, int(label) - offset + 1, x1, y1, x2 - x1, y2 - y1,
                            float(score)))
    return sorted(out)


def assert_same(records, expected):
    got = sorted((r["image_id"], r["file_name"], r["category_id"], *r["bbox"], r["score"])
                 for r in records)
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g[:3] == e[:3]
        np.testing.assert_allclose(g[3:], e[3:], atol=2e-3)
    names = {r["category_id"]: r["category_name"] for r in records}
    assert all(names[c] == CLASSES[c - 1] for c in names)


# the deployed folder is exported once for the module (about 20 s on 2 cores): slow
@pytest.mark.parametrize("kind", ["mmdet", "torchvision",
                                  pytest.param("onnx", marks=pytest.mark.slow)])
def test_predict_matches_the_library_on_a_folder_and_a_video(kind, data, request, tmp_path,
                                                             capsys):
    model_args, options, predict, offset = reference(kind, request)
    # a folder with an unreadable image and a text file: the rest is processed, both counted
    out = tmp_path / "folder"
    assert mnet("predict", *model_args, data["folder"], "--out", out, "--score-thr", THR,
                *options) == 0
    captured = capsys.readouterr()
    assert "3 images (1 unreadable skipped, 1 non-image file not read): " in captured.out
    assert "ms per image on" in captured.out and "broken.jpg" in captured.err
    records = json.loads((out / "predictions.json").read_text())
    assert_same(records, expected_records(predict(folder_images(data)), data["names"], offset,
                                          THR))
    assert sorted(os.listdir(out)) == sorted(data["names"] + ["predictions.json"])
    # a video: one record set per frame, the drawn frames as one video
    out = tmp_path / "video"
    assert mnet("predict", *model_args, data["video"], "--out", out, "--score-thr", THR,
                *options) == 0
    assert "3 frames: " in capsys.readouterr().out
    records = json.loads((out / "predictions.json").read_text())
    frames = video_frames(data["video"])
    assert len(frames) == 3
    assert_same(records, expected_records(predict(frames), ["clip.mp4"] * 3, offset, THR))
    assert {r["frame"] for r in records} <= {0, 1, 2}
    assert len(video_frames(str(out / "clip.mp4"))) == 3
    assert sorted(os.listdir(out)) == ["clip.mp4", "predictions.json"]


def test_drawn_image_states_the_threshold_and_the_json_follows_it(data, tmp_path, capsys):
    from mnet_backbone.images import load_rgb
    image = os.path.join(data["folder"], data["names"][0])
    outs = {}
    for thr in (0.3, 0.9):
        outs[thr] = tmp_path / str(thr)
        assert mnet("predict", CONFIG, DETECTOR, image, "--out", outs[thr], "--score-thr",
                    thr) == 0
        assert "1 image: " in capsys.readouterr().out
    low, high = (json.loads((outs[t] / "predictions.json").read_text()) for t in (0.3, 0.9))
    assert all(r["score"] >= 0.9 for r in high) and len(low) > len(high)
    drawn = {t: load_rgb(str(outs[t] / data["names"][0])) for t in outs}
    assert drawn[0.3].shape == load_rgb(image).shape
    assert not np.array_equal(drawn[0.3], drawn[0.9])  # other boxes, another banner


def test_classifiers_give_top_k_labels(data, tmp_path, capsys):
    """torchvision:mobilenet_v1 + a state dict (the shipped dominant-colour classifier), and
    an mmpretrain config + checkpoint compared with mmpretrain's own inferencer."""
    from PIL import Image
    colours = tmp_path / "colours"
    colours.mkdir()
    for channel, name in enumerate(["red", "green", "blue"]):
        pixels = np.full((80, 100, 3), 20, np.uint8)
        pixels[..., channel] = 235
        Image.fromarray(pixels).save(colours / f"{channel}_{name}.png")
    out = tmp_path / "tv"
    assert mnet("predict", "torchvision:mobilenet_v1", CLASSIFIER, colours, "--out", out,
                "--top-k", 2, "--input-size", 64, "--model-kwargs",
                '{"num_classes": 3, "alpha": 0.25}', "--class-names", "red", "green",
                "blue") == 0
    assert "3 images: top-2 labels" in capsys.readouterr().out
    records = json.loads((out / "predictions.json").read_text())
    assert [r["rank"] for r in records] == [1, 2] * 3
    top1 = {r["file_name"]: r["category_name"] for r in records if r["rank"] == 1}
    assert top1 == {"0_red.png": "red", "1_green.png": "green", "2_blue.png": "blue"}
    assert all("bbox" not in r for r in records)
    # the same classifier as an .onnx file of tools/export_onnx.py (the package's exporter)
    from mnet_backbone import MobileNetV1
    from mnet_backbone.deploy.export import export_onnx
    model = MobileNetV1(num_classes=3, alpha=0.25, dropout=0.0)
    model.load_state_dict({k: v.float() for k, v in torch.load(CLASSIFIER).items()})
    onnx_file = export_onnx(model.eval(), str(tmp_path / "colour.onnx"), resolution=64)
    out = tmp_path / "onnx"
    assert mnet("predict", onnx_file, colours, "--out", out, "--top-k", 1, "--backend",
                "onnxruntime", "--class-names", "red", "green", "blue") == 0
    assert "on onnxruntime/own fp32" in capsys.readouterr().out
    records = json.loads((out / "predictions.json").read_text())
    assert {r["file_name"]: r["category_name"] for r in records} == top1

    if not has("mmpretrain"):
        return
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ImageClassificationInferencer, get_model
    config = os.path.join(ROOT, "configs", "mnet_cls_shapes.py")
    torch.manual_seed(0)
    model = get_model(Config.fromfile(config))
    ckpt = tmp_path / "cls.pth"
    torch.save({"state_dict": model.state_dict(),
                "meta": {"dataset_meta": {"classes": CLASSES}}}, ckpt)
    out = tmp_path / "mmpretrain"
    image = os.path.join(data["folder"], data["names"][0])
    assert mnet("predict", config, ckpt, image, "--out", out, "--top-k", 5) == 0
    records = json.loads((out / "predictions.json").read_text())
    bgr = np.ascontiguousarray(np.asarray(Image.open(image).convert("RGB"))[..., ::-1])
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        inferencer = ImageClassificationInferencer(model.eval())
    scores = inferencer(bgr, return_datasamples=True)[0]
    scores = scores.pred_score.numpy()
    assert [r["category_name"] for r in records] == [CLASSES[i] for i in np.argsort(-scores)]
    np.testing.assert_allclose([r["score"] for r in records], np.sort(scores)[::-1], atol=1e-5)


def error_line(capfd) -> str:
    """The one line a bad input writes (native OpenCV / FFmpeg output included)."""
    captured = capfd.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()
             and "mmengine - INFO" not in ln and "Loads checkpoint" not in ln
             and "UserWarning" not in ln and "warnings.warn" not in ln]
    assert "Traceback" not in captured.err
    assert len(lines) == 1, lines
    assert lines[0].startswith("mnet predict: error: ")
    return lines[0]


def test_bad_sources_are_one_line_errors(data, tmp_path, capfd):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\0" * 1000)
    empty = tmp_path / "unreadable"
    empty.mkdir()
    (empty / "a.jpg").write_text("x")
    (empty / "b.png").write_text("y")
    cases = {
        str(tmp_path / "missing.jpg"): ("does not exist", "a camera index"),
        os.path.join(data["folder"], "broken.jpg"): ("cannot be decoded", "pass a readable"),
        str(garbage): ("cannot be decoded by OpenCV", "ffmpeg -i"),
        str(empty): ("none of the 2 images", "pass readable images"),
        str(tmp_path / "*.png"): ("matches no images", "pass a pattern"),
        "9": ("camera 9 cannot be opened", "another camera index"),
    }
    for source, (problem, fix) in cases.items():
        out = tmp_path / "out"
        assert mnet("predict", CONFIG, DETECTOR, source, "--out", out) == 2, source
        line = error_line(capfd)
        assert problem in line and fix in line, line
        assert not (out / "predictions.json").exists()


def test_bad_models_are_one_line_errors(data, tmp_path, capfd):
    text = tmp_path / "model.txt"
    text.write_text("x")
    deployed = tmp_path / "deployed"  # what a deployed folder is told apart by; never loaded
    deployed.mkdir()
    (deployed / "deploy.json").write_text("{}")
    folder = data["folder"]
    image = os.path.join(folder, data["names"][0])
    cases = [
        ([text, folder], ("none of the accepted kinds", "torchvision:BUILDER")),
        ([tmp_path / "nothing", folder], ("does not exist", "deployed folder")),
        ([tmp_path, folder], ("has no deploy.json", "mnet deploy")),
        ([CONFIG, folder], ("needs its checkpoint", "MODEL CHECKPOINT SOURCE")),
        ([CONFIG, tmp_path / "no.pth", folder], ("does not exist", "your training wrote")),
        ([CONFIG, text, folder], ("not a readable checkpoint", "convert it again")),
        ([CONFIG, DETECTOR, folder, "--cfg-options", "model.bbox_head.num_classes=3"],
         ("does not fit the model", "another number of classes")),
        ([deployed, DETECTOR, folder], ("holds its weights", "leave out the checkpoint")),
        ([CONFIG, DETECTOR, image, image], ("got 4 arguments", "quote it")),
        ([deployed, folder, "--device", "cuda"], ("run on the CPU", "leave out --device")),
        ([CONFIG, DETECTOR, folder, "--backend", "openvino"], ("runs deployed models",
                                                               "mnet deploy")),
    ]
    for args, (problem, fix) in cases:
        assert mnet("predict", *args, "--out", tmp_path / "out") == 2, args
        line = error_line(capfd)
        assert problem in line and fix in line, line


def test_info_deploy_flops_and_convert_weights(tmp_path, capsys):
    from mnet_backbone.deploy import backends
    env = dict(os.environ, MNET_BACKEND_CACHE=str(tmp_path / "choices.json"))
    proc = subprocess.run([sys.executable, "-m", "mnet_backbone", "info", "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["libraries"]["torch"] == torch.__version__.split("+")[0]
    assert info["cpu"]["features"] == backends.kernel_flags()
    assert info["backends"]["onnxruntime"]["runs"] is True
    assert info["auto_backend"]["cache"] == env["MNET_BACKEND_CACHE"]
    # in this process: the text report, and a choice found in the cache
    from mnet_backbone.cli import info as info_command
    fingerprint = backends.machine_fingerprint(2)
    key = "|".join([fingerprint, "0123456789abcdef", "fp32", "1", "onnxruntime/own"])
    (tmp_path / "choices.json").write_text(json.dumps({key: {
        "backend": "onnxruntime", "config": "own", "median_ms": {"onnxruntime/own": 5.0},
        "measured": "2026-12-04"}}))
    os.environ["MNET_BACKEND_CACHE"] = env["MNET_BACKEND_CACHE"]
    try:
        assert mnet("info") == 0
    finally:
        del os.environ["MNET_BACKEND_CACHE"]
    report = capsys.readouterr().out
    assert "1 choices cached, 1 for this machine" in report
    assert "2026-12-04: file 0123456789abcdef fp32 batch 1 threads 2 -> onnxruntime/own" in report
    assert "AVX512-VNNI" in report and "weights cache:" in report
    assert info_command.collect()["mnet-backbone"] == info["mnet-backbone"]

    assert mnet("flops", "--alpha", 0.25, "--resolution", 128) == 0
    assert "equal" in capsys.readouterr().out
    assert mnet("convert-weights", tmp_path / "missing.h5", tmp_path / "out.pth") == 2
    err = capsys.readouterr().err
    assert err.startswith("mnet convert-weights: error: ") and len(err.splitlines()) == 1
    assert mnet("deploy", CONFIG, tmp_path / "missing.pth", "--output", tmp_path / "d") == 2
    assert "does not exist" in capsys.readouterr().err


def test_entry_point_and_plain_progress_bar():
    import io
    from mnet_backbone.inference.progress import PlainBar
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert '"mnet = mnet_backbone.cli:main"' in setup
    stream = io.StringIO()
    bar = PlainBar(4, "photos", file=stream, interval=0.0)
    for _ in range(4):
        bar.update()
    bar.close()
    last = stream.getvalue().strip().split("\r")[-1]
    assert last.startswith("photos 4/4 [####################]") and "img/s ETA 00:00" in last


def test_positionals_may_follow_options(monkeypatch):
    """``mnet predict CONFIG CKPT --score-thr 0.5 photos/`` and ``--class-names a b -- photos/``:
    argparse alone would reject the trailing SOURCE."""
    from mnet_backbone.cli import predict
    seen = []
    monkeypatch.setattr(predict, "run", lambda args: seen.append(args) or 0)
    assert mnet("predict", CONFIG, "--score-thr", 0.5, DETECTOR, "--out", "o", "photos/") == 0
    assert mnet("predict", CONFIG, DETECTOR, "--class-names", "a", "b", "--", "photos/") == 0
    assert [a.inputs for a in seen] == [[DETECTOR, "photos/"]] * 2
    assert seen[0].score_thr == 0.5 and seen[1].class_names == ["a", "b"]
    with pytest.raises(SystemExit):
        mnet("predict", CONFIG, DETECTOR, "--bogus", "photos/")
