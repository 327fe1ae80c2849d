"""Neck and head widths follow the MobileNetV1 backbone: alpha or out_indices alone, in shipped
configs and in a user's config built from mmdet's own; bad widths fail at build time."""
import os

import pytest
import torch

from conftest import has

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='needs the mmdet extra')

if has('mmdet'):
    import mmdet
    import mnet_backbone  # noqa: F401  (registers the backbone, installs the width resolution)
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from mmdet_utils import CONFIGS, config_path
    from mnet_backbone.mmdet_plugin import widths as width_patch
    from mnet_backbone.model import SSD_EXTRA_CHANNELS, detector_widths, stage_channels

    register_all_modules()
    MMDET_CONFIGS = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs')

ALPHAS = (0.25, 0.5, 0.75, 1.0)


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Small models on tiny images: one thread is faster, and two threads on a busy 2-core
    machine were 10-30x slower here (spinning threads waiting for a descheduled one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _num_classes(model_cfg):
    head = model_cfg.roi_head.bbox_head if 'roi_head' in model_cfg else model_cfg.bbox_head
    return head.num_classes


def _loss_and_predict(model, num_classes, sizes=((3, 96, 128), (3, 64, 96)), step=False,
                      predict=True):
    """One loss (with backward, optionally an SGD step) and one predict on two small images."""
    packed = demo_mm_inputs(2, list(sizes), num_items=[2, 1], num_classes=num_classes)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    if step:
        torch.optim.SGD(model.parameters(), lr=1e-3).step()
    if not predict:
        return
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2 and all(r.pred_instances.bboxes.shape[1] == 4 for r in results)


def _cheap(model_cfg):
    """Fewer RoIs for the two-stage detectors (CPU time; the widths do not depend on it)."""
    if 'roi_head' in model_cfg:
        model_cfg.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=32)
        model_cfg.train_cfg.rcnn.sampler.num = 16
        model_cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=16)
    return model_cfg


def _build(config, **backbone):
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(backbone)
    return cfg, MODELS.build(_cheap(cfg.model))


def _extra_widths(neck):
    """Output channels of an SSDNeck's extra layers (plain or depthwise-separable 3x3)."""
    out = []
    for layer in neck.extra_layers:
        second = layer[1]
        conv = second.pointwise_conv.conv if hasattr(second, 'pointwise_conv') else second.conv
        out.append(conv.out_channels)
    return out


def _extras_written(cfg):
    neck = cfg.model.neck
    return tuple(neck.out_channels[len(neck.out_channels) - len(neck.level_strides):])


@pytest.mark.parametrize('alpha', ALPHAS)
@pytest.mark.parametrize('config', CONFIGS)
def test_alpha_alone_builds_trains_and_predicts(config, alpha):
    cfg, model = _build(config_path(config), alpha=alpha)
    out_indices = cfg.model.backbone.out_indices
    if cfg.model.neck.type == 'SSDNeck':
        widths = detector_widths(alpha, out_indices, _extras_written(cfg))
        assert _extra_widths(model.neck) == list(widths.extras)
        assert tuple(model.bbox_head.in_channels) == widths.levels
    else:  # FPN: its inputs follow, its 256 outputs do not depend on alpha
        assert [c.conv.in_channels for c in model.neck.lateral_convs] == list(
            stage_channels(alpha, out_indices))
    _loss_and_predict(model, _num_classes(cfg.model))


def test_the_config_is_not_changed_and_alpha_1_is_as_written():
    cfg = Config.fromfile(config_path('ssd_mnet_a050.py'))
    before = cfg.model.to_dict()
    model = MODELS.build(cfg.model)
    assert cfg.model.to_dict() == before  # resolved on copies: rebuilding gives the same net
    assert _extra_widths(model.neck) == [256, 128, 128, 64]  # 512, 256, 256, 128 x 0.5
    full = MODELS.build(Config.fromfile(config_path('ssd_mnet.py')).model)
    assert tuple(full.bbox_head.in_channels) == (512, 1024, 512, 256, 256, 128)  # as written


