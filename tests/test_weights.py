"""Pretrained weights: registry, converters with exact parity to the real source models, the
download path (local HTTP server), the mnet:// mmdet scheme and tools/convert_weights.py.

Nothing is downloaded from the internet: Keras 3 (torch backend) and timm build their own
MobileNetV1 with random weights (and random BN statistics, so BN is checked too), the files are
saved in the sources' real formats and served from 127.0.0.1.
"""
import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading

import numpy as np
import pytest
import torch
from torch import nn

from mnet_backbone import MobileNetV1
from mnet_backbone.weights import (ENTRIES, CorruptWeightsError, HashMismatchError,
                                   IncompatibleWeightsError, UnknownEntryError, WeightEntry,
                                   WeightsDownloadError, apply_model_kwargs, cache_dir,
                                   get_entry, load_state_dict, load_weights, mobilenet_v1)
from mnet_backbone.weights.cli import main as convert_main
from mnet_backbone.weights.entries import KERAS_MODEL_KWARGS


KERAS_CASES = [(0.25, 128), (0.25, 224), (1.0, 128), (1.0, 224)]  # two alphas x two sizes
KERAS_TOL, TIMM_TOL = 1e-4, 1e-5
RESULTS = {}  # max |logit difference| per case, printed at the end of the module (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def _report_parity():
    yield
    for case, diff in RESULTS.items():
        print(f"\nmax |logits - peer logits| {case}: {diff:.3g}", end="")


