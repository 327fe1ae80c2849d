"""One owner of the image extensions and of the unreadable-image error (mnet_backbone.images),
and the public shape drawing the renderers share."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import has
from mnet_backbone import images, shapes


def test_deploy_calibration_uses_the_package_extensions():
    from mnet_backbone.deploy import data
    assert data.IMAGE_EXTENSIONS is images.IMAGE_EXTENSIONS
    assert issubclass(images.UnreadableImageError, OSError)


@pytest.mark.skipif(not has("mmdet"), reason="mmdet not installed")
def test_mmdet_data_checks_raise_the_package_error():
    from mnet_backbone.mmdet_plugin import data_checks
    assert data_checks.UnreadableImageError is images.UnreadableImageError


@pytest.mark.skipif(not (has("mmpretrain") and has("mmdet")), reason="cls extra not installed")
def test_mmpretrain_error_is_both_a_data_error_and_the_package_error():
    from mnet_backbone.mmpretrain_plugin import data
    assert data.IMG_EXTENSIONS is images.IMAGE_EXTENSIONS
    err = data.UnreadableImageError("cannot read image 'x.jpg'")
    assert isinstance(err, data.ClassificationDataError) and isinstance(err, ValueError)
    assert isinstance(err, images.UnreadableImageError) and str(err) == "cannot read image 'x.jpg'"


def test_draw_shape_fills_the_box_it_is_given():
    for cls in shapes.CLASSES:
        img = Image.new("I", (40, 40), 0)
        shapes.draw_shape(ImageDraw.Draw(img), cls, 20, 20, 24, 16, 0.0, 1)
        ys, xs = np.nonzero(np.asarray(img, dtype=np.int32))
        assert 7 <= xs.min() and xs.max() <= 32 and 11 <= ys.min() and ys.max() <= 28, cls