def test_ssd300_0_5_is_the_same_network_in_both_faces():
    """One meaning of alpha: SSD300-MobileNetV1-0.5 from the mmdet config and from the
    torchvision builder have the same backbone and extra-layer widths and parameter count in
    the backbone + extra layers."""
    if not has('torchvision'):
        pytest.skip('needs torchvision')
    from mnet_backbone.tv_models.detection import ssd300_mobilenet_v1
    mm = MODELS.build(Config.fromfile(config_path('ssd_mnet_a050.py')).model)
    tv = ssd300_mobilenet_v1(num_classes=5, alpha=0.5)
    tv_extras = [block[-1].out_channels for block in tv.backbone.extra]
    mm_extras = _extra_widths(mm.neck)
    assert tv_extras == mm_extras == list(detector_widths(0.5, (3, 4), SSD_EXTRA_CHANNELS).extras)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tv.backbone) == count(mm.backbone) + count(mm.neck)


@pytest.mark.parametrize('config,out_indices,anchor_strides', [
    ('ssd_mnet.py', (2, 3, 4), [8, 16, 32, 64, 100, 150]),
    ('ssdlite320_mnet_a050.py', (1, 2, 3, 4), [4, 8, 16, 32, 64, 107]),
    ('ssdlite320_mnet_shapes.py', (1, 2, 3, 4), [4, 8, 16, 32, 64, 107]),
    ('faster-rcnn_mnet_fpn.py', (2, 3, 4), [8, 16, 32, 64, 128]),
])
def test_out_indices_alone(config, out_indices, anchor_strides):
    cfg, model = _build(config_path(config), alpha=0.25, out_indices=out_indices)
    head = model.rpn_head if 'rpn_head' in cfg.model else model.bbox_head
    assert [s[0] for s in head.prior_generator.strides] == anchor_strides
    if 'roi_head' in cfg.model:
        assert model.roi_head.bbox_roi_extractor.featmap_strides == anchor_strides[:4]
    else:
        assert tuple(model.bbox_head.in_channels)[:len(out_indices)] == stage_channels(
            0.25, out_indices)
    _loss_and_predict(model, _num_classes(cfg.model))


@pytest.mark.parametrize('config,backbone', [
    ('ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py', dict(out_indices=(3, 4))),
    ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', dict(out_indices=(1, 2, 3, 4))),
])
def test_users_config_from_mmdet_with_only_the_backbone_replaced(config, backbone):
    """mmdet's own configs (widths written for MobileNetV2 / ResNet-50) with only
    ``model.backbone`` replaced: the build takes the widths from MobileNetV1 and trains."""
    cfg = Config.fromfile(os.path.join(MMDET_CONFIGS, config))
    cfg.model.backbone = dict(type='MobileNetV1', alpha=0.5, **backbone)
    model = MODELS.build(_cheap(cfg.model))
    expected = stage_channels(0.5, backbone['out_indices'])
    if hasattr(model.neck, 'in_channels'):  # FPN
        assert tuple(model.neck.in_channels) == expected
    else:  # SSDNeck: the head sees the backbone maps first
        assert tuple(model.bbox_head.in_channels)[:len(expected)] == expected
    # mmdet 3.3.0's own SSDHead cannot predict (no loss_cls, see SSDHeadPatched): train only.
    _loss_and_predict(model, _num_classes(cfg.model), step=True,
                      predict=cfg.model.bbox_head.get('type') != 'SSDHead'
                      if 'bbox_head' in cfg.model else True)


def test_other_backbones_are_untouched():
    cfg = Config.fromfile(os.path.join(MMDET_CONFIGS,
                                       'ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'))
    model = MODELS.build(cfg.model)
    assert tuple(model.bbox_head.in_channels) == (96, 1280, 512, 256, 256, 128)


