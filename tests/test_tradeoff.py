"""mnet_backbone.tradeoff and tools/tradeoff.py: the frontier logic on fixed numbers, the
published accuracy table (mnet_backbone.published), bad input, and short real runs of the timing
(tools/tradeoff_timing.py: PyTorch, ONNX Runtime / auto)."""
import json
import os

import pytest
from conftest import has, load_tool

from mnet_backbone import published
from mnet_backbone import tradeoff as t
from mnet_backbone.deploy import backends

timing = load_tool("tradeoff_timing")
Timing = timing.Timing


def row(alpha, res, ms, top1=None, ma=None, task="classify", backend="onnxruntime"):
    return t.Row(alpha=alpha, resolution=res, task=task, mult_adds=ma or int(alpha * res * 1e4),
                 params=int(alpha * 1e6), latency_ms=ms, p90_ms=ms * 1.1, backend=backend,
                 precision="fp32", batch=1, threads=2, top1=top1)


def names(rows):
    return [r.name for r in rows]


# --- frontier and budget on fixed numbers --------------------------------------------------------

def test_dominated_models_are_dropped_and_say_by_whom():
    fast = row(0.25, 128, 1.0, 50.0)
    slow_worse = row(0.5, 128, 2.0, 45.0)      # slower and less accurate than fast
    best = row(1.0, 224, 3.0, 70.0)
    same_acc_slower = row(0.75, 224, 3.5, 70.0)  # as accurate as best, slower
    same_time_worse = row(0.75, 192, 3.0, 60.0)  # as fast as best, less accurate
    front = t.pareto([best, slow_worse, same_acc_slower, fast, same_time_worse])
    assert names(front) == ["0.25-128", "1.0-224"]      # fastest first
    assert fast.on_frontier and best.on_frontier
    assert not slow_worse.on_frontier and slow_worse.dominated_by == "0.25-128"
    # of several dominators, the best one is named (higher accuracy first)
    assert same_acc_slower.dominated_by == "1.0-224"
    assert same_time_worse.dominated_by == "1.0-224"


def test_exact_ties_both_stay_and_the_choice_is_deterministic():
    a = row(0.5, 160, 2.0, 60.0, ma=100)
    b = row(0.75, 128, 2.0, 60.0, ma=90)   # same time and accuracy, fewer mult-adds
    c = row(0.25, 224, 2.0, 55.0)
    front = t.pareto([a, b, c])
    assert set(names(front)) == {"0.5-160", "0.75-128"}
    assert c.dominated_by in {"0.5-160", "0.75-128"}
    assert t.choose([a, b, c], 2.0).name == "0.75-128"   # tie -> fewer mult-adds
    # equal accuracy, different time: the faster one is chosen (and the slower dominated)
    d = row(1.0, 128, 1.5, 60.0, ma=500)
    assert t.choose([a, b, d], 5).name == "1.0-128"
    assert names(t.pareto([a, b, d])) == ["1.0-128"]


def test_budget_choice_is_the_most_accurate_model_that_fits():
    rows = [row(0.25, 128, 0.4, 41.3), row(0.5, 160, 1.8, 59.9), row(0.5, 128, 0.8, 56.2),
            row(1.0, 224, 5.5, 70.7), row(0.75, 192, 2.7, 67.4), row(1.0, 160, 3.07, 67.2)]
    assert t.choose(rows, 3).name == "0.75-192"       # 1.0-160 is less accurate and slower
    assert t.choose(rows, 2.7).name == "0.75-192"     # the budget itself counts as fitting
    assert t.choose(rows, 2.69).name == "0.5-160"
    assert t.choose(rows, 100).name == "1.0-224"
    assert t.choose(rows, 0.4).name == "0.25-128"
    unranked = row(0.3, 100, 0.1)                     # no published accuracy: never chosen
    assert t.choose(rows + [unranked], 0.5).name == "0.25-128"
    assert unranked not in t.pareto(rows + [unranked]) and unranked.dominated_by is None


def test_impossible_budget_names_the_fastest_model_and_its_time():
    rows = [row(0.5, 128, 0.83, 56.2), row(0.25, 128, 0.431, 41.3), row(1.0, 224, 5.5, 70.7)]
    with pytest.raises(t.BudgetError) as err:
        t.choose(rows, 0.2)
    msg = str(err.value)
    assert "0.2 ms" in msg and "0.25-128" in msg and "0.431 ms" in msg and "--budget-ms" in msg
    with pytest.raises(ValueError, match="> 0"):
        t.choose(rows, 0)
    with pytest.raises(ValueError, match="no measured model has a published accuracy"):
        t.choose([row(0.3, 100, 1.0)], 5)


