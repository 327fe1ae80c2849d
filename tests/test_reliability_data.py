"""Issue 17, bad data named once: COCO annotation checks with a policy per problem kind, images
that break during a run, and calibration folders checked before any export work."""
import copy
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import has

needs_mmdet = pytest.mark.skipif(not has("mmdet"), reason="mmdet not installed")


def _coco():
    """3 images (one without annotations), 2 categories, 6 annotations: 2 good and one each
    of negative width, outside the image, unknown category, unknown image."""
    images = [dict(id=i, file_name=f"{i:06d}.jpg", width=100, height=80) for i in (1, 2, 3)]
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400, iscrowd=0),
            dict(id=2, image_id=2, category_id=2, bbox=[5, 5, 30, 30], area=900, iscrowd=0),
            dict(id=3, image_id=1, category_id=1, bbox=[10, 10, -5, 20], area=100, iscrowd=0),
            dict(id=4, image_id=2, category_id=1, bbox=[90, 70, 30, 30], area=900, iscrowd=0),
            dict(id=5, image_id=1, category_id=7, bbox=[1, 1, 5, 5], area=25, iscrowd=0),
            dict(id=6, image_id=9, category_id=1, bbox=[1, 1, 5, 5], area=25, iscrowd=0)]
    cats = [dict(id=1, name="circle"), dict(id=2, name="square")]
    return dict(images=images, annotations=anns, categories=cats)


@pytest.fixture(scope="module")
def dc():
    if not has("mmdet"):
        pytest.skip("mmdet not installed")
    from mnet_backbone.mmdet_plugin import data_checks
    return data_checks


# --- check_coco --------------------------------------------------------------------------------

def test_bad_boxes_are_counted_and_skipped_an_unknown_category_is_an_error(dc):
    data = _coco()
    original = copy.deepcopy(data)
    with pytest.raises(dc.DataCheckError) as info:
        dc.check_coco(data, source="train.json")
    text = str(info.value)
    assert text.splitlines()[0] == ("train.json: 1 annotations whose category_id is not in "
                                    "'categories' (e.g. annotation id 5 of image 1: "
                                    "category_id 7)")
    for words in ("1 boxes of non-positive width or height skipped",
                  "1 boxes reaching outside their image skipped",
                  "1 annotations whose image_id is not in 'images' skipped",
                  "data_checks=dict(unknown_category='skip')"):
        assert words in text, text
    assert data == original  # the input is not changed

    cleaned, report = dc.check_coco(data, policy=dict(unknown_category="skip"), source="t.json")
    assert [a["id"] for a in cleaned["annotations"]] == [1, 2]
    assert report.counts == dict(non_positive_box=1, box_outside_image=1, unknown_category=1,
                                 unknown_image=1, image_without_annotations=1)
    assert len(report.lines()) == 5  # each kind reported once
    assert "1 images without annotations kept (e.g. image id 3 (000003.jpg))" in str(report)
    assert [im["id"] for im in cleaned["images"]] == [1, 2, 3]
    lines = str(report).splitlines()
    assert lines[0] == "t.json: 3 images, 2 annotations"


def test_other_policies(dc):
    cleaned, report = dc.check_coco(_coco(), policy=dict(
        unknown_category="skip", box_outside_image="clip", image_without_annotations="skip",
        non_positive_box="keep"))
    by_id = {a["id"]: a for a in cleaned["annotations"]}
    assert by_id[4]["bbox"] == [90.0, 70.0, 10.0, 10.0] and by_id[4]["area"] == 100.0
    assert 3 in by_id  # kept, as asked
    assert [im["id"] for im in cleaned["images"]] == [1, 2]
    assert "clipped to the image" in str(report)
    with pytest.raises(ValueError, match="unknown problem kind 'negative_box'"):
        dc.check_coco(_coco(), policy=dict(negative_box="skip"))
    with pytest.raises(ValueError, match="'clip' for 'unknown_image' is not one of"):
        dc.check_coco(_coco(), policy=dict(unknown_image="clip"))


