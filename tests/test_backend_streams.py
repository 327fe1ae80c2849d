"""OpenVINO runs large batches as single-threaded streams (deploy.backends)."""
import numpy as np
import pytest
import torch

from conftest import has
from test_deploy import randomize_bn
from mnet_backbone import MobileNetV1


@pytest.mark.skipif(not has("openvino"), reason="needs openvino")
@pytest.mark.parametrize("features", [False, True])
def test_openvino_large_batches_run_in_streams_with_the_same_outputs(tmp_path, features):
    """A batch of >= 2 chunks on OpenVINO with 2 threads runs as single-threaded streams (odd
    sizes included) and gives the batch-1 path's outputs, in order."""
    from mnet_backbone.deploy import backends
    from mnet_backbone.deploy.export import export_onnx
    torch.manual_seed(0)
    model = randomize_bn(MobileNetV1(num_classes=10, alpha=0.25, out_indices=(2, 4))).eval()
    path = export_onnx(model, str(tmp_path / "m.onnx"), features=features, resolution=64)
    runner = backends.load(path, "openvino", "fp32", threads=2)
    x = torch.randn(2 * backends.OV_CHUNK + 3, 3, 64, 64).numpy()
    streamed = runner(x)
    one_by_one = [runner(x[i:i + 1]) for i in range(len(x))]
    for k, out in enumerate(streamed):
        assert out.shape[0] == len(x)
        np.testing.assert_allclose(out, np.concatenate([o[k] for o in one_by_one]), atol=1e-4)
