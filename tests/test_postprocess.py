"""Batched detector post-processing (mnet_backbone.postprocess) against the loops it replaces.

torchvision's ``SSD.postprocess_detections`` (a loop over images and classes) vs the torchvision
face's batched one, on random head outputs (many detections, both of torchvision's NMS
groupings), on a spread-score SSDLite (few detections) and with nothing above the threshold;
``mmcv.ops.batched_nms`` vs :func:`batched_nms_as_mmcv`; the mmdet face's SSD head on the shipped
fixture detector with mmcv's NMS and with torchvision's, and without any mmcv NMS kernel.
Detections are compared box by box above each class's first score tie (test_deploy_detector's
``comparable``: equal scores may be kept in either order) and there bit for bit.
"""
import types

import numpy as np
import pytest
import torch

from conftest import has

pytest.importorskip("torchvision")
from torchvision.models import get_model  # noqa: E402
from torchvision.models.detection.ssd import SSD  # noqa: E402
from torchvision.ops import batched_nms  # noqa: E402

import mnet_backbone.tv_models  # noqa: E402,F401  (registers the builders)
from mnet_backbone.postprocess import (batched_nms_as_mmcv, candidate_boxes,  # noqa: E402
                                       greedy_nms_padded, nms, nms_keep,
                                       shift_like_torchvision, top_candidates)
from test_deploy_detector import comparable  # noqa: E402
from test_mobile import tv_detector  # noqa: E402,F401  (a fixture: spread-score SSDLite)


def assert_same(ref: dict, got: dict, max_det: int = 0) -> int:
    """Above each class's first tie: the same detections, bit for bit (sorted by score, label
    and box). Returns how many were compared."""
    r, g = comparable(ref, got, max_per_img=max_det)

    def rows(x):
        a = torch.cat([x["scores"][:, None].double(), x["labels"][:, None].double(),
                       x["boxes"].double()], 1).numpy()
        return a[np.lexsort(a.T[::-1])]
    np.testing.assert_array_equal(rows(r), rows(g))
    return len(r["scores"])


def random_head(batch: int, classes: int, seed: int = 0, size: int = 320, scale: float = 3.0):
    """(head_outputs, anchors, image_shapes) as SSD.postprocess_detections takes them: random
    box deltas and class logits (distinct scores) over SSDLite320's anchors."""
    gen = torch.Generator().manual_seed(seed)
    model = get_model("ssdlite320_mobilenet_v1", num_classes=classes, alpha=0.25,
                      weights=None, weights_backbone=None)
    from torchvision.models.detection.image_list import ImageList
    images = ImageList(torch.zeros(batch, 3, size, size), [(size, size)] * batch)
    feats = [torch.zeros(batch, 1, s, s) for s in (20, 10, 5, 3, 2, 1)]
    anchors = model.anchor_generator(images, feats)
    n = anchors[0].shape[0]
    head = {"bbox_regression": torch.randn(batch, n, 4, generator=gen) * 0.5,
            "cls_logits": torch.randn(batch, n, classes, generator=gen) * scale}
    return model.eval(), head, anchors, images.image_sizes


def loop_and_batched(model, head, anchors, shapes):
    with torch.no_grad():
        ref = SSD.postprocess_detections(model, head, anchors, shapes)  # torchvision's loop
        got = model.postprocess_detections(head, anchors, shapes)
    return ref, got


@pytest.mark.parametrize("classes, expect_per_class", [(91, True), (6, False)])
def test_random_heads_match_torchvision_loop(classes, expect_per_class):
    """Many boxes pass the threshold: 91 classes put > 1000 candidates in each image, where
    torchvision NMSes class by class; 6 classes with a high threshold stay under that, where it
    shifts the classes apart in one call (the float rounding of the shift included)."""
    model, head, anchors, shapes = random_head(3, classes)
    if not expect_per_class:
        model.score_thresh, model.topk_candidates = 0.5, 150
    ref, got = loop_and_batched(model, head, anchors, shapes)
    above = (torch.softmax(head["cls_logits"], -1)[..., 1:] > model.score_thresh).sum(1)
    candidates = above.clamp(max=model.topk_candidates).sum(1)  # per image
    assert ((candidates * 4 > 4000) == expect_per_class).all(), candidates
    for r, g in zip(ref, got):
        assert len(g["scores"]) == len(r["scores"])
        compared = assert_same(r, g, model.detections_per_img)
        assert compared >= (100 if expect_per_class else 10), compared


