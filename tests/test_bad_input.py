"""Issue 23, item 4: bad input and faults around the main job's detector
(configs/ssdlite320_mnet_shapes.py) end in one line naming the problem and the fix (command
lines: exit code 2, no traceback) or in a correct result.

Checkpoints are freshly built models' weights (never a training result); data is the tiny shapes
set of conftest's ``shapes_root``.
"""
import errno
import json
import os

import pytest
import torch

from conftest import has, load_tool

needs_mmdet = pytest.mark.skipif(not has("mmdet"), reason="needs the mmdet extra")
needs_deploy = pytest.mark.skipif(
    not (has("mmdet") and has("onnx") and has("onnxruntime") and has("onnxscript")),
    reason="needs the mmdet and deploy extras")

if has("mmdet"):
    from mmdet_utils import config_path, tiny_options
    from mnet_backbone.openmmlab.commands import parse_cfg_options

CONFIG = "ssdlite320_mnet_shapes.py"


def _error_line(err: str) -> str:
    """The one line a command line printed (no traceback, nothing else)."""
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _options(data_root: str, *extra: str) -> list:
    return tiny_options(CONFIG, data_root, batch_size=8) + ["train_cfg.val_interval=100",
                                                            *extra]


def build_detector(data_root: str, *extra: str, seed: int = 0):
    """The main job's detector as the config + ``extra`` options build it (random weights)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    import mnet_backbone.mmdet_plugin  # noqa: F401

    cfg = Config.fromfile(config_path(CONFIG))
    cfg.merge_from_dict(parse_cfg_options(_options(data_root, *extra)))
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model).eval()
    model.cfg = cfg  # as mmdet's init_detector keeps it (the export reads the input size there)
    return model


def save_detector(path, data_root: str, *extra: str, seed: int = 0) -> str:
    """A checkpoint of :func:`build_detector`'s weights, as a Runner writes them."""
    model = build_detector(data_root, *extra, seed=seed)
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 1, "iter": 1}}, str(path))
    return str(path)


def _snapshot(folder) -> dict:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


# --- rows 1 and 9: a failed re-deploy leaves the deployed folder as it was ----------------------

@needs_deploy
@pytest.mark.slow
def test_failed_redeploy_leaves_the_deployed_folder_byte_identical(shapes_root, tmp_path,
                                                                   capsys, monkeypatch):
    from mnet_backbone.deploy import DeployedDetector, detector_pipeline
    from mnet_backbone.weights.hub import sha256sum
    deploy = load_tool("deploy")
    good = save_detector(tmp_path / "epoch_30.pth", shapes_root, seed=0)
    other = save_detector(tmp_path / "epoch_10.pth", shapes_root, seed=1)
    out = tmp_path / "deployed"
    opts = ["--backend", "onnxruntime", "--cfg-options", *_options(shapes_root)]
    assert deploy.main([config_path(CONFIG), good, "--output", str(out), *opts]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "deploy.json").read_text())
    assert manifest["checkpoint"] == {"path": os.path.abspath(good), "sha256": sha256sum(good)}
    before = _snapshot(out)
    assert sorted(before) == ["deploy.json", "detector_fp32.onnx"]

    calib = tmp_path / "calib"  # image names, no image inside
    calib.mkdir()
    for name in ("a.jpg", "b.png", "c.jpg"):
        (calib / name).write_text("not an image")
    code = deploy.main([config_path(CONFIG), other, "--output", str(out), "--precision", "int8",
                        "--calib-dir", str(calib), *opts])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert "none of the 3 calibration images could be decoded" in line
    assert "pass a folder of JPEG/PNG images" in line
    assert _snapshot(out) == before

    # a failure late in the deploy (after export and quantization) changes nothing either
    def late_failure(*args, **kwargs):
        raise ValueError("simulated failure of the parity check")
    monkeypatch.setattr(detector_pipeline, "raw_output_diff", late_failure)
    assert deploy.main([config_path(CONFIG), other, "--output", str(out), *opts]) == 2
    assert "simulated failure" in _error_line(capsys.readouterr().err)
    assert _snapshot(out) == before  # no staging folder or partial file left either
    monkeypatch.undo()
    served = DeployedDetector(str(out), backend="onnxruntime").runner
    images = (torch.rand(1, 3, 320, 320) * 255).numpy()
    for seed, served_it in ((0, True), (1, False)):  # the folder still serves epoch 30
        diff = detector_pipeline.raw_output_diff(served, build_detector(shapes_root, seed=seed),
                                                 images)
        assert (diff < 1e-3) == served_it, (seed, diff)


