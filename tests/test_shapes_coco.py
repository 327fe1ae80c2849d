"""The generated shapes set is COCO-complete: segmentation polygons of the visible pixels, area,
iscrowd; pycocotools' segm evaluation and torchvision's reference conversion read it."""
import json
import os

import numpy as np
import pytest

from conftest import has
from mnet_backbone.shapes import ShapesSpec, mask_to_polygons, render_image

pytestmark = pytest.mark.skipif(not has('pycocotools'), reason='needs pycocotools')

if has('pycocotools'):
    from pycocotools import mask as mask_utils


def _rasterise(polygons, height, width):
    """What torchvision's references/detection/coco_utils.py (convert_coco_poly_to_mask) does:
    frPyObjects on the object's polygons, decode, union over them."""
    masks = mask_utils.decode(mask_utils.frPyObjects(polygons, height, width))
    if masks.ndim < 3:
        masks = masks[..., None]
    return masks.any(axis=2)


def test_polygons_are_exact_with_holes_pinches_and_pieces():
    mask = np.zeros((40, 50), bool)
    mask[5:30, 5:35] = True
    mask[10:20, 12:25] = False        # a hole (an object in front)
    mask[22:24, 8:10] = False         # a second one
    mask[32, 40] = mask[33, 41] = True  # two pixels touching at a corner
    mask[0:3, 45:50] = True           # a separate piece at the border
    polygons = mask_to_polygons(mask)
    assert all(len(p) >= 8 and len(p) % 2 == 0 for p in polygons)
    np.testing.assert_array_equal(_rasterise(polygons, 40, 50), mask)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    # a rectangle is one polygon of its 4 corners (pixel-edge coordinates)
    box = np.zeros((6, 8), bool)
    box[1:4, 2:7] = True
    assert mask_to_polygons(box) == [[2.0, 1.0, 2.0, 4.0, 7.0, 4.0, 7.0, 1.0]]


def test_rendered_objects_segmentation_matches_area_and_box():
    rng = np.random.default_rng(3)
    spec = ShapesSpec(image_size=(160, 128), max_objects=6, min_size=16)
    checked = 0
    for _ in range(20):
        img, objects = render_image(rng, spec)
        for obj in objects:
            mask = _rasterise(obj['segmentation'], img.height, img.width)
            assert mask.sum() == obj['area']
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == \
                obj['bbox']
            checked += 1
    assert checked > 40


def test_generated_json_passes_pycocotools_segm_and_torchvision_conversion(shapes_root):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann_file = os.path.join(shapes_root, 'annotations', 'instances_val2017.json')
    with open(ann_file) as f:
        data = json.load(f)
    for ann in data['annotations']:
        assert ann['iscrowd'] == 0 and ann['area'] > 0 and ann['segmentation']
    coco = COCO(ann_file)
    # torchvision's ConvertCocoPolysToMask: one mask per object, area as written
    for image in data['images']:
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
            mask = _rasterise(ann['segmentation'], image['height'], image['width'])
            assert mask.sum() == ann['area'] == coco.annToMask(ann).sum()
    # pycocotools' segm evaluation with default parameters: the truth as detections scores 1
    results = [dict(image_id=a['image_id'], category_id=a['category_id'], score=1.0,
                    segmentation=coco.annToRLE(a)) for a in data['annotations']]
    for r in results:
        r['segmentation']['counts'] = r['segmentation']['counts'].decode()
    evaluator = COCOeval(coco, coco.loadRes(results), 'segm')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
    # and a wrong mask (each shifted by 4 px) scores lower: the evaluation reads the masks
    shifted = []
    for a in data['annotations']:
        polygons = [[v + 4 if i % 2 == 0 else v for i, v in enumerate(p)]
                    for p in a['segmentation']]
        image = coco.imgs[a['image_id']]
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, image['height'], image['width']))
        rle['counts'] = rle['counts'].decode()
        shifted.append(dict(image_id=a['image_id'], category_id=a['category_id'], score=1.0,
                            segmentation=rle))
    worse = COCOeval(coco, coco.loadRes(shifted), 'segm')
    worse.evaluate()
    worse.accumulate()
    worse.summarize()
    assert worse.stats[0] < 0.9


def test_one_renderer_serves_detection_classification_and_calibration(tmp_path):
    """shapes.render_image draws the detection scenes, the classification set's one-shape images
    (a given class) and the rendered calibration images (cluttered or gradient background); the
    other modules keep no drawing code of their own."""
    import ast
    import io
    import pathlib

    import torch

    from mnet_backbone import shapes, shapes_cls
    from mnet_backbone.deploy import data

    for module in (shapes_cls, data):
        tree = ast.parse(pathlib.Path(module.__file__).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & {"ImageDraw", "ImageFilter", "draw_shape", "cluttered_background"}
    assert not hasattr(data, "render_shapes") and not hasattr(data, "train_classifier")

    for clutter in (True, False):
        images, labels = shapes.render_shapes(6, 64, seed=5, clutter=clutter)
        assert images.dtype == torch.uint8 and images.shape == (6, 3, 64, 64)
        rng = np.random.default_rng(5)
        spec = shapes.single_shape_spec(64, clutter)
        for image, label in zip(images, labels):
            img, category = shapes.render_single(rng, spec)
            assert category == label
            assert torch.equal(image, torch.from_numpy(np.asarray(img)).permute(2, 0, 1))
    cluttered, plain = (shapes.render_shapes(1, 64, seed=5, clutter=c)[0] for c in (True, False))
    assert not torch.equal(cluttered, plain)

    rng = np.random.default_rng(0)
    scene = ShapesSpec(image_size=(96, 96), max_objects=4, min_size=12)
    assert {o["category"] for _ in range(5)
            for o in shapes.render_image(rng, scene, category=3)[1]} == {3}

    spec = shapes_cls.ShapesClsSpec(train_per_class=1, val_per_class=1, image_size=48, seed=2)
    assert spec.render_spec() == ShapesSpec(image_size=(48, 48), max_objects=1, min_size=17,
                                            max_size_frac=0.8, seed=2)
    shapes_cls.make_shapes_cls_dataset(str(tmp_path), spec)
    rng = np.random.default_rng(2)
    for cls_idx, cls in enumerate(shapes.CLASSES):  # the train split is written first
        expected = io.BytesIO()
        shapes.render_single(rng, spec.render_spec(), cls_idx)[0].save(expected, "JPEG",
                                                                         quality=92)
        assert (tmp_path / "train" / cls / f"{cls}_000000.jpg").read_bytes() == \
            expected.getvalue()