def _randomize_bn_torch(model, seed=0, size=96):
    """Random BN scale/shift, then running statistics measured on random images (a train-mode
    pass with cumulative averaging), so the signal survives all 27 layers and the logits depend
    on the input: a comparison of two near-constant outputs would prove nothing."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None
        model.train()(torch.rand(4, 3, size, size, generator=g) * 2 - 1)
        for m in norms:
            m.momentum = 0.1
    return model.eval()


def _meaningful(logits):
    """Logits that differ between the two inputs of a batch by much more than the tolerance."""
    return (logits[0] - logits[1]).abs().max() > 0.1


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


# --- peers: Keras 3 (torch backend) and timm -----------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "torch"  # must be set before keras is imported
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend")
    return keras


@pytest.fixture(scope="module")
def keras_files(keras, tmp_path_factory):
    """{(alpha, res): (legacy .h5 path, NCHW input, Keras logits)} of random Keras MobileNets."""
    root = tmp_path_factory.mktemp("keras")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)  # Keras' own initialisers: reproducible numbers
    files = {}
    for alpha, res in KERAS_CASES:
        model = keras.applications.MobileNet(weights=None, alpha=alpha, input_shape=(res, res, 3),
                                             classifier_activation=None)
        # Random BN scale/shift; moving statistics measured by one training-mode pass with
        # momentum 0 (see _randomize_bn_torch), then perturbed.
        norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
        for layer in norms:
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape),
                               rng.normal(0, 0.2, beta.shape), mean, var])
            layer.momentum = 0.0
        model(rng.uniform(-1, 1, (4, res, res, 3)).astype("float32"), training=True)
        for layer in norms:
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, mean + rng.normal(0, 0.05, mean.shape),
                               var * rng.uniform(0.8, 1.25, var.shape)])
            layer.momentum = 0.99
        kernel, bias = model.get_layer("conv_preds").get_weights()
        model.get_layer("conv_preds").set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
        alpha_text = {1.0: "1_0", 0.25: "2_5"}[alpha]
        path = str(root / f"mobilenet_{alpha_text}_{res}_tf.h5")  # the published file names
        model.save(path)  # legacy HDF5: layers under model_weights, names like conv_dw_1/kernel
        x = rng.uniform(-1, 1, (2, res, res, 3)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        files[alpha, res] = (path, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
                             torch.from_numpy(y))
    return files


def _as_keras2_file(src, dst):
    """Rewrite a Keras 3 legacy file the way Keras 2's save_weights wrote the published ones:
    layers at the root, weight names like conv_dw_1/depthwise_kernel:0 and conv1_bn/gamma:0."""
    import h5py
    bn_names = ["gamma", "beta", "moving_mean", "moving_variance"]
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        root = fin["model_weights"]
        fout.attrs["layer_names"] = root.attrs["layer_names"]
        fout.attrs["keras_version"] = b"2.0.6"
        for name in root.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            group = fout.create_group(name)
            old = [n.decode() if isinstance(n, bytes) else n
                   for n in root[name].attrs["weight_names"]]
            new = []
            for i, n in enumerate(old):
                base = bn_names[i] if name.endswith("_bn") else (
                    "depthwise_kernel" if name.startswith("conv_dw") else n.split("/")[-1])
                new.append(f"{name}/{base}:0")
                group.create_dataset(new[-1], data=root[name][n][()])
            group.attrs["weight_names"] = [n.encode() for n in new]


@pytest.fixture(scope="module")
def timm_model():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return _randomize_bn_torch(timm.create_model("mobilenetv1_100", pretrained=False), size=160)


# --- registry ----------------------------------------------------------------------------------

def test_registry_entries_are_the_published_ones():
    keras = [e for e in ENTRIES.values() if e.source == "keras"]
    assert len(keras) == 16 and len(ENTRIES) == 18
    assert {(e.alpha, e.resolution) for e in keras} == {
        (a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in (224, 192, 160, 128)}
    e = get_entry("keras_0.75_160")
    assert e.url == ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
                     "mobilenet_7_5_160_tf.h5")
    assert e.model_kwargs == KERAS_MODEL_KWARGS and e.sha256 is None and e.top1 is None
    assert [get_entry(f"keras_{a}_224").top1 for a in (1.0, 0.75, 0.5, 0.25)] == [
        70.6, 68.4, 63.7, 50.6]
    assert e.mean == e.std == (0.5, 0.5, 0.5)
    t = get_entry("timm_1.0_224_ra4")
    assert t.url.endswith("timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/model.safetensors")
    assert (t.top1, t.top5, t.crop_pct, t.alpha) == (75.382, 92.312, 0.875, 1.0)
    t = get_entry("timm_1.25_224_ra4")
    assert (t.top1, t.top5, t.crop_pct, t.alpha) == (76.924, 93.234, 0.9, 1.25)
    assert get_entry(t) is t
    hash(t)  # usable in sets / enums despite the dict field


def test_unknown_entry_lists_valid_names():
    with pytest.raises(ValueError, match="keras_1.0_224.*timm_1.0_224_ra4"):
        get_entry("keras_1.0_225")
    with pytest.raises(UnknownEntryError, match="valid entries: keras_1.0_224"):
        mobilenet_v1(weights="mobilenet_v1_imagenet")


# --- Keras parity ------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha,res", KERAS_CASES)
def test_keras_parity(keras_files, alpha, res):
    path, x, expected = keras_files[alpha, res]
    model = mobilenet_v1(weights=path, alpha=alpha)  # settings of Keras weights picked up
    assert model.tf_padding and all(m.eps == 1e-3 for m in model.modules()
                                    if isinstance(m, nn.BatchNorm2d))
    got = _logits(model, x)
    diff = (got - expected).abs().max().item()
    RESULTS[f"keras alpha={alpha} {res}px"] = diff
    assert _meaningful(expected) and diff < KERAS_TOL


def test_keras_padding_matters(keras_files):
    path, x, expected = keras_files[0.25, 128]
    model = mobilenet_v1(weights=path, alpha=0.25)
    apply_model_kwargs(model, {"tf_padding": False}, warn=False)
    assert (_logits(model, x) - expected).abs().max() > 0.1


def test_keras2_layout_and_auto_switch(keras_files, tmp_path):
    path, x, expected = keras_files[1.0, 128]
    keras2 = str(tmp_path / "mobilenet_1_0_128_tf.h5")
    _as_keras2_file(path, keras2)
    model = MobileNetV1(alpha=1.0)  # default PyTorch padding and BN eps
    with pytest.warns(UserWarning, match="tf_padding=True, bn_eps=0.001"):
        load_weights(model, keras2)
    assert (_logits(model, x) - expected).abs().max() < KERAS_TOL


def test_keras_forced_settings_conflict(keras_files):
    path = keras_files[0.25, 128][0]
    with pytest.raises(IncompatibleWeightsError, match="need tf_padding=True.*tf_padding=False"):
        mobilenet_v1(weights=path, alpha=0.25, tf_padding=False)
    with pytest.raises(IncompatibleWeightsError, match="ReLU6.*ReLU"):
        load_weights(MobileNetV1(alpha=0.25, activation="relu"), path)


def test_mismatch_names_first_layer_and_shapes(keras_files):
    path = keras_files[0.25, 128][0]
    with pytest.raises(IncompatibleWeightsError,
                       match=r"stages\.0\.0\.conv\.weight: weights \(8, 3, 3, 3\), model "
                             r"\(16, 3, 3, 3\).*alpha=0.25"):
        load_weights(MobileNetV1(alpha=0.5), path)
    with pytest.raises(IncompatibleWeightsError, match=r"fc\.weight: weights \(1000, 256\), "
                                                       r"model \(10, 256\).*backbone_only"):
        load_weights(MobileNetV1(alpha=0.25, num_classes=10), path)
    with pytest.raises(IncompatibleWeightsError, match="fc.weight.*backbone_only"):
        load_weights(MobileNetV1(alpha=0.25, num_classes=0), path)


def test_backbone_only(keras_files):
    path, x, _ = keras_files[0.25, 128]
    reference = mobilenet_v1(weights=path, alpha=0.25).eval()
    for model in (mobilenet_v1(weights=path, alpha=0.25, num_classes=10, backbone_only=True),
                  mobilenet_v1(weights=path, alpha=0.25, num_classes=0, backbone_only=True)):
        with torch.no_grad():
            assert torch.equal(model.eval().forward_features(x)[-1],
                               reference.forward_features(x)[-1])
    assert model.fc.__class__ is nn.Identity


def test_keras3_native_weights_file_is_refused(keras, tmp_path):
    model = keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(128, 128, 3))
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    with pytest.raises(CorruptWeightsError, match="native.*model.save\\('mobilenet.h5'\\)"):
        load_weights(MobileNetV1(alpha=0.25), path)


# --- timm, sequential and plain state dicts ----------------------------------------------------

def test_timm_parity_safetensors(timm_model, tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / "model.safetensors")  # the file timm's hub entries hold
    save_file(timm_model.state_dict(), path)
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    expected = _logits(timm_model, x)
    model = mobilenet_v1(weights=path)
    diff = (_logits(model, x) - expected).abs().max().item()
    RESULTS["timm mobilenetv1_100 160px"] = diff
    assert _meaningful(expected) and diff < TIMM_TOL
    with pytest.raises(IncompatibleWeightsError, match="need tf_padding=False"):
        mobilenet_v1(weights=path, tf_padding=True)


def test_timm_125_state_dict():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    peer = _randomize_bn_torch(timm.create_model("mobilenetv1_125", pretrained=False), 1)
    x = torch.randn(2, 3, 96, 96)
    assert _meaningful(_logits(peer, x))
    model = MobileNetV1(alpha=1.25)
    load_weights(model, peer.state_dict())
    assert (_logits(model, x) - _logits(peer, x)).abs().max() < TIMM_TOL
    with pytest.raises(IncompatibleWeightsError, match="conv_head.*mobilenetv1_100"):
        load_weights(MobileNetV1(), {**peer.state_dict(), "conv_head.weight": torch.zeros(1)})


class SequentialMobileNet(nn.Module):
    """The nn.Sequential MobileNet many repositories use (ReLU, model.N + fc)."""

    def __init__(self, alpha=0.25, num_classes=10):
        super().__init__()
        c = [max(int(n * alpha), 8) for n in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512,
                                              512, 512, 1024, 1024)]
        strides = [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]

        def conv_bn(inp, oup, stride):
            return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(oup), nn.ReLU(inplace=True))

        def conv_dw(inp, oup, stride):
            return nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.ReLU(inplace=True), nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup), nn.ReLU(inplace=True))

        self.model = nn.Sequential(conv_bn(3, c[0], 2),
                                   *[conv_dw(c[i - 1], c[i], strides[i]) for i in range(1, 14)],
                                   nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(c[-1], num_classes)

    def forward(self, x):
        return self.fc(self.model(x).flatten(1))


def test_sequential_and_plain_layouts():
    torch.manual_seed(0)
    peer = _randomize_bn_torch(SequentialMobileNet(), size=64)
    x = torch.randn(2, 3, 64, 64)
    expected = _logits(peer, x)
    assert _meaningful(expected)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in peer.state_dict().items()}}
    model = mobilenet_v1(weights=wrapped, alpha=0.25, num_classes=10, activation="relu")
    assert (_logits(model, x) - expected).abs().max() < TIMM_TOL
    # this package's own state dict, from a detector checkpoint (backbone.) or a wrapper
    detector = {f"backbone.{k}": v for k, v in model.state_dict().items() if "fc." not in k}
    other = MobileNetV1(alpha=0.25, num_classes=10, activation="relu")
    load_weights(other, {"state_dict": detector, "meta": {}}, backbone_only=True)
    with torch.no_grad():
        assert torch.equal(other.eval().forward_features(x)[-1], model.forward_features(x)[-1])


def test_corrupt_local_files(keras_files, timm_model, tmp_path):
    from safetensors.torch import save_file
    cases = {}
    src = keras_files[0.25, 128][0]
    cases["trunc.h5"] = open(src, "rb").read()[: os.path.getsize(src) // 2]
    save_file(timm_model.state_dict(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    cases["trunc.safetensors"] = data[: len(data) // 2]
    cases["garbage.pth"] = b"not a checkpoint" * 100
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CorruptWeightsError, match="corrupt or truncated"):
            load_weights(MobileNetV1(), str(tmp_path / name))
    with pytest.raises(UnknownEntryError, match="neither a registered entry nor an existing"):
        load_weights(MobileNetV1(), str(tmp_path / "missing.pth"))


# --- the download path, against a local HTTP server ----------------------------------------------

@contextlib.contextmanager
def serve(root):
    """An HTTP server for the folder ``root`` on 127.0.0.1 (never the internet): ``(base URL,
    the list of paths requested so far)``."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(keras_files, tmp_path_factory):
    """Serves the Keras files (and a truncated one) on 127.0.0.1; records the requested paths."""
    root = tmp_path_factory.mktemp("served")
    for path, _, _ in keras_files.values():
        shutil.copy(path, root)
    src = keras_files[0.25, 128][0]
    (root / "truncated.h5").write_bytes(open(src, "rb").read()[:4096])
    with serve(root) as (base, requests):
        yield base, requests, root