@needs_deploy
def test_undecodable_calibration_images_fail_before_any_export(shapes_root, tmp_path,
                                                               monkeypatch):
    from mnet_backbone.deploy import detector_pipeline as dp
    model = build_detector(shapes_root)
    monkeypatch.setattr(dp, "export_detector", lambda *a, **k: pytest.fail("exported"))
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(dp.CalibrationError, match="none of the 1 calibration images could be"):
        dp.deploy_detector(model, str(tmp_path / "out"), precision="int8", calib_dir=str(calib))
    assert os.listdir(tmp_path / "out") == []


@needs_mmdet
def test_mismatch_message_names_width_or_classes_as_the_shapes_say(shapes_root):
    from mnet_backbone.state_dicts import CheckpointMismatchError, check_state_dict
    model = build_detector(shapes_root)  # alpha 0.25, 5 classes
    wider = build_detector(shapes_root, "model.backbone.alpha=0.5").state_dict()
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(model, wider, "epoch_30.pth")
    text = str(info.value)
    assert "\n" not in text and text.startswith("epoch_30.pth does not fit the model")
    assert ("another width (model.backbone.alpha: the model's is 0.25, the checkpoint's looks "
            "like 0.5)") in text
    assert "number of classes" not in text  # the head's cls layers changed with the width
    fewer = build_detector(shapes_root, "model.bbox_head.num_classes=4").state_dict()
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(model, fewer, "epoch_30.pth")
    assert "another number of classes" in str(info.value) and "width" not in str(info.value)
    both = build_detector(shapes_root, "model.backbone.alpha=0.5",
                          "model.bbox_head.num_classes=4").state_dict()
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(model, both, "epoch_30.pth")
    assert "another width" in str(info.value) and "another number of classes" in str(info.value)
    # fine-tuning on another number of classes fits most weights; another width does not
    check_state_dict(model, fewer, "epoch_30.pth", min_fit=0.5)
    with pytest.raises(CheckpointMismatchError, match=r"it fits \d+% of the model's weights"):
        check_state_dict(model, wider, "epoch_30.pth", min_fit=0.5)


# --- rows 2-4: a checkpoint that does not fit the model (tools/test.py, load_from, --resume) ----

def _run(fn, argv, capsys):
    """(exit code, the one error line) of a command line run in this process."""
    from mnet_backbone.openmmlab.commands import run_cli
    capsys.readouterr()  # what came before (an earlier test's logger writes to a closed capture)
    code = run_cli(fn, argv)
    err = capsys.readouterr().err
    return code, (_error_line(err) if code else err)


@needs_mmdet
@pytest.mark.parametrize("option, cause", [
    ("model.backbone.alpha=0.5", "another width (model.backbone.alpha: the model's is 0.5, the "
                                 "checkpoint's looks like 0.25)"),
    ("model.bbox_head.num_classes=4", "another number of classes")])
def test_test_py_refuses_a_checkpoint_that_does_not_fit(shapes_root, tmp_path, capsys, option,
                                                        cause):
    from mnet_backbone.openmmlab.commands import test as run_test
    ckpt = save_detector(tmp_path / "epoch_30.pth", shapes_root)
    code, line = _run(run_test, [config_path(CONFIG), ckpt, "--work-dir", str(tmp_path / "w"),
                                 "--cfg-options", *_options(shapes_root, option)], capsys)
    assert code == 2
    assert line.startswith(f"error: {ckpt} does not fit the model; ") and cause in line, line


@pytest.mark.slow
@needs_mmdet
def test_load_from_must_fit_most_of_the_model(shapes_root, tmp_path, capsys):
    from mnet_backbone.openmmlab.commands import train as run_train
    wider = save_detector(tmp_path / "a050.pth", shapes_root, "model.backbone.alpha=0.5")
    work = tmp_path / "w"
    code, line = _run(run_train, [config_path(CONFIG), "--work-dir", str(work), "--cfg-options",
                                  *_options(shapes_root, f"load_from={wider}")], capsys)
    assert code == 2
    assert line.startswith(f"error: {wider} does not fit the model (it fits ")
    assert "model.backbone.alpha: the model's is 0.25, the checkpoint's looks like 0.5" in line
    assert not list(work.glob("*.pth"))  # nothing trained
    # fine-tuning: a checkpoint of another number of classes loads all but the class layers
    other_classes = save_detector(tmp_path / "c4.pth", shapes_root,
                                  "model.bbox_head.num_classes=4")
    code, _ = _run(run_train, [config_path(CONFIG), "--work-dir", str(work), "--cfg-options",
                               *_options(shapes_root, f"load_from={other_classes}")], capsys)
    assert code == 0 and (work / "epoch_1.pth").is_file()