def test_duplicate_ids_and_missing_files(dc, tmp_path):
    data = _coco()
    data["images"].append(dict(id=2, file_name="dup.jpg", width=10, height=10))
    with pytest.raises(dc.DataCheckError, match="1 images whose id was listed before"):
        dc.check_coco(data, policy=dict(unknown_category="skip"))
    (tmp_path / "000001.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    (tmp_path / "000002.jpg").write_bytes(b"")  # zero bytes; 000003.jpg is missing
    cleaned, report = dc.check_coco(_coco(), img_dir=str(tmp_path),
                                    policy=dict(unknown_category="skip"))
    assert report.counts["missing_image_file"] == 2
    assert "000002.jpg of image id 2: empty" in report.examples["missing_image_file"]
    assert [im["id"] for im in cleaned["images"]] == [1]
    assert {a["image_id"] for a in cleaned["annotations"]} == {1}


def test_empty_sets_are_errors(dc, tmp_path):
    data = dict(_coco(), annotations=[])
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps(data))
    with pytest.raises(dc.DataCheckError, match=r"instances_train2017.json: an empty set: "
                                                r"no annotations"):
        dc.check_coco(str(path))
    bad_only = dict(_coco(), annotations=_coco()["annotations"][2:3])
    with pytest.raises(dc.DataCheckError, match=r"no usable annotations \(all 1 dropped\)"):
        dc.check_coco(bad_only)


def test_malformed_json_names_file_line_and_column(dc, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(dc.DataCheckError) as info:
        dc.read_coco_json(str(path))
    assert str(info.value).startswith(f"{path}: malformed JSON at line 2, column 12")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(dc.DataCheckError, match="not a COCO annotation file"):
        dc.read_coco_json(str(tmp_path / "list.json"))


# --- in mmdet: the data set and the image loader ------------------------------------------------

@pytest.fixture
def damaged_set(shapes_root, tmp_path):
    """A copy of the shapes train split with a negative-width box, a box outside its image, a
    missing image, a zero-byte image and a truncated JPEG."""
    root = tmp_path / "set"
    shutil.copytree(os.path.join(shapes_root, "train2017"), root / "train2017")
    with open(os.path.join(shapes_root, "annotations", "instances_train2017.json")) as f:
        data = json.load(f)
    data["annotations"][0]["bbox"][2] = -4
    data["annotations"][-1]["bbox"][0] = 1000
    files = [root / "train2017" / im["file_name"] for im in data["images"]]
    os.remove(files[1])
    files[2].write_bytes(b"")
    files[3].write_bytes(files[3].read_bytes()[:200])
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(data))
    return root, data


@pytest.fixture
def warnings_():
    """The warnings mmengine's current logger gives during the test."""
    from mmengine.logging import MMLogger
    logger, records = MMLogger.get_current_instance(), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _dataset(root, pipeline, **kwargs):
    from mmdet.registry import DATASETS
    return DATASETS.build(dict(
        type="CheckedCocoDataset", data_root=str(root), ann_file="annotations/train.json",
        data_prefix=dict(img="train2017/"), metainfo=dict(
            classes=("circle", "square", "triangle", "star", "cross")),
        filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline, **kwargs))


@needs_mmdet
def test_checked_coco_dataset_reports_once_and_indexes_the_cleaned_set(dc, damaged_set, warnings_):
    root, data = damaged_set
    dataset = _dataset(root, [], data_checks=dict(check_files=True))
    warned = "\n".join(warnings_)
    assert warned.count("1 boxes of non-positive width or height skipped") == 1
    assert warned.count("1 boxes reaching outside their image skipped") == 1
    assert warned.count("2 images whose file is missing or empty (with their annotations) "
                        "skipped") == 1
    assert "not in 'images'" not in warned
    assert len(dataset) == len(data["images"]) - 2
    boxes = sum(len(dataset.get_data_info(i)["instances"]) for i in range(len(dataset)))
    dropped_with_images = sum(1 for a in data["annotations"]
                              if a["image_id"] in (data["images"][1]["id"],
                                                   data["images"][2]["id"]))
    assert boxes == len(data["annotations"]) - 2 - dropped_with_images
    empty = dict(data, annotations=[])
    (root / "annotations" / "train.json").write_text(json.dumps(empty))
    with pytest.raises(dc.DataCheckError, match="no annotations"):
        _dataset(root, [])


