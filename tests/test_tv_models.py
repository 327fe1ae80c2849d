"""torchvision face, classifier side: registry, weights enum, builder, scripting/fx.

Held to torchvision's own model-test checks (test_models.py / test_extended_models.py): the
weights-meta schema, num_params and _ops against the real model, copy/pickle identity, scriptable
transforms, eager == scripted (1e-4) also after a save/load round trip, fx tracing, input grads.
No test downloads anything: loading is checked through a stand-in for
``mnet_backbone.weights.load.load_state_dict``, the entries' downloader.
"""
import copy
import io
import pickle
import subprocess
import sys
import textwrap
import warnings

import pytest

torchvision = pytest.importorskip("torchvision")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import models as tvm  # noqa: E402

import mnet_backbone  # noqa: E402,F401  (registers the face)
from mnet_backbone import MobileNetV1  # noqa: E402
from mnet_backbone import weights as weights_mod  # noqa: E402
from mnet_backbone.weights import load as weights_load  # noqa: E402
from mnet_backbone.cost import count  # noqa: E402
from mnet_backbone.tv_models import (BUILDERS, MobileNet_V1_Weights,  # noqa: E402
                                     ModelRegistrationError, UnknownWeightsError, _compat,
                                     _registry, install, mobilenet_v1)
from mnet_backbone.tv_models.classification import (entry_model_kwargs,  # noqa: E402
                                                    make_weights_enum)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning",
                                        "ignore:`torch.jit.save` is deprecated:FutureWarning",
                                        "ignore:`torch.jit.load` is deprecated:FutureWarning")

NAMES = ["fasterrcnn_mobilenet_v1_320_fpn", "fasterrcnn_mobilenet_v1_fpn", "mobilenet_v1",
         "ssd300_mobilenet_v1", "ssdlite320_mobilenet_v1"]
ENTRIES = list(weights_mod.ENTRIES.values())
# torchvision's test_schema_meta_validation: the keys a weights meta may have.
PERMITTED_META = {"backend", "categories", "keypoint_names", "license", "_metrics", "min_size",
                  "min_temporal_size", "num_params", "recipe", "unquantized", "_docs", "_ops",
                  "_file_size"}
REQUIRED_META = {"categories", "_metrics", "min_size", "num_params", "recipe", "_docs",
                 "_file_size", "_ops"}


@pytest.fixture
def fake_download(monkeypatch):
    """Replace the downloader: a seeded random state dict in the core's format, calls recorded."""
    calls = []

    def load_state_dict(entry, progress=True, check_hash=True):
        calls.append((entry, progress, check_hash))
        torch.manual_seed(7)
        model = MobileNetV1(num_classes=entry.num_classes, **entry_model_kwargs(entry))
        state = model.state_dict()
        for value in state.values():  # make every tensor (BN stats included) recognisable
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
        return state

    monkeypatch.setattr(weights_load, "load_state_dict", load_state_dict)
    return calls


# --- registry ----------------------------------------------------------------------------------


def test_registered_with_torchvision():
    model = tvm.get_model("mobilenet_v1", weights=None, alpha=0.5)
    assert isinstance(model, MobileNetV1) and model.alpha == 0.5
    assert set(NAMES) <= set(tvm.list_models())
    assert tvm.list_models(module=mnet_backbone.tv_models) == NAMES
    assert tvm.get_model_builder("mobilenet_v1") is mobilenet_v1
    assert tvm.get_model_weights("mobilenet_v1") is MobileNet_V1_Weights
    assert tvm.get_model_weights(mobilenet_v1) is MobileNet_V1_Weights
    assert tvm.mobilenet_v1 is mobilenet_v1 and tvm.MobileNet_V1_Weights is MobileNet_V1_Weights
    assert tvm.get_weight("MobileNet_V1_Weights.DEFAULT") is MobileNet_V1_Weights.DEFAULT
    for name in NAMES[:2] + NAMES[3:]:
        fn = getattr(tvm.detection, name)
        assert tvm.get_model_builder(name) is fn
        enum = tvm.get_model_weights(name)
        assert issubclass(enum, tvm.WeightsEnum) and len(enum) == 0  # no COCO weights exist
        assert getattr(tvm.detection, enum.__name__) is enum
    # torchvision's own models are untouched
    assert {"mobilenet_v2", "mobilenet_v3_large", "ssdlite320_mobilenet_v3_large"} <= set(
        tvm.list_models())
    assert tvm.get_model_weights("mobilenet_v2") is tvm.MobileNet_V2_Weights
    assert isinstance(tvm.get_model("mobilenet_v2", weights=None), tvm.MobileNetV2)