@needs_mmdet
def test_resume_from_a_checkpoint_of_another_width_is_one_line(shapes_root, tmp_path, capsys):
    from mnet_backbone.openmmlab.commands import train as run_train
    wider = save_detector(tmp_path / "epoch_1.pth", shapes_root, "model.backbone.alpha=0.5")
    code, line = _run(run_train, [config_path(CONFIG), "--work-dir", str(tmp_path / "w"),
                                  "--resume", wider, "--cfg-options", *_options(shapes_root)],
                      capsys)
    assert code == 2
    assert line.startswith(f"error: {wider} does not fit the model; ")
    assert "the checkpoint's looks like 0.5" in line


# --- row 5: unwritable output folders, before any work -------------------------------------------

@needs_mmdet
def test_unwritable_out_and_work_dir_fail_before_any_work(shapes_root, tmp_path, capsys,
                                                          monkeypatch):
    from mnet_backbone.openmmlab import commands
    monkeypatch.setattr(commands, "_build_runner", lambda cfg: pytest.fail("work started"))
    ckpt = save_detector(tmp_path / "epoch_30.pth", shapes_root)
    blocker = tmp_path / "a_file"  # a folder below a file cannot be made, even by root
    blocker.write_text("")
    out = blocker / "results" / "r.pkl"
    code, line = _run(commands.test, [config_path(CONFIG), ckpt, "--out", str(out), "--work-dir",
                                      str(tmp_path / "w"), "--cfg-options",
                                      *_options(shapes_root)], capsys)
    assert code == 2
    assert line == (f"error: folder '{out.parent}' cannot be written (Not a directory); pass "
                    f"another --out")
    for fn, argv in ((commands.train, []), (commands.test, [ckpt])):
        code, line = _run(fn, [config_path(CONFIG), *argv, "--work-dir", str(blocker / "w"),
                               "--cfg-options", *_options(shapes_root)], capsys)
        assert code == 2 and line.endswith("cannot be written (Not a directory); pass another "
                                           "--work-dir")


# --- row 6: a broken val image is found when training starts --------------------------------------

@needs_mmdet
def test_an_empty_val_image_stops_training_at_start(shapes_root, tmp_path, capsys):
    import shutil
    from mnet_backbone.openmmlab.commands import train as run_train
    data = tmp_path / "data"
    shutil.copytree(shapes_root, data)
    val = json.loads((data / "annotations" / "instances_val2017.json").read_text())
    empty = data / "val2017" / val["images"][0]["file_name"]
    empty.write_bytes(b"")
    work = tmp_path / "w"
    code, line = _run(run_train, [config_path(CONFIG), "--work-dir", str(work), "--cfg-options",
                                  *tiny_options(CONFIG, str(data), batch_size=8)], capsys)
    assert code == 2
    assert "instances_val2017.json: 1 images whose file is missing or empty" in line
    assert f"{empty} of image id {val['images'][0]['id']!r}: empty" in line
    assert "data_checks=dict(missing_image_file='skip')" in line
    assert not list(work.glob("*.pth"))  # stopped before the first epoch


# --- row 7: tools/export_onnx.py ------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--weights", "NOPE"], "weights 'NOPE' are neither a registered entry nor an existing file"),
    (["--alpha", "0"], "alpha (width multiplier) must be a finite number > 0, got 0.0"),
    (["--opset", "9"], "opset must be an int >= 17 (torch's ONNX exporter), got 9"),
    (["--resolution", "16"], "resolution must be at least 32 px (MobileNetV1 downsamples 32x), "
                             "got 16")])
