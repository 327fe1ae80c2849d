"""TensorFlow frozen graphs (Google's TF-slim release format) as a weight source, and Google's
real ImageNet weights on real photos.

* The real graph: ``retrained_graph.pb`` of the PyPI package ``nudity`` 0.2.3 (Google's
  ``mobilenet_v1_1.0_224`` ImageNet weights, 1001 classes), cached once by ``tools/install.sh``.
  Parity is against logits TensorFlow 2.21 computed once from that graph on the same inputs and
  stored with their provenance in ``fixtures/tf_graph_reference.json`` (``fixtures/
  make_tf_graph_reference.py`` made it); TensorFlow is not needed here.
* Synthetic graphs of other widths, BN forms, scopes and heads are written in the TF-slim layout
  by a small GraphDef encoder below, from random core models, and must give the same logits.
"""
import io
import json
import os
import struct
import tarfile

import numpy as np
import pytest
import torch
from torch import nn

from mnet_backbone import MobileNetV1
from mnet_backbone.weights import (CorruptWeightsError, IncompatibleWeightsError, load_weights,
                                   mobilenet_v1)
from mnet_backbone.weights.cli import main as convert_main
from test_weights import _randomize_bn_torch
from mnet_backbone.weights.convert import convert_file
from mnet_backbone.weights.layout import block_prefixes
from mnet_backbone.weights.graph_def import parse_graph_def, read_tf_graph
from mnet_backbone.weights.tf_graph import IMAGENET_GRAPH, from_tf_graph

from real_weights import PHOTOS, photo_batch, real_graph_path, real_model

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY_TOL = 5e-4  # fp32 PyTorch vs fp32 TensorFlow, plus the 6-digit rounding of the stored logits


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


# --- a minimal GraphDef encoder (the inverse of the reader's wire format) ----------------------

def _varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    shape = b"".join(_field(2, _varint(1 << 3) + _varint(d)) for d in array.shape)
    return _varint(1 << 3) + _varint(1) + _field(2, shape) + _field(4, array.tobytes())


def _attr(value):
    if isinstance(value, np.ndarray):
        return _field(8, _tensor(value))
    if isinstance(value, bytes):
        return _field(2, value)
    if isinstance(value, float):
        return _varint(4 << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, list):  # ListValue.i, packed
        return _field(1, _field(3, b"".join(_varint(v) for v in value)))
    return _varint(3 << 3) + _varint(value)


def _node(name, op, inputs=(), **attrs):
    out = _field(1, name.encode()) + _field(2, op.encode())
    out += b"".join(_field(3, i.encode()) for i in inputs)
    for key, value in attrs.items():
        out += _field(5, _field(1, key.encode()) + _field(2, _attr(value)))
    return _field(1, out)


