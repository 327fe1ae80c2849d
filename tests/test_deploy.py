"""Deploy mode: BN folding, chunked channels-last inference, ONNX / TorchScript export, int8."""
import copy
import os

import pytest
import torch
from torch import nn

from conftest import has
from mnet_backbone.deploy import DeployedMobileNetV1, deploy, fold_bn
from mnet_backbone.deploy.fold import FusedConvAct, can_fuse
from mnet_backbone.model import ConvBNAct, MobileNetV1

needs_ort = pytest.mark.skipif(not (has("onnx") and has("onnxruntime") and has("onnxscript")),
                               reason="onnx, onnxruntime and onnxscript are dev extras")


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding has something to fold."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
    return model


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> float:
    diff = float((a - b).abs().max())
    assert diff <= tol * max(1.0, float(b.abs().max())), diff
    return diff


@pytest.mark.parametrize("kwargs", [dict(alpha=0.5), dict(alpha=0.25, tf_padding=True,
                                                           bn_eps=1e-3, activation="relu")])
def test_fold_bn_equals_eval_model_and_leaves_it_alone(kwargs):
    torch.manual_seed(0)
    model = randomize_bn(MobileNetV1(num_classes=10, out_indices=(1, 2, 3, 4), **kwargs))
    model.train()
    before = copy.deepcopy(model.state_dict())
    folded = fold_bn(model)

    # The original is untouched: same weights, still training, BN still there.
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 27

    # The copy: same architecture, BN gone (Identity), biased convs, eval mode.
    assert type(folded) is MobileNetV1 and not folded.training
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    units = [m for m in folded.modules() if isinstance(m, ConvBNAct)]
    assert len(units) == 27 and all(isinstance(u.bn, nn.Identity) and u.conv.bias is not None
                                    for u in units)
    assert [n for n, _ in folded.named_modules() if n.endswith(".conv")] == \
        [n for n, _ in model.named_modules() if n.endswith(".conv")]

    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        close(folded(x), model(x))
        for a, b in zip(folded.forward_features(x), model.forward_features(x)):
            close(a, b)