def test_one_selection_for_the_whole_batch():
    """The candidates of every image and class come from one ``topk`` (torchvision's loop: one
    per image and class) and no boolean indexing (one ``nonzero`` per image and class there)."""
    model, head, anchors, shapes = random_head(4, 21)
    calls = {}
    for name, post in (("loop", types.MethodType(SSD.postprocess_detections, model)),
                       ("batched", model.postprocess_detections)):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            post(head, anchors, shapes)
        calls[name] = {e.key: e.count for e in prof.key_averages()}
    assert calls["loop"]["aten::topk"] == 4 * 20  # what the test would see on the old code
    assert calls["batched"]["aten::topk"] == 2  # the candidates, then the best of each image
    assert calls["batched"].get("aten::nonzero", 0) == 0  # many boxes: NMS class by class


def test_nothing_above_the_threshold():
    model, head, anchors, shapes = random_head(2, 5)
    head["cls_logits"][..., 0] += 50  # a confident background everywhere
    ref, got = loop_and_batched(model, head, anchors, shapes)
    assert all(len(r["boxes"]) == 0 for r in ref)
    for g in got:
        assert g["boxes"].shape == (0, 4) and g["scores"].shape == (0,)
        assert g["labels"].dtype == torch.int64 and g["labels"].shape == (0,)


def test_spread_score_detector_matches_torchvision_loop(tv_detector):  # noqa: F811
    """A built SSDLite with spread-out scores (a stand-in for trained weights) on rendered
    images, end to end through the model's forward: its own post-processing vs torchvision's."""
    model, images = tv_detector
    x = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images]
    with torch.no_grad():
        got = model(x)
        model.postprocess_detections = types.MethodType(SSD.postprocess_detections, model)
        try:
            ref = model(x)
        finally:
            del model.postprocess_detections
    compared = [assert_same(r, g, model.detections_per_img) for r, g in zip(ref, got)]
    assert min(compared) >= 20, compared


def test_torchvision_grouping_keeps_the_shift_rounding():
    """Up to torchvision's size limit, the classes of an image are shifted apart in one NMS
    call, and the shift rounds the coordinates: ``as_torchvision`` keeps torchvision's boxes in
    every case, where NMS on the boxes as they are differs in some (so this can fail)."""
    gen = torch.Generator().manual_seed(1)
    n, classes, differs = 60, 90, 0
    for _ in range(100):
        xy = torch.rand(1, n, 2, generator=gen) * 20  # a cluster of small, overlapping boxes
        boxes = torch.cat([xy, xy + 1 + torch.rand(1, n, 2, generator=gen) * 8], -1)
        boxes[0, 0] = torch.tensor([300.0, 300.0, 310.0, 310.0])  # the max coordinate: 310
        scores = torch.full((1, classes, n), -1.0)
        scores[0, -1] = torch.rand(n, generator=gen)  # only the last class (label 90)
        top, index, counts = top_candidates(scores, 0.0, n)
        cand = candidate_boxes(boxes, index)
        keep = nms_keep(cand, top, counts, 0.3, True, 1)
        ours = sorted(map(tuple, cand[keep].tolist()))
        ref_keep = batched_nms(boxes[0], scores[0, -1], torch.full((n,), classes), 0.3)
        assert ours == sorted(map(tuple, boxes[0][ref_keep].tolist()))
        exact = nms(boxes[0], scores[0, -1], 0.3)
        differs += not torch.equal(exact.sort()[0], ref_keep.sort()[0])
    assert differs > 0, "no case where the shift's rounding matters: the test proves nothing"


@pytest.mark.parametrize("iou", [0.45, 0.5, 0.55])
def test_padded_greedy_nms_keeps_what_the_kernel_keeps(iou):
    """greedy_nms_padded (tensor ops only: the path off the CPU) keeps exactly what
    torchvision's CPU kernel keeps, on the boxes as they are and shifted as torchvision shifts
    them, in chunks of a few groups; a pair at IoU exactly 0.5 stays (greater than, not equal)."""
    gen = torch.Generator().manual_seed(2)
    b, c, n, k = 3, 20, 400, 60
    xy = torch.rand(b, n, 2, generator=gen) * 60  # crowded: many overlaps
    boxes = torch.cat([xy, xy + 2 + torch.rand(b, n, 2, generator=gen) * 30], -1)
    boxes[0, :2] = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])  # IoU 0.5
    scores = torch.rand(b, c, n, generator=gen)
    scores[0, :, :2] = torch.tensor([0.999, 0.998])
    scores[2] *= 0.1  # image 2: few candidates, shifted apart by class as torchvision does
    top, index, counts = top_candidates(scores, 0.09, k)
    cand = candidate_boxes(boxes, index)
    filled = (torch.arange(top.shape[-1]) < torch.tensor(counts)[..., None]).reshape(-1, k)
    for as_torchvision in (False, True):
        ref = nms_keep(cand, top, counts, iou, as_torchvision, 1)  # the CPU kernel, group by group
        coords = shift_like_torchvision(cand, counts, 1) if as_torchvision else cand
        got = greedy_nms_padded(coords.reshape(-1, k, 4), filled, iou, budget=3 * k * k)
        assert torch.equal(got.reshape(ref.shape), ref)
        assert not ref.all() and ref.sum() > 100
    assert bool(ref[0, :, 1].all()) == (iou >= 0.5)