def test_analyse_joins_published_accuracy_and_keeps_the_result_on_budget_errors():
    rows = [row(1.0, 224, 5.0), row(0.25, 128, 0.5), row(0.3, 100, 0.3)]
    result = t.analyse(rows, budget_ms=10)
    by = {r.name: r for r in result.rows}
    assert (by["1.0-224"].top1, by["1.0-224"].top5) == (70.7, 89.5)
    assert by["1.0-224"].accuracy_source == "TF-slim mobilenet_v1.md (2017_06_14)"
    assert by["0.3-100"].top1 is None and not by["0.3-100"].on_frontier
    assert result.choice.name == "1.0-224" and names(result.rows)[0] == "0.3-100"
    assert t.analyse(rows, 10, "tfslim_2018").choice.top1 == 70.9
    with pytest.raises(t.BudgetError) as err:
        t.analyse(rows, budget_ms=0.1)
    assert err.value.result is not None and len(err.value.result.rows) == 3
    assert "0.25-128" in str(err.value)   # the fastest *ranked* model
    data = json.loads(json.dumps(result.as_dict()))
    assert data["choice"]["weights"] == "keras_1.0_224" and data["frontier"] == names(
        result.frontier)
    assert [t.Row.from_dict(r).name for r in data["rows"]] == names(result.rows)


def test_detector_rows_rank_by_mult_adds_not_an_invented_accuracy():
    rows = [row(0.25, 320, 10.0, ma=300, task="ssdlite320"),
            row(0.5, 320, 12.0, ma=900, task="ssdlite320"),
            row(0.5, 228, 13.0, ma=500, task="ssdlite320")]
    result = t.analyse(rows, budget_ms=12.5)
    assert all(r.top1 is None for r in result.rows) and result.score == "mult_adds"
    assert names(result.frontier) == ["0.25-320", "0.5-320"] and result.choice.name == "0.5-320"
    assert result.rows[2].dominated_by == "0.5-320"
    with pytest.raises(ValueError, match="several tasks"):
        t.analyse(rows + [row(1.0, 224, 1.0)])


# --- the published accuracy table ----------------------------------------------------------------

def test_accuracy_table_has_the_16_models_with_sources():
    table = published.accuracy_table()
    assert len(table) == 16
    assert {(r.alpha, r.resolution) for r in table} == {
        (a, s) for a in (1.0, 0.75, 0.5, 0.25) for s in (224, 192, 160, 128)}
    for r in table:
        assert r.source == "tfslim_2017" and r.top1 is not None and r.top5 > r.top1
        assert (r.top1, r.top5) == r.tfslim_2017 and r.tfslim_2018[1] > r.tfslim_2018[0]
    got = {(r.alpha, r.resolution): r for r in table}
    assert got[(1.0, 224)].tfslim_2017 == (70.7, 89.5)
    assert got[(1.0, 224)].tfslim_2018 == (70.9, 89.9)
    assert got[(1.0, 192)].tfslim_2017 == (69.3, 88.9)
    assert got[(0.75, 224)].tfslim_2017 == (68.4, 88.2)
    assert got[(0.25, 128)].tfslim_2017 == (41.3, 66.2)
    assert got[(0.25, 128)].tfslim_2018 == (41.5, 66.3)
    # transcription check: accuracy falls with alpha at each resolution and with resolution
    for release in ("tfslim_2017", "tfslim_2018"):
        for res in (224, 192, 160, 128):
            col = [getattr(got[(a, res)], release)[0] for a in (1.0, 0.75, 0.5, 0.25)]
            assert col == sorted(col, reverse=True), (release, res)
        for a in (1.0, 0.75, 0.5, 0.25):
            line = [getattr(got[(a, s)], release)[0] for s in (224, 192, 160, 128)]
            assert line == sorted(line, reverse=True), (release, a)
    assert "a4e31b34db506e1ca0dcc5df00b71a56048f6f89" in published.SOURCES["tfslim_2017"]
    assert "research/slim/nets/mobilenet_v1.md" in published.SOURCES["tfslim_2018"]


def test_paper_rows_are_tables_6_and_7():
    table = published.accuracy_table("paper")
    printed = {(r.alpha, r.resolution): (r.top1, r.paper_table) for r in table
               if r.top1 is not None}
    assert printed == {(1.0, 224): (70.6, "6, 7"), (0.75, 224): (68.4, "6"),
                       (0.5, 224): (63.7, "6"), (0.25, 224): (50.6, "6"),
                       (1.0, 192): (69.1, "7"), (1.0, 160): (67.2, "7"), (1.0, 128): (64.4, "7")}
    assert sum(r.top1 is None for r in table) == 9
    assert published.published_accuracy(0.5, 128, "paper").citation == "not in the paper"
    assert published.published_accuracy(0.3, 100) is None
    with pytest.raises(ValueError, match="tfslim_2017, tfslim_2018, paper"):
        published.accuracy_table("imagenet")