def _entry(url, name="test_keras_0.25_128", **kw):
    fields = dict(name=name, url=url, source="keras", license="test", alpha=0.25,
                  resolution=128, num_classes=1000, top1=None, top5=None, sha256=None,
                  model_kwargs=dict(KERAS_MODEL_KWARGS))
    fields.update(kw)
    return WeightEntry(**fields)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_download_progress_cache_and_hash(server, keras_files, torch_home, monkeypatch, capfd):
    from mnet_backbone.weights.hub import sha256sum
    base, requests, root = server
    path, x, expected = keras_files[0.25, 128]
    entry = _entry(f"{base}/mobilenet_2_5_128_tf.h5", sha256=sha256sum(path))
    monkeypatch.setitem(ENTRIES, entry.name, entry)
    before = len(requests)

    state_dict = load_state_dict(entry.name)
    assert len(requests) == before + 1
    assert "100%" in capfd.readouterr().err  # the progress bar
    cached = os.path.join(cache_dir(), entry.filename)
    assert cached.startswith(str(torch_home)) and os.path.isfile(cached)
    assert os.path.isfile(os.path.join(cache_dir(), f"{entry.name}.pth"))

    again = load_state_dict(entry.name, progress=False)  # converted cache: no request
    os.remove(os.path.join(cache_dir(), f"{entry.name}.pth"))
    model = mobilenet_v1(weights=entry.name, progress=False)  # raw cache: converted again
    assert len(requests) == before + 1
    assert all(torch.equal(state_dict[k], again[k]) for k in state_dict)
    assert (_logits(model, x) - expected).abs().max() < KERAS_TOL

    bad = _entry(entry.url, name="test_bad_hash", sha256="0" * 64)
    with pytest.raises(HashMismatchError, match="expected 0000.*deleted.*check_hash=False"):
        load_state_dict(bad, progress=False)
    assert sorted(os.listdir(cache_dir())) == sorted([entry.filename, f"{entry.name}.pth"])
    assert load_state_dict(bad, progress=False, check_hash=False).keys() == state_dict.keys()