def slim_graph(model, fused_bn=True, scope="", padding=b"SAME", eps=1e-3, head=True,
               eps_override=None, activation="Relu6", stop_at=None):
    """A TF-slim-style frozen GraphDef of a core model (weights as Const nodes, ops with the
    attributes the reader checks); ``eps_override`` = {layer: eps} for inconsistent graphs,
    ``stop_at``: end the file before the node of that name (a cut at a node boundary)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    blocks = block_prefixes()
    nodes = [_node("input", "Placeholder", dtype=1)]
    x = "input"
    layers = [("Conv2d_0", blocks[0], False)]
    for n, block in enumerate(blocks[1:], start=1):
        layers += [(f"Conv2d_{n}_depthwise", f"{block}.dw", True),
                   (f"Conv2d_{n}_pointwise", f"{block}.pw", False)]
    unit = {name: module for name, module in model.named_modules()}
    for layer, key, depthwise in layers:
        var = f"{scope}MobilenetV1/{layer}"
        ops = f"{scope}MobilenetV1/MobilenetV1/{layer}"
        w = sd[f"{key}.conv.weight"]
        stride = unit[key].stride
        if depthwise:
            nodes.append(_node(f"{var}/depthwise_weights", "Const",
                               value=w.reshape(w.shape[0], 1, 3, 3).transpose(2, 3, 0, 1)))
            nodes.append(_node(f"{ops}/depthwise", "DepthwiseConv2dNative",
                               [x, f"{var}/depthwise_weights"], strides=[1, stride, stride, 1],
                               padding=padding, data_format=b"NHWC"))
            x = f"{ops}/depthwise"
        else:
            nodes.append(_node(f"{var}/weights", "Const", value=w.transpose(2, 3, 1, 0)))
            nodes.append(_node(f"{ops}/Conv2D", "Conv2D", [x, f"{var}/weights"],
                               strides=[1, stride, stride, 1], padding=padding,
                               data_format=b"NHWC"))
            x = f"{ops}/Conv2D"
        for tf_name, ours in (("gamma", "weight"), ("beta", "bias"),
                              ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
            nodes.append(_node(f"{var}/BatchNorm/{tf_name}", "Const",
                               value=sd[f"{key}.bn.{ours}"]))
        layer_eps = (eps_override or {}).get(layer, eps)
        bn_inputs = [x] + [f"{var}/BatchNorm/{n}" for n in ("gamma", "beta", "moving_mean",
                                                           "moving_variance")]
        if fused_bn:
            nodes.append(_node(f"{ops}/BatchNorm/FusedBatchNormV3", "FusedBatchNormV3", bn_inputs,
                               epsilon=float(layer_eps), is_training=0))
            x = f"{ops}/BatchNorm/FusedBatchNormV3"
        else:
            nodes.append(_node(f"{ops}/BatchNorm/batchnorm/add/y", "Const",
                               value=np.array(layer_eps, dtype=np.float32)))
            nodes.append(_node(f"{ops}/BatchNorm/batchnorm/add", "Add",
                               [bn_inputs[4], f"{ops}/BatchNorm/batchnorm/add/y"]))
            x = f"{ops}/BatchNorm/batchnorm/add"  # (the rest of unfused BN is not needed here)
        nodes.append(_node(f"{ops}/{activation}", activation, [x]))
        x = f"{ops}/{activation}"
    if head:
        logits = f"{scope}MobilenetV1/Logits/Conv2d_1c_1x1"
        nodes.append(_node(f"{scope}MobilenetV1/Logits/AvgPool_1a/AvgPool", "AvgPool", [x]))
        nodes.append(_node(f"{logits}/weights", "Const",
                           value=sd["fc.weight"].T.reshape(1, 1, *sd["fc.weight"].T.shape)))
        nodes.append(_node(f"{logits}/biases", "Const", value=sd["fc.bias"]))
        nodes.append(_node(f"{logits}/Conv2D", "Conv2D", [x, f"{logits}/weights"],
                           strides=[1, 1, 1, 1], padding=b"VALID", data_format=b"NHWC"))
    if stop_at is not None:
        nodes = nodes[:next(i for i, n in enumerate(nodes) if stop_at.encode() in n[:200])]
    return b"".join(nodes)


def _random_model(alpha, num_classes=1001, seed=0, eps=1e-3):
    """A core model with TF padding, random BN statistics (so BN is checked too)."""
    torch.manual_seed(seed)
    model = _randomize_bn_torch(
        MobileNetV1(alpha=alpha, num_classes=num_classes, tf_padding=True, bn_eps=eps), seed)
    if num_classes:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            model.fc.bias.copy_(torch.randn(num_classes, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """{alpha: (path of a .pb, the model it was written from)} at alpha 0.25 and 0.5."""
    root = tmp_path_factory.mktemp("tf_graphs")
    out = {}
    for alpha in (0.25, 0.5):
        model = _random_model(alpha)
        path = root / f"mobilenet_v1_{alpha}_128_frozen.pb"
        path.write_bytes(slim_graph(model))
        out[alpha] = (str(path), model)
    return out


# --- the real graph: Google's ImageNet weights ---------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(HERE, "fixtures", "tf_graph_reference.json")) as f:
        return json.load(f)


def test_real_graph_weights_load():
    path = real_graph_path()
    nodes = read_tf_graph(path)
    assert any(n.startswith("final_training_ops/") for n in nodes)  # retrain.py's layer ...
    state_dict, model_kwargs, info = from_tf_graph(nodes)
    assert not any("final" in k for k in state_dict)               # ... is not converted
    assert info == {"alpha": 1.0, "num_classes": 1001, "scope": "MobilenetV1/"}
    assert model_kwargs == {"tf_padding": True, "bn_eps": pytest.approx(1e-3),
                            "activation": "relu6"}
    own = MobileNetV1(num_classes=1001).state_dict()
    assert set(state_dict) == set(own)
    assert all(state_dict[k].shape == own[k].shape for k in own)
    assert (state_dict["stages.0.0.bn.running_var"] > 0).all()
    model = real_model()
    assert model.tf_padding and all(m.eps == pytest.approx(1e-3) for m in model.modules()
                                    if isinstance(m, nn.BatchNorm2d))


def test_real_graph_parity_with_tensorflow(reference):
    """Our logits vs TensorFlow's own run of the graph (stored in fixtures/, with provenance)."""
    path = real_graph_path()
    provenance = reference["provenance"]
    assert provenance["graph_sha256"] == IMAGENET_GRAPH.sha256  # the file that is cached
    names = list(reference["photos"])
    x, _ = photo_batch(names)
    for i, name in enumerate(names):  # the inputs TensorFlow saw
        stored = reference["photos"][name]
        assert x[i].double().sum().item() == pytest.approx(stored["input_sum"], rel=1e-6)
        assert (x[i].double() ** 2).sum().item() == pytest.approx(stored["input_sum_sq"], rel=1e-6)
    expected = torch.tensor([reference["photos"][n]["logits_1001"] for n in names])
    got = _logits(real_model(), x)
    diff = (got - expected).abs().max().item()
    print(f"\nmax |logits - TensorFlow {provenance['tensorflow']} logits| on {len(names)} photos "
          f"(real graph): {diff:.3g}", end="")
    assert diff < PARITY_TOL
    assert [int(i) for i in got.argmax(1)] == [reference["photos"][n]["top5_outputs_1001"][0]
                                               for n in names]
    # the settings matter: PyTorch padding instead of TF's changes the logits by far more
    model = mobilenet_v1(weights=path, num_classes=1001)
    from mnet_backbone.weights import apply_model_kwargs
    apply_model_kwargs(model, {"tf_padding": False}, warn=False)
    assert (_logits(model, x) - expected).abs().max() > 100 * PARITY_TOL