@needs_mmdet
def test_a_broken_image_is_skipped_with_a_warning_not_fatal(dc, damaged_set, warnings_):
    root, data = damaged_set
    pipeline = [dict(type="mmdet.CheckedLoadImageFromFile", max_failed_fraction=0.5,
                     min_failures=3)]
    dataset = _dataset(root, pipeline, data_checks=dict(box_outside_image="keep"))
    loader = dataset.pipeline.transforms[0]
    samples = [dataset[i] for i in range(len(dataset))]  # train mode: refetches another
    assert all(s["img"].ndim == 3 for s in samples)
    assert len(loader.failed) == 3  # missing, zero bytes, truncated
    warned = [line for line in warnings_ if "skipped image" in line]
    assert len(warned) == 3  # once per file
    second = data["images"][1]
    assert any(f"{second['file_name']} (image id {second['id']} of the annotation file): "
               f"the file does not exist" in w for w in warned)
    assert any("the file is empty (0 bytes) and cannot be decoded" in w for w in warned)
    assert any("a JPEG image and cannot be decoded" in w for w in warned)

    strict = dc.CheckedLoadImageFromFile(max_failed_fraction=0.0, min_failures=2)
    for i in (1, 2):  # tolerated up to min_failures
        assert strict(dict(img_path=str(root / "train2017" / data["images"][i]["file_name"]),
                           img_id=i)) is None
    with pytest.raises(dc.UnreadableImageError, match=r"3 of the 3 images loaded could not be "
                                                      r"read.*the data set is damaged"):
        strict(dict(img_path=str(root / "train2017" / data["images"][3]["file_name"])))
    test_mode = dc.CheckedLoadImageFromFile(on_error="error")
    with pytest.raises(dc.UnreadableImageError, match=r"image .* \(image id 7 of the annotation "
                                                      r"file\): the file does not exist"):
        test_mode(dict(img_path=str(root / "nothing.jpg"), img_id=7))


# --- calibration folders (tools/export_onnx.py --int8, tools/deploy.py) -------------------------

@pytest.fixture
def calib_dir(tmp_path):
    from PIL import Image
    folder = tmp_path / "calib"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            folder / "sub" / f"{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "labels.csv").write_text("a,b")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_one_function_lists_calibration_folders_for_both_exports(calib_dir, tmp_path):
    from mnet_backbone.deploy import data, detector_pipeline
    assert detector_pipeline.calibration_files is data.calibration_files
    assert detector_pipeline.CalibrationError is data.CalibrationError
    files, skipped = data.calibration_files(str(calib_dir))
    assert [os.path.basename(f) for f in files] == ["broken.png", "0.jpg", "1.jpg", "2.jpg"]
    assert skipped == 2
    images, bad = data.read_images(files, resolution=32)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and bad == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(data.CalibrationError, match="holds no images .*; 1 other files"):
        data.calibration_files(str(tmp_path / "empty"))
    with pytest.raises(data.CalibrationError, match="does not exist"):
        data.calibration_files(str(tmp_path / "missing"))
    with pytest.raises(data.CalibrationError, match="none of the 1 calibration images"):
        data.read_images([files[0]])


def test_export_onnx_int8_checks_the_folder_before_any_work(tmp_path, capsys, monkeypatch):
    from mnet_backbone.deploy import cli
    monkeypatch.setattr(cli, "build_model", lambda *a: pytest.fail("built a model"))
    monkeypatch.setattr(cli, "export_onnx", lambda *a, **k: pytest.fail("exported"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    out = str(tmp_path / "m.onnx")
    for folder, words in ((tmp_path / "empty", "holds no images"),
                          (tmp_path / "missing", "does not exist")):
        assert cli.main([out, "--int8", str(tmp_path / "q.onnx"),
                         "--calib-dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: calibration folder") and words in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(out)


def test_export_int8_skips_non_images_with_one_count(calib_dir, tmp_path, monkeypatch):
    from mnet_backbone import MobileNetV1
    from mnet_backbone.deploy import cli, quant
    seen = {}
    monkeypatch.setattr(cli, "export_onnx", lambda *a, **k: None)
    monkeypatch.setattr(quant, "quantize_int8",
                        lambda fp32, int8, images, **k: seen.setdefault("n", len(images)))
    summary = cli.export_files(MobileNetV1(num_classes=3, alpha=0.25).eval(),
                               str(tmp_path / "m.onnx"), resolution=32,
                               int8=str(tmp_path / "q.onnx"), calib_dir=str(calib_dir),
                               verify=False)
    assert seen["n"] == 3
    assert summary["calibration"] == (f"3 images from {calib_dir} (2 non-image files, 1 "
                                      f"undecodable skipped)")