def test_download_errors(server, torch_home):
    base, _, _ = server
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(WeightsDownloadError, match="offline.*local path") as info:
        load_state_dict(_entry(f"http://127.0.0.1:{closed}/m.h5"), progress=False)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained trace
    with pytest.raises(WeightsDownloadError, match="HTTP 404"):
        load_state_dict(_entry(f"{base}/missing.h5"), progress=False)
    with pytest.raises(CorruptWeightsError, match="corrupt or truncated.*was deleted"):
        load_state_dict(_entry(f"{base}/truncated.h5", name="test_trunc"), progress=False)
    assert not os.listdir(cache_dir())  # nothing broken left behind


# --- mmdet: the mnet:// scheme, and tools/convert_weights.py --------------------------------------

def test_mmdet_mnet_scheme(mmdet_models, server, keras_files, torch_home, monkeypatch):
    base, _, _ = server
    path, x, _ = keras_files[0.25, 128]
    entry = _entry(f"{base}/mobilenet_2_5_128_tf.h5", name="test_mmdet_0.25_128")
    monkeypatch.setitem(ENTRIES, entry.name, entry)
    reference = mobilenet_v1(weights=path, alpha=0.25).eval()
    with torch.no_grad():
        expected = reference.forward_features(x)
    for checkpoint in (f"mnet://{entry.name}", f"mnet://{path}"):
        backbone = mmdet_models.build(dict(
            type="MobileNetV1", alpha=0.25, out_indices=(4,),
            init_cfg=dict(type="Pretrained", checkpoint=checkpoint)))
        assert not backbone.tf_padding
        backbone.init_weights()
        assert backbone.tf_padding  # switched for the Keras weights
        with torch.no_grad():
            assert (backbone.eval()(x)[0] - expected[0]).abs().max() < 1e-5
    wrong = mmdet_models.build(dict(type="MobileNetV1", alpha=0.5, init_cfg=dict(
        type="Pretrained", checkpoint=f"mnet://{entry.name}")))
    with pytest.raises(IncompatibleWeightsError, match=r"stages\.0\.0\.conv\.weight"):
        wrong.init_weights()
    with pytest.raises(UnknownEntryError, match="valid entries"):
        mmdet_models.build(dict(type="MobileNetV1", init_cfg=dict(
            type="Pretrained", checkpoint="mnet://no_such_weights"))).init_weights()