def test_one_owner_of_the_published_accuracy_and_a_library_that_does_not_measure():
    """mnet_backbone.published holds every published number once (the weights registry quotes
    the paper's Tables 6-7 from it); mnet_backbone.tradeoff keeps the pure functions of measured
    numbers: no timing loop, no deploy runtime, no plot."""
    import ast
    import pathlib

    from mnet_backbone.weights import ENTRIES
    for r in published.accuracy_table("paper"):
        entry = ENTRIES[f"keras_{r.alpha}_{r.resolution}"]
        assert entry.top1 == r.top1, entry.name
    tree = ast.parse(pathlib.Path(t.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith(("deploy", "matplotlib")) for m in imported), imported
    assert not hasattr(t, "measure") and not hasattr(t, "frontier") and not hasattr(t, "_TFSLIM")


# --- models, options, config lines ---------------------------------------------------------------

def test_model_specs():
    specs = t.parse_models("0.25:128, 0.5:128,0.25:128")
    assert [s.name for s in specs] == ["0.25-128", "0.5-128"]
    assert t.parse_models(["1:224", "0.3:100"])[1] == t.ModelSpec(0.3, 100)  # valid, unpublished
    assert len(t.default_models()) == 16
    assert sorted({s.resolution for s in t.default_models("ssdlite320")}) == [183, 228, 274, 320]
    for bad, why in (("0:128", "alpha"), ("1.0:16", "32 px"), ("1.0x128", "ALPHA:RESOLUTION"),
                     ("abc", "ALPHA:RESOLUTION"), ("1.0:128.5", "ALPHA:RESOLUTION"),
                     (" ", "no models")):
        with pytest.raises(ValueError, match=why):
            t.parse_models(bad)
    with pytest.raises(ValueError, match="SSDLite320.*alpha >= 0.0625"):
        t.parse_models("0.05:320", "ssdlite320")


def test_options_are_checked_before_any_work():
    with pytest.raises(ValueError) as err:
        timing.check_options(Timing("tensorrt"))
    assert "tensorrt" in str(err.value)
    assert all(b in str(err.value) for b in ("auto", "pytorch", "onnxruntime", "openvino"))
    with pytest.raises(ValueError, match="fp32, bf16, int8"):
        timing.check_options(Timing("onnxruntime", "fp16"))
    with pytest.raises(ValueError, match="classify, ssdlite320"):
        timing.check_options(Timing(), task="segment")
    with pytest.raises(ValueError, match="batch"):
        timing.check_options(Timing(batch=0))
    with pytest.raises(backends.PrecisionNotSupportedError, match="fp32 only"):
        timing.check_options(Timing("pytorch", "int8"))
    if has("onnxruntime"):
        with pytest.raises(backends.PrecisionNotSupportedError, match="ONNX Runtime"):
            timing.check_options(Timing("onnxruntime", "bf16"))


@pytest.mark.skipif(not has("openvino") or backends.bf16_support()["supported"],
                    reason="the CPU has native bf16")
def test_bf16_without_native_support_is_the_existing_clear_error():
    for backend in ("openvino", "auto"):
        with pytest.raises(backends.PrecisionNotSupportedError, match="no native bf16"):
            timing.check_options(Timing(backend, "bf16"))


def test_usage_names_the_weights_entry_and_lines():
    use = t.usage(t.ModelSpec(0.5, 128), "classify")
    assert use["weights"] == "keras_0.5_128"
    assert "mnet://keras_0.5_128" in use["mmdet"] and "alpha=0.5" in use["mmdet"]
    assert "tf_padding=True" in use["mmdet"] and "eps=0.001" in use["mmdet"]
    assert use["torchvision"] == (
        "torchvision.models.get_model('mobilenet_v1', weights='KERAS_0_5_128')")
    if has("torchvision"):   # the printed member exists (verify downloads nothing)
        from mnet_backbone.tv_models import MobileNet_V1_Weights
        assert MobileNet_V1_Weights.verify("KERAS_0_5_128").entry.name == "keras_0.5_128"
    assert "timm_1.0_224_ra4" in t.usage(t.ModelSpec(1.0, 224))["other_weights"]
    near = t.usage(t.ModelSpec(1.0, 256))
    assert near["weights"] == "keras_1.0_224" and "no accuracy is published" in near["weights_note"]
    assert "alpha=1.0" in near["torchvision"]
    none = t.usage(t.ModelSpec(0.6, 200))
    assert none["weights"] is None and "train it from scratch" in none["weights_note"]
    assert "init_cfg" not in none["mmdet"]
    det = t.usage(t.ModelSpec(0.5, 228), "ssdlite320")
    assert det["weights"] == "keras_0.5_224" and "fixed_size = (228, 228)" in det["torchvision"]
    assert "KERAS_0_5_224" in det["torchvision"] and "320 px" in det["mmdet"]
    assert "configs/ssdlite320_mnet.py" in t.usage(t.ModelSpec(0.5, 320), "ssdlite320")["mmdet"]


# --- real, short runs ----------------------------------------------------------------------------

def _tool():
    return load_tool("tradeoff")


def test_cli_two_models_then_an_impossible_budget(tmp_path, capsys):
    tool = _tool()
    out = tmp_path / "out"
    rc = tool.main(["--models", "0.25:128,0.5:128", "--backend", "pytorch", "--rounds", "3",
                    "--calls", "1", "--budget-ms", "100000", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Pareto frontier" in text and "**best within 100000 ms**" in text
    assert "Best within 100000 ms: 0.5-128" in text      # the more accurate one fits
    assert "mnet://keras_0.5_128" in text and "get_model('mobilenet_v1'" in text
    data = json.loads((out / "tradeoff_classify.json").read_text())
    assert [r["name"] for r in data["rows"]] and {r["name"] for r in data["rows"]} == {
        "0.25-128", "0.5-128"}
    assert all(r["latency_ms"] > 0 and r["samples"] == 3 and r["backend"] == "pytorch"
               for r in data["rows"])
    assert data["machine"]["cpu"] and len(data["accuracy_table"]) == 16
    assert data["choice"]["name"] == "0.5-128" and data["budget_error"] is None
    assert (out / "tradeoff_classify.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(out)) == ["tradeoff_classify.json", "tradeoff_classify.png"]

    # the same measurement, an impossible budget: exit 2, the fastest model and its time named
    rc = tool.main(["--from-json", str(out / "tradeoff_classify.json"), "--budget-ms", "1e-4",
                    "--out", str(out), "--no-png"])
    err = capsys.readouterr().err
    fastest = min(data["rows"], key=lambda r: r["latency_ms"])
    assert rc == 2
    assert f"the fastest, {fastest['name']}" in err and f"{fastest['latency_ms']:.3f} ms" in err
    assert json.loads((out / "tradeoff_classify.json").read_text())["budget_error"]


def test_cli_bad_input_fails_before_measuring(tmp_path, capsys):
    tool = _tool()
    a_file = tmp_path / "file"
    a_file.write_text("")
    for argv, expected in ((["--backend", "tensorrt"], "choose one of auto, pytorch, onnxruntime"),
                           (["--models", "0:128"], "alpha"),
                           (["--budget-ms", "0"], "--budget-ms must be > 0"),
                           (["--precision", "fp16"], "fp32, bf16, int8"),
                           (["--out", str(a_file)], "cannot be written")):
        assert tool.main(argv + ["--no-png"]) == 2
        assert expected in capsys.readouterr().err, argv


def test_detector_on_pytorch_times_the_torchvision_ssdlite():
    import torch

    from mnet_backbone.cost import measure as count_hooks

    spec = t.ModelSpec(0.25, 128)
    rows = timing.measure([spec], "ssdlite320", Timing("pytorch", rounds=2, calls=1))
    (r,) = rows
    assert r.task == "ssdlite320" and r.latency_ms > 0 and r.samples == 2
    model = timing._build_detector(spec)
    assert model.transform.fixed_size == (128, 128)
    with torch.no_grad():
        assert len(model([torch.rand(3, 128, 128)])[0]["boxes"]) == 0  # no NMS work timed
    ma = count_hooks(model, 128, forward=lambda m, x: m.head(list(m.backbone(x).values())))
    assert (r.mult_adds, r.params) == (ma.mult_adds, ma.params)
    assert torch.get_num_threads() == max(1, min(2, os.cpu_count() or 1))  # restored


@pytest.mark.skipif(not (has("onnx") and has("onnxruntime") and has("onnxscript")),
                    reason="needs the deploy extra")
def test_auto_exports_and_picks_a_measured_backend(tmp_path):
    cache = str(tmp_path / "choice.json")
    (r,) = timing.measure(t.parse_models("0.25:64"), "classify", Timing("auto", rounds=2, calls=1),
                          cache=cache, workdir=str(tmp_path / "files"))
    assert r.backend in backends.available_backends() and set(r.auto_ms) == set(
        backends.available_backends())
    assert r.latency_ms > 0 and os.path.isfile(cache)
    assert os.path.isfile(tmp_path / "files" / "classify_0.25-64_fp32.onnx")
