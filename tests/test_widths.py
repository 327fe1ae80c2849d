"""The one rule for detector widths under alpha (mnet_backbone.model.detector_widths)."""
import pytest

from conftest import has
from mnet_backbone.model import (SSD_EXTRA_CHANNELS, MobileNetV1, detector_widths,
                                 scale_channels, stage_channels)


@pytest.mark.parametrize('alpha', [0.25, 0.35, 0.5, 0.75, 1.0, 1.4])
def test_widths_are_the_models_and_extras_scale_the_same_way(alpha):
    model = MobileNetV1(num_classes=0, alpha=alpha, out_indices=(2, 3, 4))
    assert stage_channels(alpha) == tuple(model.out_channels)
    widths = detector_widths(alpha, (2, 3, 4), SSD_EXTRA_CHANNELS)
    assert widths.backbone == tuple(model.out_channels[2:])
    assert widths.extras == tuple(scale_channels(c, alpha) for c in (512, 256, 256, 128))
    assert widths.levels == widths.backbone + widths.extras


def test_paper_ssd_widths():
    # TF ssd_mobilenet_v1 at depth_multiplier 1 and 0.5 (Conv2d_11, Conv2d_13, 4 extra layers)
    assert detector_widths(1.0, (3, 4), SSD_EXTRA_CHANNELS).levels == (
        512, 1024, 512, 256, 256, 128)
    assert detector_widths(0.5, (3, 4), SSD_EXTRA_CHANNELS).levels == (
        256, 512, 256, 128, 128, 64)


@pytest.mark.parametrize('args,match', [
    ((0.05, (3, 4), SSD_EXTRA_CHANNELS),
     r'alpha=0.05 gives 6 channels for the extra layer 3 \(128 x 0.05\), fewer than 8; use '
     r'alpha >= 0.0625'),
    ((0.1, (0, 3)), r'gives 6 channels for the stage 0 output \(64 x 0.1\).*alpha >= 0.125'),
    ((0, (3, 4)), 'alpha'), ((-1, (3, 4)), 'alpha'), ((True, (3, 4)), 'alpha'),
    ((0.5, (5,)), 'out_indices'), ((0.5, ()), 'out_indices'),
    ((0.5, (3, 4), (512, 0)), 'extra_channels'),
])
def test_bad_widths_name_the_numbers(args, match):
    with pytest.raises(ValueError, match=match):
        detector_widths(*args)


@pytest.mark.skipif(not has('torchvision'), reason='needs torchvision')
@pytest.mark.parametrize('alpha', [0.25, 0.5])
def test_torchvision_ssd_extras_use_the_helper(alpha):
    from mnet_backbone.tv_models.detection import ssd300_mobilenet_v1, ssdlite320_mobilenet_v1
    expected = list(detector_widths(alpha, (3, 4), SSD_EXTRA_CHANNELS).extras)
    ssd = ssd300_mobilenet_v1(num_classes=3, alpha=alpha)
    assert [block[-1].out_channels for block in ssd.backbone.extra] == expected
    lite = ssdlite320_mobilenet_v1(num_classes=3, alpha=alpha)
    assert [block[-1].out_channels for block in lite.backbone.extra] == expected
    with pytest.raises(ValueError, match='fewer than 8'):
        ssd300_mobilenet_v1(num_classes=3, alpha=0.05)