def test_convert_tool(mmdet_models, keras_files, tmp_path, capsys):
    path, x, expected = keras_files[0.25, 128]
    out = str(tmp_path / "mnet_keras_0.25_128.pth")
    assert convert_main([path, out, "--from", "keras"]) == 0
    assert "tf_padding=True" in capsys.readouterr().out
    # torchvision-style builders / plain PyTorch: settings come from the checkpoint's meta
    model = mobilenet_v1(weights=out, alpha=0.25)
    assert (_logits(model, x) - expected).abs().max() < KERAS_TOL
    # mmdet's own Pretrained init with a plain path (settings given in the config)
    backbone = mmdet_models.build(dict(
        type="MobileNetV1", alpha=0.25, out_indices=(4,), tf_padding=True,
        norm_cfg=dict(type="BN", eps=1e-3), init_cfg=dict(type="Pretrained", checkpoint=out)))
    backbone.init_weights()
    with torch.no_grad():
        assert (backbone.eval()(x)[0] - model.forward_features(x)[-1]).abs().max() < 1e-5
    assert convert_main([path, out, "--from", "timm"]) == 2
    assert "Keras HDF5 file" in capsys.readouterr().err


# --- one resolver: entries, files, ~ paths, URLs, state dicts -------------------------------------

def _plain_checkpoint(path, alpha=0.25, seed=3, **model_kwargs):
    """This package's converted format (what convert_to_file writes), settings in its meta."""
    from mnet_backbone.weights.hub import save_checkpoint
    torch.manual_seed(seed)
    state = MobileNetV1(alpha=alpha, **model_kwargs).state_dict()
    save_checkpoint(str(path), state, {"source": "plain", "model_kwargs": model_kwargs})
    return state


@pytest.fixture
def plain_server(tmp_path):
    """Serves tmp_path/served on 127.0.0.1 (never the internet); records the requested paths."""
    root = tmp_path / "served"
    root.mkdir()
    with serve(root) as (base, requests):
        yield base, requests, root


def test_locate_kinds_and_precedence(tmp_path, monkeypatch, torch_home):
    from mnet_backbone.weights import Located, locate
    entry = ENTRIES["keras_0.25_128"]
    assert locate("keras_0.25_128") == Located("entry", "keras_0.25_128", entry=entry)
    assert locate(entry).entry is entry and locate(entry).key[:2] == ("entry", entry.name)
    # a registered name wins over a file of the same name; ./name reaches the file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keras_0.25_128").write_bytes(b"x")
    assert locate("keras_0.25_128").kind == "entry"
    here = locate("./keras_0.25_128")
    assert (here.kind, here.path) == ("file", str(tmp_path / "keras_0.25_128"))
    # ~ is expanded, the path made absolute; the description keeps what was written
    monkeypatch.setenv("HOME", str(tmp_path))
    home = locate("~/keras_0.25_128")
    assert home.path == here.path and home.given == "~/keras_0.25_128"
    # a file's cache key follows its mtime (an edited file is other weights)
    key = home.key
    os.utime(home.path, (1, 1))
    assert home.key != key and home.key == ("file", home.path, 1)
    url = locate("https://example.invalid/dir/mobilenet.h5?download=1")  # nothing is fetched
    assert url.kind == "url" and url.url.endswith("?download=1")
    assert url.path.startswith(cache_dir()) and url.path.endswith("-mobilenet.h5")
    assert url.key == ("url", url.url) and locate(url) is url
    assert locate({"stages.0.0.conv.weight": torch.zeros(1)}).kind == "state_dict"
    with pytest.raises(UnknownEntryError, match="neither a registered entry nor an existing "
                                                "file.*valid entries: keras_1.0_224"):
        locate("no_such_weights.pth")
    with pytest.raises(UnknownEntryError, match="neither"):
        locate(str(tmp_path))  # a folder is not a weights file
    with pytest.raises(TypeError, match="got int"):
        locate(3)