def test_real_photos_top1_is_the_right_class():
    """On unambiguous photos the top-1 is the right ImageNet class (1000-class head)."""
    x, names = photo_batch()
    model = real_model(drop_background=True)
    assert model.fc.out_features == 1000
    logits = _logits(model, x)
    top1 = logits.argmax(1).tolist()
    for name, index in zip(names, top1):
        print(f"\n{name}: top-1 {index}", end="")
        assert index in PHOTOS[name], f"{name}: top-1 {index}, expected one of {PHOTOS[name]}"
    # the 1001-class head is the same classifier shifted by the background output
    full = _logits(real_model(), x)
    assert torch.equal(full[:, 1:], logits)
    assert (full.argmax(1) - 1).tolist() == top1


def test_real_graph_1001_head_needs_a_choice():
    path = real_graph_path()
    with pytest.raises(IncompatibleWeightsError,
                       match=r"fc\.weight: weights \(1001, 1024\), model \(1000, 1024\).*"
                             r"drop_background=True"):
        mobilenet_v1(weights=path)
    with pytest.raises(IncompatibleWeightsError, match="needs a 1001-class head.*1000-class"):
        load_weights(MobileNetV1(num_classes=999), real_model(True).state_dict(),
                     drop_background=True)


def test_real_graph_convert_tool(tmp_path, capsys):
    path = real_graph_path()
    out = str(tmp_path / "mnet_tf_1.0_224.pth")
    assert convert_main([path, out, "--from", "tf_graph", "--drop-background"]) == 0
    printed = capsys.readouterr().out
    assert "tf_graph weights" in printed and "1000 classes" in printed
    assert "tf_padding=True" in printed and "bn_eps=0.001" in printed
    model = mobilenet_v1(weights=out)  # 1000 classes, settings from the checkpoint's meta
    x, _ = photo_batch(["chelsea"])
    assert torch.equal(_logits(model, x), _logits(real_model(True), x))
    assert convert_main([path, out, "--from", "keras"]) == 2
    assert "TensorFlow graph" in capsys.readouterr().err


def test_truncated_real_graph(tmp_path):
    data = open(real_graph_path(), "rb").read()
    cut = tmp_path / "truncated.pb"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptWeightsError, match="truncated.pb: not a well-formed TensorFlow "
                                                  "GraphDef.*claims.*truncated"):
        load_weights(MobileNetV1(num_classes=1001), str(cut))


# --- synthetic graphs: widths, BN forms, scopes, heads, archives ---------------------------------

@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_synthetic_width_parity(synthetic, alpha):
    path, source = synthetic[alpha]
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = _logits(source, x)
    assert (expected[0] - expected[1]).abs().max() > 0.1  # input-dependent logits
    model = mobilenet_v1(weights=path, alpha=alpha, num_classes=1001)
    assert (_logits(model, x) - expected).abs().max() < 1e-5
    assert from_tf_graph(read_tf_graph(path))[2]["alpha"] == alpha