def test_fold_bn_rejects_what_cannot_fold():
    with pytest.raises(TypeError, match="BatchNorm"):
        fold_bn(MobileNetV1(alpha=0.25, norm_layer=lambda c: nn.GroupNorm(4, c)))
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn(MobileNetV1(alpha=0.25,
                            norm_layer=lambda c: nn.BatchNorm2d(c, track_running_stats=False)))
    with pytest.raises(TypeError, match="MobileNetV1"):
        fold_bn(nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize("chunks,streams,fuse", [((1, 1, 2, 4, 0), 1, None),
                                                 ((0, 0, 0, 0, 0), 2, False),
                                                 ((2, 2, 2, 2, 2), 3, None)])
def test_deployed_model_matches_eval_model(chunks, streams, fuse):
    torch.manual_seed(0)
    model = randomize_bn(MobileNetV1(num_classes=7, alpha=0.25, out_indices=(0, 2, 4),
                                     tf_padding=True))
    threads = torch.get_num_threads()
    fast = deploy(model, chunks=chunks, streams=streams, fuse=fuse)
    if fuse is None and can_fuse():
        units = [m for m in fast.modules() if isinstance(m, FusedConvAct)]
        assert len(units) == 27 and units[0].attr == "hardtanh"
        assert units[0].tf_same_padding and not units[1].tf_same_padding
        assert not any(isinstance(m, nn.Conv2d) for m in fast.groups.modules())
    assert torch.get_num_threads() == threads  # the streams' single-threading stays theirs
    assert isinstance(fast, DeployedMobileNetV1) and model.training  # original not switched
    x = torch.randn(5, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        logits = fast(x)
        assert logits.shape == (5, 7)
        close(logits, model(x))
        feats = fast.forward_features(x)
        ref = model.forward_features(x)
        assert [f.shape for f in feats] == [r.shape for r in ref]
        for a, b in zip(feats, ref):
            assert a.is_contiguous(memory_format=torch.channels_last)
            close(a, b)
        assert close(fast(x[:1]), model(x[:1])) >= 0  # fewer images than streams
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    with pytest.raises(ValueError, match="chunks"):
        deploy(model, chunks=(1, 2))


def test_deployed_backbone_without_classifier():
    model = randomize_bn(MobileNetV1(num_classes=0, alpha=0.25)).eval()
    fast = deploy(model, channels_last=False, chunks=(1, 1, 1, 1, 1))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        close(fast(x), model(x))
    assert fast(x).shape == (3, model.num_features)


@pytest.mark.slow
@needs_ort
@pytest.mark.parametrize("features", [False, True])
def test_onnx_export_matches_onnxruntime(tmp_path, features):
    import onnx

    from mnet_backbone.deploy.export import export_onnx, verify_onnx
    torch.manual_seed(0)
    model = randomize_bn(MobileNetV1(num_classes=10, alpha=0.25, out_indices=(1, 2, 3, 4)))
    path = export_onnx(model, str(tmp_path / "m.onnx"), features=features, resolution=64)
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 17
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # A batch size other than the one exported with: the batch axis is dynamic.
    check = verify_onnx(path, model, torch.randn(3, 3, 64, 64), features=features)
    assert model.training  # verify switched to eval and back
    if features:
        assert list(check.shapes) == ["stage1", "stage2", "stage3", "stage4"]
        assert check.shapes["stage4"] == (3, 256, 2, 2)
    else:
        assert check.shapes == {"logits": (3, 10)}
    assert check.max_rel < 1e-4

    # The batching strategy on ONNX Runtime: parallel single-threaded streams, chunks.
    from mnet_backbone.deploy.runtime import OrtModel
    x = torch.randn(5, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        ref = model.forward_features(x) if features else [model(x)]
    for streams, chunk in ((1, 0), (2, 2)):
        outs = OrtModel(path, threads=1, streams=streams, chunk=chunk, all_outputs=True)(x)
        for out, r in zip(outs, ref):
            close(torch.from_numpy(out), r)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export(tmp_path):
    from mnet_backbone.deploy.export import export_torchscript, verify_torchscript
    model = randomize_bn(MobileNetV1(num_classes=10, alpha=0.25, out_indices=(2, 4)))
    x = torch.randn(2, 3, 64, 64)
    for features in (False, True):
        path = export_torchscript(model, str(tmp_path / f"m{features}.pt"), features=features)
        assert verify_torchscript(path, model, x, features=features) < 1e-4
    loaded = torch.jit.load(str(tmp_path / "mFalse.pt"))
    assert [f.shape[1] for f in loaded.forward_features(x)] == [64, 256]


class _TupleFace(MobileNetV1):
    """A face's subclass whose forward is the features as a tuple (mmdet's), not scriptable."""

    def forward(self, x):
        return tuple(self.forward_features(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_of_a_subclass_keeps_the_core_forwards(tmp_path):
    from mnet_backbone.deploy.export import export_torchscript
    model = randomize_bn(_TupleFace(num_classes=0, alpha=0.25, out_indices=(1, 3),
                                    tf_padding=True)).eval()
    x = torch.randn(2, 3, 64, 64)
    loaded = torch.jit.load(export_torchscript(model, str(tmp_path / "m.pt")))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), MobileNetV1.forward(model, x), atol=1e-4,
                                   rtol=1e-4)
        for got, ref in zip(loaded.forward_features(x), model.forward_features(x)):
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (list(loaded.out_indices), list(loaded.out_channels), loaded.tf_padding) == (
        [1, 3], model.out_channels, True)
    assert not loaded.training


@pytest.mark.slow
@needs_ort
def test_int8_runs_and_agrees_with_fp32(tmp_path):
    """A tiny classifier whose decisions mean something (it names an image's dominant colour
    channel; tests/fixtures/make_classifier_fixture.py trained it once, so the result does not
    depend on how a short run goes on this CPU). The benchmark measures agreement on a properly
    trained 1.0 MobileNetV1 (tools/benchmark.py), test_int8_real on Google's real weights."""
    import onnx

    from fixtures.make_classifier_fixture import MODEL, OUT, colour_set
    from mnet_backbone.deploy.data import accuracy, normalize
    from mnet_backbone.deploy.export import export_onnx, ort_session
    from mnet_backbone.deploy.quant import agreement, quantize_int8
    images, labels = colour_set()
    model = MobileNetV1(**MODEL)
    model.load_state_dict({k: v.float() for k, v in torch.load(OUT).items()})
    model.eval()
    test_images, test_labels = images[256:], labels[256:]
    assert accuracy(model, test_images, test_labels) > 0.5  # the fixture: 0.62 (chance ~0.35)

    fp32 = export_onnx(model, str(tmp_path / "fp32.onnx"), resolution=64)
    int8 = quantize_int8(fp32, str(tmp_path / "int8.onnx"), normalize(images[:32]))
    ops = {n.op_type for n in onnx.load(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert os.path.getsize(int8) < 0.5 * os.path.getsize(fp32)  # int8 weights
    session = ort_session(int8, threads=1)
    assert session.run(None, {"input": normalize(test_images[:5]).numpy()})[0].shape == (5, 3)
    result = agreement(fp32, int8, normalize(test_images), test_labels, batch=16, threads=1)
    assert result.images == 64
    assert result.top1_agreement >= 0.85, result


@pytest.mark.slow
@needs_ort
@pytest.mark.parametrize("features", [False, True])
def test_classifier_and_backbone_files_on_every_backend(tmp_path, features):
    """The classifier / backbone-feature files run on ONNX Runtime and OpenVINO (fp32, bf16
    where the CPU has it) with the PyTorch model's outputs; ``auto`` picks one of them."""
    from mnet_backbone.deploy import backends
    from mnet_backbone.deploy.export import export_onnx
    torch.manual_seed(0)
    model = randomize_bn(MobileNetV1(num_classes=10, alpha=0.25, out_indices=(2, 4))).eval()
    path = export_onnx(model, str(tmp_path / "m.onnx"), features=features, resolution=64)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = model.forward_features(x) if features else [model(x)]
    for backend in backends.available_backends():
        outs = backends.load(path, backend, "fp32", threads=1)(x.numpy())
        assert len(outs) == len(ref)
        for out, r in zip(outs, ref):
            close(torch.from_numpy(out), r)
    if has("openvino") and backends.bf16_support()["supported"]:
        out = backends.load(path, "openvino", "bf16", threads=1)(x.numpy())[-1]
        diff = float((torch.from_numpy(out) - ref[-1]).abs().max())
        assert 0 < diff < 0.1 * float(ref[-1].abs().max())  # bf16 really ran, and roughly agrees
    best, medians = backends.choose_backend(path, "fp32", 3, 1, cache=str(tmp_path / "c.json"),
                                            repeats=2)
    assert best in medians and set(medians) == set(backends.available_backends())


def tiny_onnx(path: str) -> str:
    """A one-convolution ONNX file with a dynamic batch axis, written directly (no export)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["out"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def fake_timer(ms_per_candidate, seen):
    """time_interleaved's stand-in: each runner runs once (so every candidate really opened and
    computes), then the given milliseconds come back as its times. Deterministic."""
    def timer(runners, x, rounds, calls, warmup=2, pause=0.02):
        seen.append(sorted(runners))
        for run in runners.values():
            assert run(x)[0].shape == (len(x), 4, 8, 8)
        return {name: [ms_per_candidate[name] / 1e3] * rounds for name in runners}
    return timer


needs_both_backends = pytest.mark.skipif(
    not (has("onnx") and has("onnxruntime") and has("openvino")),
    reason="onnx, onnxruntime and openvino are the deploy extra")


@needs_both_backends
@pytest.mark.parametrize("winner", ["openvino/default", "onnxruntime/default",
                                    "openvino/own-static", "onnxruntime/own"])
def test_auto_takes_the_runtimes_defaults_where_they_measure_faster(tmp_path, monkeypatch,
                                                                    winner):
    """``auto`` measures every configuration of every backend, the runtimes' own defaults on
    the same file included, and keeps the package's settings only where they are faster; the
    runner says which configuration won and what was measured (fake timer: no timing here)."""
    from mnet_backbone.deploy import backends
    path = tiny_onnx(str(tmp_path / "tiny.onnx"))
    labels = ["onnxruntime/own", "onnxruntime/default", "openvino/own", "openvino/own-static",
              "openvino/default"]
    assert backends.candidate_labels() == labels
    ms = {label: 5.0 + i for i, label in enumerate(labels)}
    ms[winner] = 1.0
    seen = []
    monkeypatch.setattr(backends, "time_interleaved", fake_timer(ms, seen))
    cache = str(tmp_path / "choice.json")
    runner = backends.open_model(path, "auto", "fp32", threads=1, batch=2, cache=cache)
    assert seen == [sorted(labels)]  # every candidate measured, in one interleaved run
    assert (runner.backend, runner.config) == tuple(winner.split("/"))
    choice = runner.choice
    assert choice.label == winner and choice.median_ms == ms and not choice.cached
    assert winner in runner.describe() and "configuration" in runner.describe()
    # The cache keeps the configuration: the next open measures nothing and runs the same.
    again = backends.open_model(path, "auto", "fp32", threads=1, batch=2, cache=cache)
    assert len(seen) == 1 and again.config == runner.config and again.choice.cached
    # choose_backend: the winning backend, each backend's best configuration.
    backend, medians = backends.choose_backend(path, "fp32", 2, 1, cache=cache)
    assert backend == runner.backend and medians[backend] == 1.0
    assert medians == {b: min(v for k, v in ms.items() if k.startswith(b + "/"))
                       for b in ("onnxruntime", "openvino")}


@needs_both_backends
def test_every_backend_configuration_computes_the_same(tmp_path):
    import numpy as np

    from mnet_backbone.deploy import backends
    path = tiny_onnx(str(tmp_path / "tiny.onnx"))
    rng = np.random.default_rng(1)
    x2, x3 = (rng.standard_normal((n, 3, 8, 8)).astype(np.float32) for n in (2, 3))
    ref = backends.load(path, "onnxruntime", "fp32", threads=1)
    assert ref.config == "own" and ref.choice is None
    for backend, configs in backends.BACKEND_CONFIGS.items():
        for config in configs:
            runner = backends.load(path, backend, "fp32", 1, config, batch=2)
            assert (runner.backend, runner.config) == (backend, config)
            for x in (x2, x3):  # own-static: batch 2 static, batch 3 on the dynamic model
                np.testing.assert_allclose(runner(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown configuration 'own-static' for onnxruntime"):
        backends.load(path, "onnxruntime", "fp32", 1, "own-static")
    with pytest.raises(ValueError, match="unknown configuration 'fast'"):
        backends.candidate_labels(["openvino/fast"])


@needs_both_backends
def test_auto_says_which_candidate_could_not_open(tmp_path, monkeypatch):
    from mnet_backbone.deploy import backends
    path = tiny_onnx(str(tmp_path / "tiny.onnx"))
    real = backends._ov_runner

    def no_static(path, precision, threads, config, shape):
        if config == "own-static":
            raise RuntimeError("Exception from src/core: cannot reshape\nmore detail")
        return real(path, precision, threads, config, shape)
    monkeypatch.setattr(backends, "_ov_runner", no_static)
    ms = {"openvino/own": 3.0, "openvino/default": 2.0}
    monkeypatch.setattr(backends, "time_interleaved", fake_timer(ms, []))
    choice = backends.choose(path, "fp32", 1, 1, candidates=["openvino"],
                             cache=str(tmp_path / "c.json"))
    assert choice.label == "openvino/default" and set(choice.median_ms) == set(ms)
    assert choice.skipped == {"openvino/own-static": "Exception from src/core: cannot reshape"}
    assert "openvino/own-static skipped: Exception from src/core" in choice.describe()