def test_home_path_weights(tmp_path, monkeypatch):
    from mnet_backbone.weights import locate
    from mnet_backbone.weights.load import load
    monkeypatch.setenv("HOME", str(tmp_path))
    state = _plain_checkpoint(tmp_path / "w.pth", tf_padding=True, bn_eps=1e-3)
    loaded = load(locate("~/w.pth"))
    assert loaded.model_kwargs == {"tf_padding": True, "bn_eps": 1e-3}
    assert loaded.description == "plain weights from ~/w.pth"
    model = mobilenet_v1(weights="~/w.pth", alpha=0.25)
    assert model.tf_padding
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_url_weights_download_once_then_convert(plain_server, torch_home, tmp_path):
    from mnet_backbone.weights import convert_to_file, locate
    from mnet_backbone.weights.load import load
    base, requests, root = plain_server
    state = _plain_checkpoint(root / "mnet_0.25.pth", tf_padding=True, bn_eps=1e-3)
    url = f"{base}/mnet_0.25.pth"
    model = mobilenet_v1(weights=url, alpha=0.25, progress=False)
    assert requests == ["/mnet_0.25.pth"]
    assert model.tf_padding and all(torch.equal(model.state_dict()[k], v)
                                    for k, v in state.items())
    assert os.path.isfile(locate(url).path)
    # the cached copy is used: no second request, from any entry point
    loaded = load(locate(url), progress=False)
    assert loaded.description == f"plain weights from {url}" and loaded.model_kwargs["tf_padding"]
    load_weights(MobileNetV1(alpha=0.25, tf_padding=True, bn_eps=1e-3), url, progress=False)
    meta = convert_to_file(url, str(tmp_path / "out.pth"))
    assert requests == ["/mnet_0.25.pth"]
    assert meta["converted_from"] == "mnet_0.25.pth" and meta["stem_channels"] == 8
    with pytest.raises(IncompatibleWeightsError, match="need tf_padding=True"):
        mobilenet_v1(weights=url, alpha=0.25, tf_padding=False)


def test_url_weights_errors(plain_server, torch_home):
    base, requests, root = plain_server
    with pytest.raises(WeightsDownloadError, match="HTTP 404"):
        mobilenet_v1(weights=f"{base}/missing.pth", progress=False)
    (root / "page.pth").write_bytes(b"<!DOCTYPE html><html>not weights</html>")
    with pytest.raises(CorruptWeightsError, match="HTML page.*was deleted"):
        mobilenet_v1(weights=f"{base}/page.pth", progress=False)
    assert not [n for n in os.listdir(cache_dir()) if not n.endswith(".partial")]
    # a damaged cached copy is downloaded once more instead of failing
    _plain_checkpoint(root / "good.pth")
    from mnet_backbone.weights import locate
    cached = locate(f"{base}/good.pth").path
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with open(cached, "wb") as f:
        f.write(b"truncated")
    before = len(requests)
    mobilenet_v1(weights=f"{base}/good.pth", alpha=0.25, progress=False)
    assert len(requests) == before + 1


