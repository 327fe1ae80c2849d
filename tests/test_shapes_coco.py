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