# --- mmcv's batched_nms ------------------------------------------------------------------------

needs_mmcv = pytest.mark.skipif(not has("mmcv"), reason="needs mmcv")


def _random_boxes(n, classes, seed):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 300
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=gen) * 60], 1)
    return boxes, torch.rand(n, generator=gen), torch.randint(0, classes, (n,), generator=gen)


@needs_mmcv
@pytest.mark.parametrize("cfg", [
    dict(type="nms", iou_threshold=0.45),
    dict(type="nms", iou_threshold=0.5, score_threshold=0.3, max_num=40),
    dict(type="nms", iou_threshold=0.45, split_thr=100),  # per class, on the shifted boxes
    dict(type="nms", iou_threshold=0.45, split_thr=100, max_num=30),
    dict(type="nms", iou_threshold=0.6, class_agnostic=True),
    dict(iou_thr=0.45),
    None,
])
def test_batched_nms_as_mmcv_is_mmcv(cfg):
    from mmcv.ops import batched_nms as mmcv_batched_nms
    for seed in range(3):
        boxes, scores, idxs = _random_boxes(600, 7, seed)
        ref_dets, ref_keep = mmcv_batched_nms(boxes, scores, idxs, cfg)
        dets, keep = batched_nms_as_mmcv(boxes, scores, idxs, cfg)
        assert torch.equal(keep, ref_keep) and torch.equal(dets, ref_dets)
    empty = batched_nms_as_mmcv(boxes[:0], scores[:0], idxs[:0], dict(iou_threshold=0.5))
    assert empty[0].shape == (0, 5) and empty[1].shape == (0,)


def test_batched_nms_as_mmcv_refuses_what_it_cannot_do():
    boxes, scores, idxs = _random_boxes(10, 2, 0)
    for cfg, match in ((dict(type="soft_nms", iou_threshold=0.5), "type='nms' only"),
                       (dict(iou_threshold=0.5, offset=1), "offset=0"),
                       (dict(iou_threshold=0.5, min_score=0.1), r"\['min_score'\]"),
                       (dict(type="nms"), "needs iou_threshold")):
        with pytest.raises(ValueError, match=match):
            batched_nms_as_mmcv(boxes, scores, idxs, cfg)


# --- the mmdet face's SSD head -----------------------------------------------------------------

if has("mmdet"):
    from test_deploy_detector import mmdet_model, shapes320, trained  # noqa: F401  (fixtures)


class _NoNmsKernel:
    """mmcv's compiled ops as an mmcv built without CUDA kernels has them on a GPU."""

    def __getattr__(self, name):
        def missing(*args, **kwargs):
            raise RuntimeError(f"{name}_impl: implementation for device cuda:0 not found.")
        return missing


@pytest.mark.skipif(not has("mmdet"), reason="needs mmdet")
def test_mmdet_head_nms_is_mmcv_nms_without_its_kernel(mmdet_model, monkeypatch):
    """The fixture detector (SSDLite320-MobileNetV1-0.25 on shapes): SSDHeadPatched's
    detections (torchvision's kernel) are mmdet's own (mmcv's kernel), and still come when
    mmcv's NMS kernel is missing, as on a GPU with a CPU-only mmcv build."""
    import importlib
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mnet_backbone.mmdet_plugin.deploy import pytorch_predict, val_set
    model, cfg = mmdet_model
    val = val_set(cfg, limit=6)
    images = [val.load(p) for _, p in val.images]
    got = pytorch_predict(model)(images)
    head = model.bbox_head
    monkeypatch.setattr(head, "_bbox_post_process",
                        types.MethodType(BaseDenseHead._bbox_post_process, head))
    ref = pytorch_predict(model)(images)  # mmdet's _bbox_post_process: mmcv.ops.batched_nms
    assert sum(len(r["boxes"]) for r in ref) > 20
    for r, g in zip(ref, got):
        assert all(torch.equal(r[k], g[k]) for k in ("boxes", "scores", "labels"))
        assert assert_same(r, g, cfg.model.test_cfg.max_per_img) >= 10
    mmcv_nms = importlib.import_module("mmcv.ops.nms")  # mmcv.ops.nms is also the function
    monkeypatch.setattr(mmcv_nms, "ext_module", _NoNmsKernel())
    with pytest.raises(RuntimeError, match="nms_impl"):
        pytorch_predict(model)(images[:1])  # mmdet's own post-processing needs the kernel
    monkeypatch.undo()
    monkeypatch.setattr(mmcv_nms, "ext_module", _NoNmsKernel())
    again = pytorch_predict(model)(images)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(again, got))
