"""torchvision face, detection side: SSD300 / SSDLite320 / Faster R-CNN over the core model.

The checks of torchvision's test_models.py for detection models: a list of (3, H, W) images in,
one dict per image out in eval, a losses dict in train, inputs not mutated, TorchScript with
eager == scripted (1e-4) also after save/load, gradients reaching the input; plus the
trainable-parameter count per ``trainable_backbone_layers`` and a short training run.
"""
import copy
import io

import numpy as np
import pytest

torchvision = pytest.importorskip("torchvision")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import models as tvm  # noqa: E402
from torchvision.models.detection.ssd import SSDHead  # noqa: E402
from torchvision.models.detection.ssdlite import SSDLiteHead  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

import mnet_backbone  # noqa: E402,F401  (registers the face)
from mnet_backbone import MobileNetV1  # noqa: E402
from mnet_backbone.weights import load as weights_load  # noqa: E402
from mnet_backbone.cost import layer_costs  # noqa: E402
from mnet_backbone.model import plan_blocks  # noqa: E402
from mnet_backbone.tv_models import (MobileNet_V1_Weights, MobileNetV1Features,  # noqa: E402
                                     MobileNetV1FPN, PointwiseSSDHead, UnknownWeightsError,
                                     fasterrcnn_mobilenet_v1_320_fpn, mobilenet_v1_backbone,
                                     ssd300_mobilenet_v1, ssdlite320_mobilenet_v1)
from mnet_backbone.tv_models.classification import entry_model_kwargs  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:FutureWarning",
    "ignore:`torch.jit.save` is deprecated:FutureWarning",
    "ignore:`torch.jit.load` is deprecated:FutureWarning",
    "ignore:.*always returns a \\(Losses, Detections\\) tuple in scripting:UserWarning")

# Small but real: alpha 0.25, 5 classes, fewer RoIs for Faster R-CNN's box head (CPU time); image
# sizes that Faster R-CNN's resize keeps as they are (eager and scripted resizing may round a
# scaled size differently, which is torchvision's own behaviour). SSDs resize to 300/320 anyway.
_FEWER_ROIS = dict(rpn_post_nms_top_n_train=200, box_batch_size_per_image=64)
CASES = {
    "ssd300_mobilenet_v1": (dict(backbone_kwargs=dict(tf_padding=True, bn_eps=1e-3)),
                            [(120, 120), (96, 150)]),
    "ssdlite320_mobilenet_v1": (dict(), [(128, 128), (100, 130)]),
    "fasterrcnn_mobilenet_v1_320_fpn": (_FEWER_ROIS, [(320, 320), (320, 384)]),
    "fasterrcnn_mobilenet_v1_fpn": (dict(min_size=192, max_size=384, rpn_post_nms_top_n_test=150,
                                         **_FEWER_ROIS), [(192, 192), (192, 256)]),
}
SSD_LOSSES = {"bbox_regression", "classification"}
RCNN_LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
KERAS_025 = MobileNet_V1_Weights.KERAS_0_25_128


@pytest.fixture
def fake_download(monkeypatch):
    """Replace the downloader with a seeded random core state dict; calls are recorded."""
    calls = []

    def load_state_dict(entry, progress=True, check_hash=True):
        calls.append(entry)
        torch.manual_seed(3)
        state = MobileNetV1(num_classes=entry.num_classes, **entry_model_kwargs(entry)).state_dict()
        for value in state.values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
        return state

    monkeypatch.setattr(weights_load, "load_state_dict", load_state_dict)
    return calls


def _targets(sizes):
    targets = []
    for i, (h, w) in enumerate(sizes):
        targets.append({"boxes": torch.tensor([[0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h],
                                               [0.5 * w, 0.1 * h, 0.9 * w, 0.5 * h]]),
                        "labels": torch.tensor([1 + i, 4])})
    return targets


def _core(module):
    cores = [m for m in module.modules() if isinstance(m, MobileNetV1)]
    assert len(cores) == 1
    return cores[0]