def test_convert_to_file_uses_the_same_precedence(tmp_path, monkeypatch):
    from mnet_backbone.weights import convert_to_file
    from mnet_backbone.weights import load as weights_load
    monkeypatch.chdir(tmp_path)
    _plain_checkpoint(tmp_path / "keras_0.25_128", alpha=0.5)
    fake = MobileNetV1(alpha=0.25).state_dict()
    monkeypatch.setattr(weights_load, "load_state_dict", lambda entry, *a: fake)
    assert convert_to_file("keras_0.25_128", "e.pth")["source"] == "keras"  # the entry wins
    meta = convert_to_file("./keras_0.25_128", "f.pth")  # ./name: the file
    assert meta["source"] == "plain" and meta["stem_channels"] == 16
    with pytest.raises(UnknownEntryError, match="neither a registered entry nor an existing"):
        convert_to_file("missing.pth", "g.pth")
    with pytest.raises(IncompatibleWeightsError, match="is a 'keras' entry, not 'timm'"):
        convert_to_file("keras_0.25_128", "h.pth", source="timm")


# --- one place for the settings weights need ---------------------------------------------------

def test_settings_merge_rules():
    from functools import partial
    from mnet_backbone.weights.settings import merge_kwargs, required_kwargs
    entry = ENTRIES["keras_0.25_128"]
    assert required_kwargs(entry) == dict(alpha=0.25, num_classes=1000, **KERAS_MODEL_KWARGS)
    assert required_kwargs(entry, drop_background=True)["num_classes"] == 999
    assert "num_classes" not in required_kwargs(entry, backbone_only=True)
    merged = merge_kwargs({"dropout": 0.2}, required_kwargs(entry))
    assert merged == {"dropout": 0.2, **required_kwargs(entry)}
    with pytest.raises(IncompatibleWeightsError, match=r"w need alpha=0\.25, but alpha=1\.0 was "
                                                       r"given; leave it out$"):
        merge_kwargs({"alpha": 1.0}, required_kwargs(entry), "w")

    def mismatch(what, key, wanted, given):
        return KeyError(f"{what}/{key}/{wanted}/{given}")

    with pytest.raises(KeyError, match="w/num_classes/1000/10"):  # the caller's type and text
        merge_kwargs({"num_classes": 10}, required_kwargs(entry), "w", mismatch)
    # a given norm_layer gets the weights' bn_eps (the core ignores bn_eps with a norm_layer)
    norm = merge_kwargs({"norm_layer": nn.BatchNorm2d}, {"bn_eps": 1e-3})["norm_layer"]
    assert isinstance(norm, partial) and norm(4).eps == 1e-3
    again = merge_kwargs({"norm_layer": norm, "bn_eps": 1e-3}, {})["norm_layer"]
    assert again.func is nn.BatchNorm2d and again.keywords == {"eps": 1e-3}


def test_core_builder_checks_before_download_and_passes_eps_to_norm(monkeypatch):
    FrozenBatchNorm2d = pytest.importorskip("torchvision.ops.misc").FrozenBatchNorm2d
    from mnet_backbone.weights import load as weights_load
    calls = []

    def load_state_dict(entry, progress=True, check_hash=True):
        calls.append(entry.name)
        return MobileNetV1(alpha=entry.alpha, **entry.model_kwargs).state_dict()

    monkeypatch.setattr(weights_load, "load_state_dict", load_state_dict)
    with pytest.raises(IncompatibleWeightsError, match="need alpha=0.25"):  # alpha is checked first
        mobilenet_v1(weights="keras_0.25_128", alpha=1.0, num_classes=10)
    assert calls == []
    model = mobilenet_v1(weights="keras_0.25_128", norm_layer=FrozenBatchNorm2d)
    assert calls == ["keras_0.25_128"]
    assert {m.eps for m in model.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-3}


def test_weights_import_no_face():
    """The weights package is below every face: none of its modules imports one (mmengine only
    lazily, for the message-hub objects of Runner checkpoints)."""
    import ast
    import pathlib
    faces = ("mmdet", "mmpretrain", "mmcv", "torchvision", "mnet_backbone.mmdet_plugin",
             "mnet_backbone.mmpretrain_plugin", "mnet_backbone.openmmlab",
             "mnet_backbone.tv_models")
    import mnet_backbone.weights as package
    folder = pathlib.Path(package.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                package = {0: "", 1: "mnet_backbone.weights.", 2: "mnet_backbone."}[node.level]
                names = [package + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(faces), f"{path.name}:{node.lineno} imports {name}"
                if name.startswith("mmengine"):
                    assert path.name == "hub.py" and node.col_offset > 0, (path.name, name)


def test_weights_modules_descend_without_a_cycle():
    """Each module of the weights package imports its siblings at the top, and the imports form
    no cycle (before: convert <-> resolve, tf_graph -> convert, held by imports in functions)."""
    import ast
    import pathlib
    import mnet_backbone.weights as package
    folder = pathlib.Path(package.__file__).parent
    graph = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = set(tree.body)
        siblings = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node in top, f"{path.name}:{node.lineno} imports a sibling in a function"
                modules = [node.module] if node.module else [a.name for a in node.names]
                siblings.update(m.split(".")[0] for m in modules)
        graph[path.stem] = siblings - {path.stem}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,)))
                   for n in graph.get(start, ()) if n != "__init__")

    for name in graph:
        if name not in ("__init__", "__main__"):
            assert not reaches(name, name), f"weights.{name} imports itself through a cycle"