def test_bn_forms_scope_eps_and_no_head(tmp_path):
    source = _random_model(0.75, num_classes=0, eps=1e-5)
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for fused in (True, False):
        path = tmp_path / f"g{fused}.pb"
        path.write_bytes(slim_graph(source, fused_bn=fused, scope="FeatureExtractor/", eps=1e-5,
                                    head=False))
        converted = convert_file(str(path))
        state_dict, model_kwargs = converted.state_dict, converted.model_kwargs
        assert model_kwargs["bn_eps"] == pytest.approx(1e-5) and "fc.weight" not in state_dict
        model = mobilenet_v1(weights=str(path), alpha=0.75, num_classes=0).eval()
        with torch.no_grad():
            assert torch.allclose(model.forward_features(x)[-1], source.forward_features(x)[-1],
                                  atol=1e-5)
    with pytest.raises(IncompatibleWeightsError, match="fc.weight.*backbone_only"):
        mobilenet_v1(weights=str(path), alpha=0.75)


def test_release_archive(synthetic, tmp_path):
    """Google's .tgz releases: the *_frozen.pb is picked among checkpoint, tflite and info files."""
    path, source = synthetic[0.25]
    archive = tmp_path / "mobilenet_v1_0.25_128.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in (("./mobilenet_v1_0.25_128.ckpt.index", b"x"),
                              ("./mobilenet_v1_0.25_128.tflite", b"y" * 100),
                              ("./mobilenet_v1_0.25_128_eval.pbtxt", b"node {}"),
                              ("./mobilenet_v1_0.25_128_frozen.pb", open(path, "rb").read()),
                              ("./mobilenet_v1_0.25_128_info.txt", b"info")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    model = mobilenet_v1(weights=str(archive), alpha=0.25, drop_background=True)
    assert model.fc.out_features == 1000
    assert torch.equal(model.fc.weight, source.fc.weight[1:])
    assert torch.equal(model.stages[4][1].pw.conv.weight, source.stages[4][1].pw.conv.weight)
    data = archive.read_bytes()
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptWeightsError, match="cut.tgz.*corrupt or truncated"):
        mobilenet_v1(weights=str(tmp_path / "cut.tgz"), alpha=0.25, num_classes=1001)
    plain_tar = tmp_path / "release.tar"  # a .tar is a graph archive only when asked for
    with tarfile.open(plain_tar, "w") as tar:
        tar.add(path, arcname="mobilenet_v1_0.25_128_frozen.pb")
    assert torch.equal(convert_file(str(plain_tar), "tf_graph").state_dict["fc.bias"],
                       source.fc.bias)
    torch.save(source.state_dict(), tmp_path / "model_best.pth.tar")  # PyTorch's habit
    assert convert_file(str(tmp_path / "model_best.pth.tar")).source == "plain"
    two = tmp_path / "two.tgz"
    with tarfile.open(two, "w:gz") as tar:
        for name in ("a.pb", "b.pb"):
            tar.add(path, arcname=name)
    with pytest.raises(CorruptWeightsError, match=r"expected one '\*_frozen.pb'.*found 2 \(a.pb, "
                                                  r"b.pb\)"):
        mobilenet_v1(weights=str(two), alpha=0.25, num_classes=1001)


# --- bad input: one clear error each -------------------------------------------------------------

def test_graph_of_another_width(synthetic):
    path, _ = synthetic[0.5]
    with pytest.raises(IncompatibleWeightsError,
                       match=r"stages\.0\.0\.conv\.weight: weights \(16, 3, 3, 3\), model "
                             r"\(32, 3, 3, 3\).*alpha=0.5.*model has alpha=1"):
        mobilenet_v1(weights=path, num_classes=1001)
    with pytest.raises(IncompatibleWeightsError, match=r"graph is MobileNetV1 alpha=0.5 "
                                                       r"\(Conv2d_0 has 16 filters.*alpha=1 asked"):
        from_tf_graph(read_tf_graph(path), alpha=1.0)


def test_not_a_mobilenet_v1_graph(tmp_path):
    other = (_node("input", "Placeholder", dtype=1)
             + _node("MobilenetV2/Conv/weights", "Const", value=np.zeros((3, 3, 3, 32), "f4"))
             + _node("MobilenetV2/Conv/Conv2D", "Conv2D", ["input", "MobilenetV2/Conv/weights"],
                     strides=[1, 2, 2, 1], padding=b"SAME"))
    (tmp_path / "v2.pb").write_bytes(other)
    with pytest.raises(IncompatibleWeightsError,
                       match=r"not a TF-slim MobileNetV1 graph: no Const node 'MobilenetV1/"
                             r"Conv2d_0/weights'.*3 nodes are in the scopes MobilenetV2 \(2\), "
                             r"input \(1\), 1 convolutions"):
        load_weights(MobileNetV1(), str(tmp_path / "v2.pb"))
    (tmp_path / "garbage.pb").write_bytes(b"\xff" * 64)
    with pytest.raises(CorruptWeightsError, match="not a well-formed TensorFlow GraphDef"):
        load_weights(MobileNetV1(), str(tmp_path / "garbage.pb"))
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(CorruptWeightsError, match="no nodes"):
        convert_file(str(tmp_path / "empty.pb"))