@pytest.mark.parametrize("name", list(CASES))
def test_detector_like_torchvision(name):
    extra, sizes = CASES[name]
    torch.manual_seed(0)
    model = tvm.get_model(name, weights=None, num_classes=5, alpha=0.25, **extra).eval()
    assert getattr(tvm.detection, name) is tvm.get_model_builder(name)
    assert _core(model.backbone).alpha == 0.25  # the one core model is the backbone

    images = [torch.rand(3, h, w) for h, w in sizes]
    originals = [img.clone() for img in images]
    with torch.no_grad():
        out = model(images)
    assert len(out) == len(images)
    for det, (h, w) in zip(out, sizes):
        assert set(det) == {"boxes", "scores", "labels"}
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == (n,)
        assert det["labels"].dtype == torch.int64 and det["labels"].shape == (n,)
        if n:
            assert 1 <= det["labels"].min() and det["labels"].max() < 5
            assert det["boxes"][:, 0::2].max() <= w and det["boxes"][:, 1::2].max() <= h
    for img, orig in zip(images, originals):
        torch.testing.assert_close(img, orig, rtol=0, atol=0)  # inputs not mutated

    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(images)[1], out, atol=1e-4, rtol=1e-4)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(buffer)(images)[1], out, atol=1e-4, rtol=1e-4)

    model.train()
    images = [img.clone().requires_grad_(True) for img in images]
    targets = _targets(sizes)
    targets_before = copy.deepcopy(targets)
    losses = model(images, targets)
    assert set(losses) == (RCNN_LOSSES if name.startswith("faster") else SSD_LOSSES)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(img.grad is not None and img.grad.abs().sum() > 0 for img in images)
    for target, before in zip(targets, targets_before):
        torch.testing.assert_close(target, before, rtol=0, atol=0)


@pytest.mark.parametrize("builder", [ssdlite320_mobilenet_v1, fasterrcnn_mobilenet_v1_320_fpn])
def test_bad_targets_are_refused(builder):
    model = builder(num_classes=3, alpha=0.25).train()
    images = [torch.rand(3, 320, 320)]
    degenerate = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [30.0, 40.0, 30.0, 80.0]]),
                   "labels": torch.tensor([1, 2])}]
    with pytest.raises(AssertionError, match=r"All bounding boxes should have positive height "
                                             r"and width. Found invalid box \[30.0, 40.0, 30.0, "
                                             r"80.0\] for target at index 0"):
        model(images, degenerate)
    with pytest.raises(AssertionError, match=r"Expected target boxes to be a tensor of shape "
                                             r"\[N, 4\]"):
        model(images, [{"boxes": torch.tensor([1.0, 2.0, 3.0, 4.0]), "labels": torch.tensor([1])}])
    with pytest.raises((AssertionError, ValueError), match="targets should not be none"):
        model(images)


def _expected_trainable(alpha, trainable_layers, with_bn):
    """Conv weights (from the cost counter) and BN affine parameters of the last stages."""
    first = 5 - trainable_layers
    total = sum(layer.params for layer in layer_costs(alpha, num_classes=0)
                if int(layer.name[len("stage")]) >= first)
    if with_bn:
        for stage in plan_blocks(alpha)[first:]:
            for spec in stage:
                total += 2 * spec.out_channels + (2 * spec.in_channels if spec.separable else 0)
    return total


def _trainable(module):
    return sum(p.numel() for p in _core(module).parameters() if p.requires_grad)


@pytest.mark.parametrize("fpn", [True, False])
def test_backbone_helper_trainable_layers(fpn):
    for k in range(6):
        backbone = mobilenet_v1_backbone(weights=None, fpn=fpn, trainable_layers=k, alpha=0.25)
        assert _trainable(backbone) == _expected_trainable(0.25, k, with_bn=False), k
        assert all(isinstance(m, FrozenBatchNorm2d) for m in _core(backbone).modules()
                   if "Norm" in type(m).__name__)
        assert backbone.out_channels == 256
    with pytest.raises(ValueError, match=r"Trainable layers should be in the range \[0,5\], got 6"):
        mobilenet_v1_backbone(weights=None, fpn=fpn, trainable_layers=6)