def test_duplicate_registration_is_refused(monkeypatch):
    registry = _registry.builtin_models()

    def mobilenet_v1_by_someone_else(**kwargs):
        return nn.Identity()

    monkeypatch.setitem(registry, "mobilenet_v1", mobilenet_v1_by_someone_else)
    with pytest.raises(ModelRegistrationError, match="already has a model registered as "
                                                     "'mobilenet_v1'.*will not replace it"):
        _registry.register("mobilenet_v1", mobilenet_v1)
    with pytest.warns(RuntimeWarning, match="'mobilenet_v1'"):
        refused = install()
    assert len(refused) == 1
    assert registry["mobilenet_v1"] is mobilenet_v1_by_someone_else  # not overwritten
    assert registry["ssdlite320_mobilenet_v1"] is BUILDERS[2]  # the others still registered
    # a name on torchvision's namespace that is someone else's is refused the same way
    other = nn.Identity
    with pytest.raises(ModelRegistrationError, match="torchvision.models.detection.ssd300_vgg16"):
        _registry.expose(tvm.detection, "ssd300_vgg16", other)
    assert tvm.detection.ssd300_vgg16.__module__.startswith("torchvision.")


def test_reinstall_is_idempotent_and_uninstall_only_removes_ours():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert install() == []
    # a reloaded module's builder (same module and qualified name) replaces the old one quietly
    twin = type(mobilenet_v1)(mobilenet_v1.__code__, mobilenet_v1.__globals__, "mobilenet_v1")
    twin.__qualname__ = mobilenet_v1.__qualname__
    registry = {"mobilenet_v1": mobilenet_v1}
    _registry.register("mobilenet_v1", twin, registry)
    assert registry["mobilenet_v1"] is twin
    try:
        mnet_backbone.tv_models.uninstall()
        assert not set(NAMES) & set(tvm.list_models())
        assert not hasattr(tvm, "mobilenet_v1")
        assert not hasattr(tvm.detection, "ssd300_mobilenet_v1")
        assert "ssdlite320_mobilenet_v3_large" in tvm.list_models()
    finally:
        install()
    assert set(NAMES) <= set(tvm.list_models())


def test_moved_private_api_gives_a_clear_error(monkeypatch):
    monkeypatch.delattr(tvm._api, "BUILTIN_MODELS")
    with pytest.raises(ImportError, match=r"torchvision.models._api.BUILTIN_MODELS.*core model "
                                          r"\(mnet_backbone.MobileNetV1\) is unaffected"):
        _compat.load()