def test_unpatch_restores_mmdet_and_its_shape_error():
    model_cfg = Config.fromfile(config_path('ssdlite320_mnet_a050.py')).model
    assert width_patch.is_patched()
    width_patch.unpatch_detectors()
    try:
        model = MODELS.build(model_cfg)  # mmdet alone: the alpha-1 widths as written
        with pytest.raises(RuntimeError, match='channels'):
            _loss_and_predict(model, 80)
    finally:
        assert width_patch.patch_detectors()
    assert tuple(MODELS.build(model_cfg).bbox_head.in_channels) == (
        256, 512, 256, 128, 128, 64)
    # no registry entry is replaced: mmdet's names still give mmdet's classes
    from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
    assert MODELS.get('SingleStageDetector') is SingleStageDetector
    assert MODELS.get('TwoStageDetector') is TwoStageDetector


def test_other_mmdet_versions_are_not_patched(monkeypatch):
    width_patch.unpatch_detectors()
    try:
        monkeypatch.setattr(mmdet, '__version__', '3.4.0')
        with pytest.warns(UserWarning, match='do not follow'):
            assert width_patch.patch_detectors() is False
        assert not width_patch.is_patched()
    finally:
        monkeypatch.undo()
        assert width_patch.patch_detectors()


@pytest.mark.parametrize('change,match', [
    # alpha under 8 channels: names the layer, the numbers and the smallest alpha
    (dict(backbone=dict(alpha=0.05)), r'alpha=0.05 gives 6 channels .*128 x 0.05.* alpha >= '
                                      r'0.0625'),
    (dict(backbone=dict(alpha=0)), 'alpha'),
    # one backbone map for a 6-level head with 4 extra layers
    (dict(backbone=dict(out_indices=(4,))), r'gives 1 feature map.*6 levels.*out_indices'),
    (dict(backbone=dict(out_indices=(4, 3))), 'increasing'),
    # extra layers written to follow stride 32, the backbone ending at stride 16
    (dict(backbone=dict(out_indices=(1, 2, 3))), r'stride-32 .*ends at stage 3'),
    # a neck type whose widths are not derived, written for other widths
    (dict(neck=dict(_delete_=True, type='DilatedEncoder', in_channels=2048, out_channels=512,
                    block_mid_channels=128, num_residual_blocks=1, block_dilations=[2])),
     r"in_channels=2048.*outputs \(256, 512\).*model.neck.in_channels"),
    # a head with fewer anchor levels than maps
    (dict(bbox_head=dict(anchor_generator=dict(strides=[16, 32, 64, 100, 150],
                                               ratios=[[2]] * 5))),
     r'anchor generator has 5 levels.*6 maps'),
])
def test_bad_widths_fail_at_build_time(change, match):
    cfg = Config.fromfile(config_path('ssd_mnet_a050.py'))
    cfg.merge_from_dict(dict(model=change))
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg.model)


def test_normalisation_follows_the_named_weights(monkeypatch):
    """The SSD configs' [-1, 1] input is what the package's weights expect; a config with
    another normalisation that names them gets a warning naming both (no download here)."""
    logged = []
    monkeypatch.setattr(width_patch, '_log', lambda msg, warn=False: logged.append((warn, msg)))
    weights = dict(init_cfg=dict(type='Pretrained', checkpoint='mnet://keras_0.5_224'))
    for config in ('ssd_mnet_a050.py', 'ssdlite320_mnet_a050.py', 'faster-rcnn_mnet_fpn_a050.py'):
        _build(config_path(config), **weights)
    assert not [msg for warn, msg in logged if warn]
    _build(config_path('ssdlite320_mnet_shapes.py'), alpha=0.5, **weights)  # ImageNet mean/std
    warnings = [msg for warn, msg in logged if warn]
    assert len(warnings) == 1 and 'keras_0.5_224' in warnings[0]
    assert 'model.data_preprocessor.mean=[127.5, 127.5, 127.5]' in warnings[0]


def test_same_number_of_other_stages_moves_the_anchor_strides():
    cfg, model = _build(config_path('ssdlite320_mnet_shapes.py'), out_indices=(1, 3, 4))
    assert [s[0] for s in model.bbox_head.prior_generator.strides] == [4, 16, 32, 64, 107, 160]
    assert tuple(model.bbox_head.in_channels[:3]) == stage_channels(0.25, (1, 3, 4))
    _loss_and_predict(model, 5)