def test_backbone_helper_outputs():
    x = torch.rand(1, 3, 160, 192)
    fpn = mobilenet_v1_backbone(weights=None, fpn=True, alpha=0.25).eval()
    assert isinstance(fpn, MobileNetV1FPN) and _core(fpn).out_indices == [3, 4]
    out = fpn(x)
    assert list(out) == ["0", "1", "pool"]
    assert [tuple(v.shape) for v in out.values()] == [(1, 256, 10, 12), (1, 256, 5, 6),
                                                      (1, 256, 3, 3)]
    fpn3 = mobilenet_v1_backbone(weights=None, fpn=True, alpha=0.25, returned_layers=[2, 3, 4])
    assert [v.shape[-1] for v in fpn3.eval()(x).values()] == [24, 12, 6, 3]
    single = mobilenet_v1_backbone(weights=None, fpn=False, alpha=0.25).eval()
    assert single(x).shape == (1, 256, 5, 6)
    for bad in ([4, 5], [], [3, 3], [4, 3]):
        with pytest.raises(ValueError, match="Each returned layer should be in the range"):
            mobilenet_v1_backbone(weights=None, fpn=True, returned_layers=bad)
    with pytest.raises(ValueError, match="only apply with fpn=True"):
        mobilenet_v1_backbone(weights=None, fpn=False, returned_layers=[3, 4])


@pytest.mark.parametrize("builder,default,frozen_bn", [
    (fasterrcnn_mobilenet_v1_320_fpn, 3, True), (ssdlite320_mobilenet_v1, 5, False)])