def test_export_onnx_bad_arguments_are_one_line(tmp_path, capsys, args, words):
    export_onnx = load_tool("export_onnx")
    out = tmp_path / "m.onnx"
    assert export_onnx.main([str(out), *args]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("error: ") and words in line, line
    assert not out.exists()


def test_export_onnx_into_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    from mnet_backbone.deploy import cli
    monkeypatch.setattr(cli, "build_model", lambda *a: pytest.fail("built a model"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "sub" / "m.onnx"
    assert cli.main([str(out)]) == 2
    assert _error_line(capsys.readouterr().err) == (
        f"error: folder '{out.parent}' cannot be written (Not a directory); write {out} into a "
        f"folder you can write to")


# --- row 8: model settings and init_cfg from the training command line ---------------------------

@needs_mmdet
def test_training_command_line_shows_the_models_own_message(shapes_root, tmp_path, capsys):
    from mnet_backbone.openmmlab.commands import train as run_train
    def argv(*options):
        return [config_path(CONFIG), "--work-dir", str(tmp_path / "w"), "--cfg-options",
                *_options(shapes_root, *options)]
    code, line = _run(run_train, argv("model.backbone.alpha=0"), capsys)
    assert code == 2
    assert line == "error: alpha (width multiplier) must be a finite number > 0, got 0"
    folder = tmp_path / "weights"
    folder.mkdir()
    code, line = _run(run_train, argv("model.backbone.init_cfg.type=Pretrained",
                                      f"model.backbone.init_cfg.checkpoint={folder}"), capsys)
    assert code == 2
    assert line == (f"error: {folder} is a folder, not a checkpoint file; pass the checkpoint "
                    f"(.pth) file itself")


# --- row 10: the weights cache: stale partial files and a full disk -------------------------

def _cached_entry(tmp_path, monkeypatch, name="t_cache"):
    """A registered entry served from a local file (file:// URL, nothing downloaded)."""
    from mnet_backbone import MobileNetV1
    from mnet_backbone.weights import ENTRIES, WeightEntry
    served = tmp_path / "served" / "plain.pth"
    served.parent.mkdir()
    torch.save(MobileNetV1(num_classes=10, alpha=0.25).state_dict(), served)
    entry = WeightEntry(name=name, url=served.as_uri(), source="plain", license="test",
                        alpha=0.25, resolution=128, num_classes=10, top1=None, top5=None,
                        sha256=None, model_kwargs={})
    monkeypatch.setitem(ENTRIES, name, entry)
    return entry


def test_stale_partial_files_are_removed_on_a_cache_hit(tmp_path, monkeypatch):
    import time
    from mnet_backbone.weights import load_state_dict
    from mnet_backbone.weights.hub import cache_dir
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNET_CACHE", raising=False)
    entry = _cached_entry(tmp_path, monkeypatch)
    load_state_dict(entry.name, progress=False)  # downloaded and converted: cached
    cache = cache_dir()
    stale = os.path.join(cache, f"{entry.name}.pth.999-dead.partial")
    fresh = os.path.join(cache, f"{entry.name}.pth.998-live.partial")
    for path in (stale, fresh):
        with open(path, "wb") as f:
            f.write(b"half")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    load_state_dict(entry.name, progress=False)  # a cache hit
    assert not os.path.exists(stale) and os.path.exists(fresh)  # a live writer's file stays


@pytest.mark.parametrize("when", ["download", "conversion"])
def test_a_full_disk_is_one_error_naming_the_cache_and_mnet_cache(tmp_path, monkeypatch, when):
    import contextlib
    from mnet_backbone.files import atomic_write
    from mnet_backbone.weights import hub, load_state_dict
    monkeypatch.setenv("MNET_CACHE", str(tmp_path / "cache"))
    entry = _cached_entry(tmp_path, monkeypatch)
    cache = tmp_path / "cache" / "weights"
    assert hub.cache_dir() == str(cache)
    if when == "conversion":  # the download is cached: the converted file is written
        cache.mkdir(parents=True)
        (cache / entry.filename).write_bytes((tmp_path / "served" / "plain.pth").read_bytes())

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    @contextlib.contextmanager
    def full_disk(path, mode="wb", **kwargs):
        with atomic_write(path, mode, **kwargs):  # the real one: it removes its partial file
            yield FullDisk()

    monkeypatch.setattr(hub, "atomic_write", full_disk)
    with pytest.raises(OSError) as info:  # before: the raw OSError, or torch's "unexpected pos"
        load_state_dict(entry.name, progress=False)
    name = entry.filename if when == "download" else f"{entry.name}.pth"
    assert str(info.value) == (
        f"no space left to write {name} into the weights cache {cache} (No space left on "
        f"device); free space there, or set MNET_CACHE to a folder on a disk with room")
    assert isinstance(info.value, hub.CacheFullError) and info.value.__cause__ is None
    assert not [n for n in os.listdir(cache) if n.endswith(".partial")]


# --- row 11: model settings ----------------------------------------------------------------------

def test_alpha_must_be_finite_and_out_indices_distinct():
    from mnet_backbone import MobileNetV1
    from mnet_backbone.model import detector_widths
    for bad in (float("inf"), float("nan"), -1.0):  # inf: OverflowError before
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            MobileNetV1(alpha=bad)
    with pytest.raises(ValueError, match="finite"):
        detector_widths(float("inf"))
    with pytest.raises(ValueError, match="distinct stage indices"):
        MobileNetV1(out_indices=(3, 3))
    with pytest.raises(ValueError, match="distinct stage indices"):
        detector_widths(0.5, (4, 4))
    assert MobileNetV1(alpha=0.25, out_indices=(3, 4)).out_indices == [3, 4]
