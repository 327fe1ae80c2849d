"""Int8 on Google's real MobileNetV1 1.0-224 ImageNet weights (issue 14, item 3).

Calibration and evaluation use disjoint real photos (``mnet_backbone.deploy.photos``); the
evaluation side is 10 photos x 4 views (crops, a flip). The floors below are met by
``quantize_int8_accurate`` and failed, on the same sets, by the plain ``quantize_int8`` (both
measured here). Needs the cached real graph (``bash tools/install.sh``), scikit-image and
onnxruntime; skips otherwise (fails under CI, see ``real_weights``).
"""
import pytest
import torch

from real_weights import real_graph_path, real_model

pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")
pytestmark = pytest.mark.slow  # quantizes and runs the real 1.0-224 network

# (crop fraction, anchor, flip): a few of mnet_backbone.deploy.photos.VIEWS, to stay fast.
CALIB_VIEWS = ((0.875, "c", False), (1.0, "c", False), (0.6, "tl", True), (0.6, "br", True))
EVAL_VIEWS = ((0.875, "c", False), (0.875, "c", True), (0.6, "tr", False), (0.6, "bl", True))
# Measured on these sets (2026-12-02, onnxruntime 1.32, 2-core AVX-512BW CPU without VNNI): see
# docs/deploy.md "Int8 on real ImageNet weights"; the current path is far below every floor.
FLOOR = dict(sqnr_db=12.0, top1_agreement=0.75, top5_overlap=0.75)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from mnet_backbone.deploy.export import export_onnx, ort_session
    from mnet_backbone.deploy.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, photo_views
    from mnet_backbone.deploy.quant import logit_metrics, quantize_int8, quantize_int8_accurate

    real_graph_path()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = real_model(drop_background=True)
    calib = photo_views(CALIBRATION_PHOTOS, CALIB_VIEWS)
    evals = photo_views(EVALUATION_PHOTOS, EVAL_VIEWS)
    tmp = tmp_path_factory.mktemp("int8_real")
    fp32 = export_onnx(model, str(tmp / "fp32.onnx"))
    current = quantize_int8(fp32, str(tmp / "current.onnx"), calib)
    accurate = quantize_int8_accurate(model, str(tmp / "accurate.onnx"), calib)

    def logits(path):
        session = ort_session(path, threads=2)
        return session.run(None, {"input": evals.numpy()})[0]

    ref = logits(fp32)
    return dict(calib=calib, evals=evals, model=model, fp32=fp32, accurate=accurate,
                current_metrics=logit_metrics(ref, logits(current)),
                accurate_metrics=logit_metrics(ref, logits(accurate)))


def test_calibration_and_evaluation_sets_do_not_overlap(measured):
    from mnet_backbone.deploy.photos import (CALIBRATION_PHOTOS, EVALUATION_PHOTOS, _SOURCES)
    sources = lambda names: {_SOURCES.get(n, (n, None))[0] for n in names}  # noqa: E731
    assert not sources(CALIBRATION_PHOTOS) & sources(EVALUATION_PHOTOS)
    calib = measured["calib"].reshape(len(measured["calib"]), -1)
    evals = measured["evals"].reshape(len(measured["evals"]), -1)
    # no evaluation image is (close to) any calibration image
    assert float(torch.cdist(evals, calib).min()) > 10.0


def test_current_int8_path_fails_the_floor(measured):
    """The floor is meaningful: the plain ONNX Runtime static path misses it on the same sets."""
    m = measured["current_metrics"]
    assert any(m[k] < v for k, v in FLOOR.items()), m


def test_accurate_int8_meets_the_floor(measured):
    m = measured["accurate_metrics"]
    for key, floor in FLOOR.items():
        assert m[key] >= floor, (key, m, measured["current_metrics"])
    cur = measured["current_metrics"]
    assert m["sqnr_db"] > cur["sqnr_db"] + 3.0, (m, cur)


def test_accurate_file_keeps_the_classifier_fp32_and_quantizes_every_conv(measured):
    import onnx

    graph = onnx.load(measured["accurate"]).graph
    gemm = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(gemm) == 1
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in gemm[0].input), \
        "classifier quantized"
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 27
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)


def test_keep_fp32_names_unknown_edges():
    from mnet_backbone.deploy.quant import _edge_nodes
    with pytest.raises(ValueError, match="first"):
        _edge_nodes(None, ["middle"])
