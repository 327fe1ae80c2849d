"""Issue 17, checkpoints and inputs: an unreadable checkpoint is one error naming the file and
what it holds (never torch's advice to load it with weights_only=False), on every path that reads
one (the torch-only reader, load_weights, mmengine's loader behind tools/test.py / load_from /
resume, init_cfg); input of another dtype than the model is the ValueError of docs/model.md."""
import io
import os

import numpy as np
import pytest
import torch

from mnet_backbone import MobileNetV1
from mnet_backbone.weights import CorruptWeightsError, load_weights
from mnet_backbone.weights.hub import UnreadableCheckpointError, load_checkpoint

from conftest import has


class NotATensor:  # pickled by torch.save as a global that a safe load refuses
    pass


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """{kind: (path, words the error must contain)} of files that are no readable checkpoint."""
    from PIL import Image
    root = tmp_path_factory.mktemp("bad")
    good = io.BytesIO()
    torch.save(MobileNetV1(num_classes=10, alpha=0.25).state_dict(), good)
    data = good.getvalue()
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(4)}, legacy, _use_new_zipfile_serialization=False)
    image = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    payloads = {"empty": (b"", "empty (0 bytes)"),
                "truncated": (data[:len(data) // 2], "truncated zip archive"),
                "legacy_truncated": (legacy.getvalue()[:100], "a pickle"),
                "random": (np.random.default_rng(0).bytes(4096), "corrupt or truncated"),
                "html": (b"<!DOCTYPE html><html><body>404</body></html>", "HTML page")}
    files = {k: (root / f"{k}.pth", words) for k, (_, words) in payloads.items()}
    for k, (payload, _) in payloads.items():
        files[k][0].write_bytes(payload)
    for fmt, words in (("JPEG", "a JPEG image"), ("PNG", "a PNG image")):
        path = root / f"{fmt.lower()}.pth"  # a photo renamed .pth
        image.save(path, format=fmt)
        files[fmt.lower()] = (path, words)
    return {k: (str(p), w) for k, (p, w) in files.items()}


def _check_message(exc: BaseException, path: str, words: str) -> None:
    text = str(exc)
    assert path in text and words in text, text
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text
    assert "\n" not in text  # one line
    assert exc.__cause__ is None and exc.__suppress_context__  # no chained traceback


def test_torch_only_reader_names_what_the_file_is(bad_files):
    for kind, (path, words) in bad_files.items():
        with pytest.raises(UnreadableCheckpointError) as info:
            load_checkpoint(path)
        _check_message(info.value, path, words)
        if kind in ("jpeg", "png", "html"):
            assert "not a checkpoint; pass the checkpoint file itself" in str(info.value)
    assert issubclass(UnreadableCheckpointError, CorruptWeightsError)
    assert issubclass(UnreadableCheckpointError, ValueError)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(os.path.join(os.path.dirname(path), "missing.pth"))


def test_refused_objects_are_named_without_unsafe_advice(tmp_path):
    path = str(tmp_path / "pickled.pth")
    torch.save({"w": torch.ones(2), "extra": NotATensor()}, path)
    with pytest.raises(UnreadableCheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "NotATensor" in text and "torch.save(model.state_dict(), path)" in text
    assert "weights_only=False" not in text


def test_load_weights_reports_the_same(bad_files):
    path, words = bad_files["jpeg"]
    with pytest.raises(UnreadableCheckpointError) as info:
        load_weights(MobileNetV1(), path)
    _check_message(info.value, path, words)


def test_runner_checkpoints_still_load_safely(tmp_path):
    pytest.importorskip("mmengine")
    from mmengine.logging import HistoryBuffer
    history = HistoryBuffer()
    history.update(1.5)
    path = str(tmp_path / "epoch_1.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "message_hub": {"loss": history},
                "meta": {"epoch": 1, "seed": np.int64(3)}}, path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded["message_hub"]["loss"], HistoryBuffer)
    assert loaded["message_hub"]["loss"].current() == 1.5
    # the allow-list was scoped to that read
    with pytest.raises(Exception, match="HistoryBuffer"):
        torch.load(path, weights_only=True)


class _AttributeOf:  # pickles as builtins.getattr(HistoryBuffer, name)
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, self.name)


def test_runner_checkpoints_may_name_statistics_methods_and_nothing_else(tmp_path):
    pytest.importorskip("mmengine")
    from mmengine.logging import HistoryBuffer
    history = HistoryBuffer()
    history.update(2.0)
    ok = str(tmp_path / "ok.pth")
    torch.save({"message_hub": {"loss": history}, "stat": _AttributeOf("mean")}, ok)
    assert load_checkpoint(ok)["stat"] is HistoryBuffer.mean
    hostile = str(tmp_path / "hostile.pth")
    torch.save({"message_hub": {"loss": history}, "x": _AttributeOf("__init__")}, hostile)
    with pytest.raises(UnreadableCheckpointError,
                       match=r"hostile\.pth asks for getattr\(HistoryBuffer, '__init__'\), "
                             r"which a safe, weights-only load does not give") as err:
        load_checkpoint(hostile)
    assert "weights_only=False" not in str(err.value)


@pytest.fixture(scope="module")
def mmdet_face():
    if not has("mmdet"):
        pytest.skip("mmdet not installed")
    import mnet_backbone.mmdet_plugin  # noqa: F401  (installs the safe local loader)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    # mmdet's scope: a Runner of an earlier test (default_scope='mmengine') left its own current
    register_all_modules(init_default_scope=True)
    return MODELS


def test_mmengine_paths_report_one_line(mmdet_face, bad_files):
    """tools/test.py's checkpoint, load_from and resume all read through mmengine's
    CheckpointLoader; init_cfg=Pretrained through load_checkpoint."""
    from mmengine.runner import CheckpointLoader, load_checkpoint as mmengine_load
    for kind in ("truncated", "empty", "random", "jpeg"):
        path, words = bad_files[kind]
        with pytest.raises(UnreadableCheckpointError) as info:
            CheckpointLoader.load_checkpoint(path, map_location="cpu")
        _check_message(info.value, path, words)
        with pytest.raises(UnreadableCheckpointError):
            mmengine_load(torch.nn.Linear(2, 2), path, map_location="cpu")
    path, words = bad_files["png"]
    backbone = mmdet_face.build(dict(type="MobileNetV1", alpha=0.25, init_cfg=dict(
        type="Pretrained", checkpoint=path, prefix="backbone.")))
    with pytest.raises(UnreadableCheckpointError) as info:
        backbone.init_weights()
    _check_message(info.value, path, words)


def test_the_mmengine_loader_patch_is_gated_and_undoable(mmdet_face, bad_files, monkeypatch):
    """The safe local loader replaces mmengine's only on the verified mmengine release, and
    restore_mmengine_checkpoints() puts mmengine's own back."""
    import mmengine
    from mmengine.runner import CheckpointLoader
    from mnet_backbone.openmmlab import checkpoint as ckpt
    ours = ckpt.load_from_local_safe
    assert CheckpointLoader._schemes[""] is ours
    ckpt.restore_mmengine_checkpoints()
    try:
        assert CheckpointLoader._schemes[""] is not ours
        path, _ = bad_files["empty"]
        with pytest.raises(Exception) as info:  # mmengine's own loader: not our message
            CheckpointLoader.load_checkpoint(path, map_location="cpu")
        assert not isinstance(info.value, UnreadableCheckpointError)
        monkeypatch.setattr(mmengine, "__version__", "0.11.0")
        with pytest.warns(UserWarning, match="mmengine's own loader stays"):
            assert ckpt.allow_mmengine_checkpoints() is False
        assert CheckpointLoader._schemes[""] is not ours
    finally:
        monkeypatch.undo()
        assert ckpt.allow_mmengine_checkpoints() is True
    assert CheckpointLoader._schemes[""] is ours


# --- input dtype --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return MobileNetV1(num_classes=4, alpha=0.25).eval()


@pytest.mark.parametrize("dtype,fix", [
    (torch.float64, "x.to(torch.float32)"),
    (torch.float16, "torch.autocast"),
    (torch.uint8, "x.float()"),
    (torch.int64, "x.float()"),
])
def test_input_of_another_dtype_is_a_value_error(small, dtype, fix):
    x = torch.rand(1, 3, 64, 64).mul(100).to(dtype)
    for forward in (small, small.forward_features):
        with pytest.raises(ValueError) as info:
            forward(x)
        text = str(info.value)
        assert str(dtype) in text and "torch.float32" in text and fix in text, text


def test_other_dtypes_that_work_keep_working(small):
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        reference = small(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # CPUAmpOptimWrapper
        assert small(x).dtype == torch.bfloat16
        assert small(x.bfloat16()).dtype == torch.bfloat16
        with pytest.raises(ValueError, match="float64"):  # autocast does not cast float64
            small(x.double())
    import copy
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        converted = copy.deepcopy(small).to(dtype)
        with torch.no_grad():  # (with autograd, CPU fp16/fp64 kernels take seconds here)
            out = converted(x.to(dtype))
        assert out.dtype == dtype
        assert torch.allclose(out.float(), reference, atol=0.1)
        with pytest.raises(ValueError, match=f"parameters are {dtype}"):
            converted(x)
    traced = torch.fx.symbolic_trace(small)  # the check stays a leaf call for fx
    with pytest.raises(ValueError, match="float64"):
        traced(x.double())


def test_mmdet_backbone_checks_dtype_too(mmdet_face):
    backbone = mmdet_face.build(dict(type="MobileNetV1", alpha=0.25, out_indices=(3, 4))).eval()
    with pytest.raises(ValueError, match="torch.uint8.*x.float()"):
        backbone(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert len(backbone(torch.zeros(1, 3, 64, 64))) == 2