def test_graph_settings_that_do_not_fit(tmp_path):
    source = _random_model(0.25)
    cases = {
        "valid": (dict(padding=b"VALID"), "'VALID' padding; TF-slim MobileNetV1 uses 'SAME'"),
        "mixed_eps": (dict(eps_override={"Conv2d_5_pointwise": 1e-5}),
                      r"different BatchNorm epsilons: 0.001.*\(first at Conv2d_0\), 1e-05.*"
                      r"Conv2d_5_pointwise"),
        "relu": (dict(activation="Elu"), "Conv2d_0 has activation ops none; expected one Relu6"),
    }
    quant = _node("MobilenetV1/MobilenetV1/Conv2d_0/act_quant/FakeQuantWithMinMaxVars",
                  "FakeQuantWithMinMaxVars", ["MobilenetV1/MobilenetV1/Conv2d_0/Relu6"])
    cases["quant"] = ({}, "quantization-aware graph \\(1 FakeQuant nodes.*not \\*_quant.tgz")
    for name, (kwargs, message) in cases.items():
        path = tmp_path / f"{name}.pb"
        path.write_bytes(slim_graph(source, **kwargs) + (quant if name == "quant" else b""))
        with pytest.raises(IncompatibleWeightsError, match=message):
            convert_file(str(path))
    # a graph cut at a node boundary parses, but a layer is missing
    data = slim_graph(source, stop_at="MobilenetV1/Conv2d_7_depthwise/depthwise_weights")
    assert 50 < len(parse_graph_def(data)) < len(parse_graph_def(slim_graph(source)))
    (tmp_path / "cut.pb").write_bytes(data)
    with pytest.raises(IncompatibleWeightsError,
                       match="no node 'MobilenetV1/Conv2d_7_depthwise/depthwise_weights'.*"
                             "truncated"):
        convert_file(str(tmp_path / "cut.pb"))


# --- mmdet: mnet://<graph> -----------------------------------------------------------------------

def test_mmdet_mnet_scheme_reads_graphs(synthetic, mmdet_models):
    path, source = synthetic[0.25]
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
    backbone = mmdet_models.build(dict(
        type="MobileNetV1", alpha=0.25, out_indices=(3, 4),
        init_cfg=dict(type="Pretrained", checkpoint=f"mnet://{path}")))
    assert not backbone.tf_padding
    backbone.init_weights()
    assert backbone.tf_padding  # switched for the TF graph's weights
    with torch.no_grad():
        got, expected = backbone.eval()(x), source.forward_features(x)
    assert (got[-1] - expected[-1]).abs().max() < 1e-5


# --- the install step's cache (no download: a local sdist) ---------------------------------------

def test_fetch_imagenet_graph_from_sdist(tmp_path, monkeypatch):
    from mnet_backbone.weights import MissingGraphError, WeightsError, imagenet_graph_path
    from mnet_backbone.weights.tf_graph import fetch_imagenet_graph
    real = real_graph_path()
    monkeypatch.setenv("MNET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingGraphError, match="not cached.*tools/install.sh.*"
                                                "--fetch-imagenet-graph"):
        imagenet_graph_path()
    wrong = tmp_path / "wrong.tar.gz"
    with tarfile.open(wrong, "w:gz") as tar:
        info = tarfile.TarInfo(IMAGENET_GRAPH.member)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"wrong"))
    with pytest.raises(WeightsError, match="has SHA-256 .*expected 3b90af53"):
        fetch_imagenet_graph(str(wrong))
    assert os.listdir(tmp_path / "cache" / "tf_graphs") == []  # nothing half-written left
    sdist = tmp_path / "nudity-0.2.3.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tar:
        tar.add(real, arcname=IMAGENET_GRAPH.member)
    path = fetch_imagenet_graph(str(sdist))
    assert path == imagenet_graph_path() and path.startswith(str(tmp_path / "cache"))
    assert fetch_imagenet_graph() == path  # cached: no second download