def test_trainable_backbone_layers_with_pretrained_backbone(fake_download, builder, default,
                                                            frozen_bn):
    for k in (None, 0, 2, 5):
        model = builder(weights_backbone=KERAS_025, num_classes=4, trainable_backbone_layers=k)
        expected = _expected_trainable(0.25, default if k is None else k, with_bn=not frozen_bn)
        assert _trainable(model.backbone) == expected, k
    # the backbone got the weights (classifier dropped) and the settings they need
    core = _core(model.backbone)
    reference = weights_load.load_state_dict(KERAS_025.entry)
    state = core.state_dict()
    # FrozenBatchNorm2d keeps no num_batches_tracked (and drops it when loading)
    assert set(state) == {k for k in reference if not k.startswith("fc.")
                          and not (frozen_bn and k.endswith("num_batches_tracked"))}
    for key, value in state.items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    assert core.alpha == 0.25 and core.tf_padding
    norms = [m for m in core.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and {m.eps for m in norms} == {1e-3}
    assert all(isinstance(m, FrozenBatchNorm2d) == frozen_bn for m in norms)
    assert model.transform.image_mean == list(KERAS_025.entry.mean)
    # without pretrained weights every layer trains (torchvision's rule, with its warning)
    with pytest.warns(UserWarning, match="has no effect"):
        model = builder(num_classes=4, alpha=0.25, trainable_backbone_layers=1)
    assert _trainable(model.backbone) == sum(p.numel() for p in _core(model.backbone).parameters())
    with pytest.raises(ValueError, match=r"Trainable backbone layers should be in the range "
                                         r"\[0,5\], got 6"):
        builder(weights_backbone=KERAS_025, trainable_backbone_layers=6)


def test_bad_arguments(fake_download):
    with pytest.raises(TypeError, match="go to `weights_backbone=`"):
        ssdlite320_mobilenet_v1(weights=KERAS_025)
    with pytest.raises(UnknownWeightsError, match="no COCO-trained MobileNetV1 detectors"):
        tvm.get_model("fasterrcnn_mobilenet_v1_fpn", weights="COCO_V1")
    with pytest.raises(TypeError, match="expected MobileNet_V1_Weights but received "
                                        "MobileNet_V3_Large_Weights"):
        ssd300_mobilenet_v1(weights_backbone=tvm.MobileNet_V3_Large_Weights.DEFAULT)
    with pytest.raises(ValueError, match="'alpha' expected value 0.25 but got 0.5"):
        fasterrcnn_mobilenet_v1_320_fpn(weights_backbone=KERAS_025, alpha=0.5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ssd300_mobilenet_v1(num_classes=1)
    with pytest.raises(ValueError, match="backbone_kwargs may not set 'num_classes'"):
        ssd300_mobilenet_v1(backbone_kwargs={"num_classes": 3})
    assert fake_download == []  # all refused before any download
    with pytest.warns(UserWarning, match="size of the model is already fixed"):
        ssd300_mobilenet_v1(num_classes=3, alpha=0.25, size=(512, 512))


def test_architecture_as_torchvision_builds_it():
    x = torch.rand(1, 3, 320, 320)
    lite = ssdlite320_mobilenet_v1(num_classes=4, alpha=0.25).eval()
    assert isinstance(lite.backbone, MobileNetV1Features) and isinstance(lite.head, SSDLiteHead)
    assert _core(lite.backbone).out_indices == [3, 4]
    assert [tuple(v.shape[1:]) for v in lite.backbone(x).values()] == [
        (128, 20, 20), (256, 10, 10), (128, 5, 5), (64, 3, 3), (64, 2, 2), (32, 1, 1)]
    assert (lite.score_thresh, lite.nms_thresh, lite.detections_per_img, lite.topk_candidates) \
        == (0.001, 0.55, 300, 300)
    assert lite.transform.image_mean == [0.5, 0.5, 0.5] and lite.transform.fixed_size == (320, 320)

    ssd = ssd300_mobilenet_v1(num_classes=81).eval()  # alpha 1: TF ssd_mobilenet_v1's depths
    assert isinstance(ssd.head, PointwiseSSDHead) and isinstance(ssd.head, SSDHead)
    assert {m.kernel_size for m in ssd.head.modules() if isinstance(m, nn.Conv2d)} == {(1, 1)}
    assert [tuple(v.shape[1:]) for v in ssd.backbone(torch.rand(1, 3, 300, 300)).values()] == [
        (512, 19, 19), (1024, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)]
    assert ssd.anchor_generator.num_anchors_per_location() == [6] * 6
    # the paper's Table 13: SSD300 MobileNet has 6.8M parameters (COCO: 80 classes + background)
    assert round(sum(p.numel() for p in ssd.parameters()) / 1e6, 1) == 6.8
    ssd3 = ssd300_mobilenet_v1(num_classes=4, alpha=0.25, predictor_kernel_size=3)
    assert type(ssd3.head) is SSDHead
    with pytest.raises(ValueError, match="predictor_kernel_size must be 1 or 3"):
        ssd300_mobilenet_v1(alpha=0.25, predictor_kernel_size=5)

    rcnn = fasterrcnn_mobilenet_v1_320_fpn(num_classes=4, alpha=0.25)
    assert isinstance(rcnn.backbone, MobileNetV1FPN)
    assert rcnn.transform.min_size == (320,) and rcnn.transform.max_size == 640
    assert rcnn.rpn._pre_nms_top_n["testing"] == 150 and rcnn.rpn._post_nms_top_n["testing"] == 150
    assert rcnn.rpn.score_thresh == 0.05
    assert rcnn.rpn.anchor_generator.num_anchors_per_location() == [15, 15, 15]
    full = tvm.detection.fasterrcnn_mobilenet_v1_fpn(num_classes=4, alpha=0.25)
    assert full.transform.min_size == (800,) and full.rpn.score_thresh == 0.05


def test_ssdlite_trains_on_shapes():
    from mnet_backbone.shapes import CLASSES, ShapesSpec, render_image
    rng = np.random.default_rng(0)
    spec = ShapesSpec(image_size=(192, 192), max_objects=3, min_size=32)
    images, targets = [], []
    for _ in range(2):
        img, objects = render_image(rng, spec)
        images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255)
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (o["bbox"] for o in objects)])
        labels = torch.tensor([o["category"] + 1 for o in objects])  # 0 is the background
        targets.append({"boxes": boxes, "labels": labels})

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v1(num_classes=len(CLASSES) + 1, alpha=0.25).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(np.isfinite(history))
    assert history[-1] < 0.9 * history[0], history  # e.g. 11.6 -> 9.6 in 6 steps


def test_deploy_loader_reads_reference_checkpoints_and_checks_the_fit(tmp_path):
    """tools/deploy.py's torchvision loader goes through the one fit check
    (state_dicts.load_fitting_checkpoint): a reference-script checkpoint ({'model': ...}) loads,
    another width is one CheckpointMismatchError, the model comes back in eval mode."""
    from mnet_backbone.state_dicts import CheckpointMismatchError
    from mnet_backbone.tv_models.deploy import load_tv_detector
    kwargs = dict(num_classes=3, alpha=0.25, weights_backbone=None)
    torch.manual_seed(0)
    state = tvm.get_model("ssdlite320_mobilenet_v1", **kwargs).state_dict()
    torch.save({"model": state, "epoch": 3}, tmp_path / "ref.pth")
    model = load_tv_detector("ssdlite320_mobilenet_v1", str(tmp_path / "ref.pth"), **kwargs)
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(CheckpointMismatchError, match="ref.pth does not fit the model.*another "
                                                      "width"):
        load_tv_detector("ssdlite320_mobilenet_v1", str(tmp_path / "ref.pth"),
                         **dict(kwargs, alpha=0.5))