def test_one_fit_check_with_each_face_wording():
    """state_dicts.check_state_dict is the one check: the weights' wording and a face's own
    (explain) ride on it; strict=False looks at shapes only; a num_batches_tracked that a
    FrozenBatchNorm2d drops on load is no misfit."""
    from mnet_backbone.state_dicts import CheckpointMismatchError, check_state_dict
    from mnet_backbone.weights.loaded import check_fit
    FrozenBatchNorm2d = pytest.importorskip("torchvision.ops.misc").FrozenBatchNorm2d
    model = MobileNetV1(alpha=0.25, num_classes=10)
    wider = MobileNetV1(alpha=0.5, num_classes=10).state_dict()
    with pytest.raises(IncompatibleWeightsError,
                       match=r"w do not fit the model: first mismatch at stages\.0\.0\.conv\."
                             r"weight.*alpha=0\.5"):
        check_fit(model, wider, "w")
    fewer = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    check_fit(model, fewer, "w", strict=False)  # shapes only
    with pytest.raises(IncompatibleWeightsError, match="w lack 2 of the model's entries"):
        check_fit(model, fewer, "w")
    seen = []
    check_state_dict(model, wider, "w", explain=lambda misfit: seen.append(misfit))  # passes
    assert seen[0].shapes[0][:2] == ("stages.0.0.conv.weight", (16, 3, 3, 3))
    assert 0 < seen[0].fit < 1 and not seen[0].missing and not seen[0].unexpected
    with pytest.raises(CheckpointMismatchError, match="w does not fit the model"):
        check_state_dict(model, wider, "w")
    frozen = MobileNetV1(alpha=0.25, num_classes=10, norm_layer=FrozenBatchNorm2d)
    check_state_dict(frozen, model.state_dict(), "w")  # its num_batches_tracked are dropped


def test_an_entry_is_downloaded_when_its_tensors_are_first_used(monkeypatch):
    """load() of an entry knows its settings at once and downloads on first use of the tensors
    (once): build_model locates, loads, merges the settings and builds before any download."""
    from mnet_backbone.weights import load as weights_load
    from mnet_backbone.weights import locate
    from mnet_backbone.weights.settings import required_kwargs
    calls = []

    def load_state_dict(entry, progress=True, check_hash=True):
        calls.append(entry.name)
        return MobileNetV1(alpha=entry.alpha, **entry.model_kwargs).state_dict()

    monkeypatch.setattr(weights_load, "load_state_dict", load_state_dict)
    entry = ENTRIES["keras_0.25_128"]
    loaded = weights_load.load(locate(entry.name))
    assert required_kwargs(loaded) == required_kwargs(entry) and calls == []
    assert loaded.description == "weights 'keras_0.25_128'" and loaded.source == "keras"
    assert loaded.state_dict is loaded.state_dict and calls == [entry.name]  # read once
    backbone = loaded.without_classifier()
    assert backbone.num_classes is None and backbone.alpha == 0.25
    assert "num_classes" not in required_kwargs(backbone)
    assert not any(k.startswith("fc.") for k in backbone.state_dict)
    # a file's weights fix their settings only; their shapes decide alpha and the classes
    assert required_kwargs(weights_load.load(locate(MobileNetV1(alpha=0.5).state_dict()))) == {}


def test_a_face_chooses_which_fixed_argument_is_checked_first():
    from mnet_backbone.weights.settings import merge_kwargs, required_kwargs
    required = required_kwargs(ENTRIES["keras_0.25_128"])
    given = {"alpha": 1.0, "num_classes": 10}
    with pytest.raises(IncompatibleWeightsError, match="need alpha=0.25"):
        merge_kwargs(given, required, "w")
    with pytest.raises(IncompatibleWeightsError, match="need num_classes=1000"):
        merge_kwargs(given, required, "w", check_first=("num_classes",))
    assert merge_kwargs({}, required, check_first=("num_classes", "nope")) == required