@pytest.mark.slow
def test_moved_private_api_keeps_core_importable():
    # A fresh interpreter where torchvision lost a private name this face needs.
    script = textwrap.dedent("""
        import warnings, torch, torchvision.models._meta as meta, torchvision.models as tvm
        del meta._IMAGENET_CATEGORIES
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import mnet_backbone
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("_IMAGENET_CATEGORIES" in m and "not registered with torchvision" in m
                   for m in messages), messages
        core = mnet_backbone.MobileNetV1(alpha=0.25).eval()
        assert core(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)
        assert "mobilenet_v1" not in tvm.list_models()  # nothing half-registered
        assert not hasattr(tvm, "mobilenet_v1")
        tvm.get_model("mobilenet_v2")  # torchvision itself still fine
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# --- weights enum ------------------------------------------------------------------------------


def test_one_member_per_entry_and_default():
    assert ENTRIES, "mnet_backbone.weights.ENTRIES is empty"
    members = [m for name, m in MobileNet_V1_Weights.__members__.items() if name != "DEFAULT"]
    assert [m.entry for m in members] == ENTRIES
    assert [m.name for m in members] == [e.name.replace(".", "_").upper() for e in ENTRIES]
    assert MobileNet_V1_Weights.KERAS_1_0_224.entry.name == "keras_1.0_224"
    assert all(m.name.isupper() for m in MobileNet_V1_Weights)
    assert len(MobileNet_V1_Weights) == len(ENTRIES)  # DEFAULT is an alias, not a member
    # DEFAULT: the best published top-1 of the full-size model (alpha 1.0, 224px)
    full = [e for e in ENTRIES if e.alpha == 1.0 and e.resolution == 224 and e.top1]
    assert MobileNet_V1_Weights.DEFAULT.entry is max(full, key=lambda e: e.top1)
    assert MobileNet_V1_Weights.from_entry("keras_0.5_160") is MobileNet_V1_Weights.KERAS_0_5_160
    assert MobileNet_V1_Weights.verify("MobileNet_V1_Weights.KERAS_0_5_160") is \
        MobileNet_V1_Weights.KERAS_0_5_160


@pytest.mark.parametrize("copy_fn", [copy.copy, copy.deepcopy,
                                     lambda w: pickle.loads(pickle.dumps(w))])
def test_weights_copyable_and_deserializable(copy_fn):
    for w in MobileNet_V1_Weights:
        assert copy_fn(w) is w


def test_weights_meta_schema_and_values():
    real_params = {}
    for w in MobileNet_V1_Weights:
        entry, meta = w.entry, w.meta
        assert REQUIRED_META <= set(meta) <= PERMITTED_META, w
        assert w.url == entry.url
        assert meta["categories"] == list(tvm._meta._IMAGENET_CATEGORIES)
        assert len(meta["categories"]) == entry.num_classes
        assert meta["min_size"] == (32, 32)
        assert meta["recipe"] == entry.recipe and meta["license"] == entry.license
        # accuracies exactly as the source publishes them, nothing invented
        published = {k: v for k, v in (("acc@1", entry.top1), ("acc@5", entry.top5)) if v}
        assert meta["_metrics"] == {"ImageNet-1K": published}
        assert meta["_file_size"] == entry.file_size_mb
        if entry.file_size_mb is None:
            assert "file size is not recorded" in meta["_docs"]
        if entry.top1 is None:
            assert "publishes no ImageNet accuracy" in meta["_docs"]
        assert entry.docs.strip()[:40] in meta["_docs"]
        # GFLOPS as torchvision counts them (one op per multiply-add) from the cost counter
        assert meta["_ops"] == round(count(entry.alpha, entry.resolution).mult_adds / 1e9, 3)
        # num_params: the real model's count
        key = (entry.num_classes, tuple(sorted(entry_model_kwargs(entry).items())))
        if key not in real_params:
            model = MobileNetV1(num_classes=entry.num_classes, **entry_model_kwargs(entry))
            real_params[key] = sum(p.numel() for p in model.parameters())
        assert meta["num_params"] == real_params[key]
    assert MobileNet_V1_Weights.KERAS_1_0_224.meta["num_params"] == 4231976
    assert MobileNet_V1_Weights.KERAS_1_0_224.meta["_ops"] == 0.569  # the paper's 569M


def test_ops_match_torch_flop_counter():
    # torchvision's get_ops: the model at its transforms' crop, counting one op per MAC.
    from torch.utils.flop_counter import FlopCounterMode
    w = MobileNet_V1_Weights.KERAS_0_25_128
    model = mobilenet_v1(num_classes=1000, **entry_model_kwargs(w.entry)).eval()
    x = w.transforms()(torch.rand(3, 150, 170))[None]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert round(counter.get_total_flops() / 2 / 1e9, 3) == w.meta["_ops"] == 0.014


@pytest.mark.parametrize("name", ["KERAS_1_0_160", "TIMM_1_25_224_RA4"])
def test_transforms_match_entry_and_are_scriptable(name):
    w = MobileNet_V1_Weights[name]
    entry, t = w.entry, w.transforms()
    assert t.crop_size == [entry.resolution]
    assert t.resize_size == [int(entry.resolution / entry.crop_pct)]
    assert t.mean == list(entry.mean) and t.std == list(entry.std)
    img = torch.randint(0, 256, (3, 300, 260), dtype=torch.uint8)
    out = t(img)
    assert out.shape == (3, entry.resolution, entry.resolution) and out.dtype == torch.float32
    torch.testing.assert_close(torch.jit.script(t)(img), out, atol=1e-4, rtol=1e-4)
    assert MobileNet_V1_Weights.KERAS_1_0_160.transforms().resize_size == [182]  # 160 / 0.875


def test_make_weights_enum_rejects_clashing_names():
    a, b = ENTRIES[0], ENTRIES[1]
    import dataclasses
    clash = dataclasses.replace(b, name=a.name.replace(".", "-"))
    with pytest.raises(ValueError, match="both map to enum member"):
        make_weights_enum([a, clash], name="Clash_Weights")
    assert len(make_weights_enum([], name="Empty_Weights")) == 0


# --- builder -------------------------------------------------------------------------------------


def test_builder_loads_through_the_weights_module(fake_download):
    w = MobileNet_V1_Weights.KERAS_0_25_128
    model = tvm.get_model("mobilenet_v1", weights="MobileNet_V1_Weights.KERAS_0_25_128",
                          progress=False)
    assert fake_download == [(w.entry, False, True)]
    expected = weights_load.load_state_dict(w.entry)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    # the entry's settings are applied: width, TF padding, Keras BN eps, 1000 classes
    assert model.alpha == 0.25 and model.tf_padding
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    assert model.fc.out_features == 1000
    # agreeing arguments are fine; a custom norm layer keeps the weights' BN eps
    from torchvision.ops.misc import FrozenBatchNorm2d
    model = mobilenet_v1(weights=w, num_classes=1000, alpha=0.25, tf_padding=True,
                         norm_layer=FrozenBatchNorm2d)
    assert {m.eps for m in model.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-3}


def test_builder_reads_the_weights_cache(tmp_path, monkeypatch):
    # The real loader, no network: a converted checkpoint already in the weights cache.
    from mnet_backbone.weights.hub import cache_dir, save_checkpoint
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    w = MobileNet_V1_Weights.KERAS_0_25_128
    torch.manual_seed(11)
    state = MobileNetV1(num_classes=1000, **entry_model_kwargs(w.entry)).state_dict()
    save_checkpoint(f"{cache_dir()}/{w.entry.name}.pth", state, {"url": w.entry.url})
    model = mobilenet_v1(weights=w, progress=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    detector = tvm.detection.ssdlite320_mobilenet_v1(weights_backbone=w, num_classes=3)
    core = detector.backbone.body
    torch.testing.assert_close(core.state_dict()["stages.4.1.pw.conv.weight"],
                               state["stages.4.1.pw.conv.weight"], rtol=0, atol=0)


def test_bad_weights_arguments(fake_download):
    w = MobileNet_V1_Weights.KERAS_0_25_128
    with pytest.raises(TypeError, match="expected MobileNet_V1_Weights but received "
                                        "ResNet18_Weights"):
        mobilenet_v1(weights=tvm.ResNet18_Weights.DEFAULT)
    with pytest.raises(TypeError, match="received bool"):
        mobilenet_v1(weights=True)
    with pytest.raises(UnknownWeightsError, match="has no weights 'IMAGENET1K_V1'; available: "
                                                  r"\['KERAS_1_0_224'"):
        mobilenet_v1(weights="IMAGENET1K_V1")
    with pytest.raises(KeyError):  # torchvision raises KeyError for unknown names
        tvm.get_model("mobilenet_v1", weights="NOPE")
    with pytest.raises(ValueError, match="'num_classes' expected value 1000 but got 10.*replace "
                                         "`model.fc`"):
        mobilenet_v1(weights=w, num_classes=10)
    with pytest.raises(ValueError, match="'alpha' expected value 0.25 but got 1.0"):
        mobilenet_v1(weights=w, alpha=1.0)
    with pytest.raises(ValueError, match="'tf_padding' expected value True"):
        mobilenet_v1(weights=w, tf_padding=False)
    assert fake_download == []  # every check happens before any download


def test_builder_translates_onto_the_weights_builder(fake_download, monkeypatch):
    w = MobileNet_V1_Weights.KERAS_0_25_128
    # torchvision's order: num_classes (from the categories) before what the entry fixes; the
    # core's builder checks alpha first
    with pytest.raises(ValueError, match="'num_classes' expected value 1000 but got 10"):
        mobilenet_v1(weights=w, num_classes=10, alpha=1.0)
    with pytest.raises(weights_mod.IncompatibleWeightsError, match="need alpha=0.25"):
        weights_mod.mobilenet_v1(weights=w.entry, num_classes=10, alpha=1.0)
    assert fake_download == []
    calls = []
    build = weights_mod.build_model

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return build(*args, **kwargs)

    monkeypatch.setattr(weights_mod, "build_model", spy)
    mobilenet_v1(weights=w, progress=False, dropout=0.1)
    (weights, kwargs), options = calls[0]
    assert weights is w.entry and kwargs == {"dropout": 0.1, "num_classes": 1000}
    assert options["progress"] is False
    assert fake_download == [(w.entry, False, True)]


# --- torchvision's model checks: TorchScript, fx, gradients ---------------------------------------


@pytest.mark.parametrize("kwargs", [dict(alpha=0.25, num_classes=10),
                                    dict(alpha=0.25, num_classes=7, tf_padding=True, bn_eps=1e-3)])
def test_classifier_scriptable_traceable_and_differentiable(kwargs):
    torch.manual_seed(0)
    model = tvm.get_model("mobilenet_v1", weights=None, **kwargs).eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        eager = model(x)
    assert eager.shape == (2, kwargs["num_classes"])

    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager, atol=1e-4, rtol=1e-4)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), eager, atol=1e-4, rtol=1e-4)

    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), eager, atol=1e-4, rtol=1e-4)

    model.train()
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
