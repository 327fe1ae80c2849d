"""The documentation: README.md (the front page) and docs/*.md.

Every relative link and #anchor resolves, every tools/ configs/ tests/ mnet_backbone/ path the
text names exists, the README's weights table is what tools/make_weights_table.py generates
from the registry, and the README's quick starts (the code blocks after a
``<!-- quickstart: NAME -->`` comment) run: the torchvision block as it is, the mmdet config
built, the ``mnet`` lines parsed by the command's own parser, and (slow) the mmdet and ``mnet``
command blocks run as written on a tiny generated set in a folder laid out like the checkout.
"""
import contextlib
import glob
import io
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, has, load_tool

README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PAGES = [README] + DOCS
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PATH = re.compile(r"^(tools|configs|tests|mnet_backbone|docs)/[\w.-]+(/[\w.-]+)*/?$")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "ssdlite320_mnet025_shapes.pth")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _prose(text: str) -> str:
    """The text without fenced code blocks (links and paths there are examples, not links)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: str) -> set:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen, out = {}, set()
    for line in _prose(_read(path)).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def broken_links(path: str) -> list:
    """The relative links of ``path`` whose file or #anchor does not exist."""
    problems = []
    for target in LINK.findall(INLINE_CODE.sub("", _prose(_read(path)))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(resolved):
            problems.append(f"{target}: no file {os.path.relpath(resolved, ROOT)}")
        elif anchor and (not resolved.endswith(".md") or anchor not in anchors(resolved)):
            problems.append(f"{target}: no heading #{anchor} in {os.path.relpath(resolved, ROOT)}")
    return problems


def named_paths(path: str) -> list:
    """The repository paths the prose names in inline code (``tools/deploy.py``)."""
    spans = (span.strip("`") for span in INLINE_CODE.findall(_prose(_read(path))))
    return [span for span in spans if PATH.match(span)]


def quickstart(name: str) -> str:
    """The code of the README block marked ``<!-- quickstart: name -->``."""
    match = re.search(rf"<!-- quickstart: {re.escape(name)} -->\s*```\w*\n(.*?)^```", _read(README),
                      re.M | re.S)
    assert match, f"README.md has no code block marked <!-- quickstart: {name} -->"
    return match.group(1)


def commands(block: str) -> list:
    """The command lines of a bash block (comments dropped, continuations joined)."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if shlex.split(line, comments=True)]


# --- links and paths ---------------------------------------------------------------------------

def test_the_checker_finds_a_broken_link_an_anchor_and_a_path(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `code` title\n\n## Twice\n\n## Twice\n\n"
                    "[ok](#a-code-title) [ok](#twice-1) [ok](https://example.com/x)\n"
                    "[bad](#nowhere) [bad](missing.md) [bad](page.md#twice-2)\n"
                    "`[not a link](gone.md)` and `tools/no_such_tool.py`, `tools/deploy.py`\n"
                    "```\n[in a block](gone.md)\n```\n")
    found = broken_links(str(page))
    assert len(found) == 3
    assert found[0].startswith("#nowhere: no heading #nowhere")
    assert found[1].startswith("missing.md: no file")
    assert found[2].startswith("page.md#twice-2: no heading #twice-2")
    assert named_paths(str(page)) == ["tools/no_such_tool.py", "tools/deploy.py"]


def test_the_docs_exist_and_the_readme_is_a_front_page():
    assert DOCS, "docs/*.md is missing"
    assert len(_read(README).splitlines()) <= 260, "README.md is a front page: move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_named_repository_path_exists(page):
    missing = [p for p in named_paths(page) if not os.path.exists(os.path.join(ROOT, p))]
    assert missing == [], f"{os.path.relpath(page, ROOT)} names files that do not exist"


# --- the weights table -------------------------------------------------------------------------

def test_the_readme_weights_table_is_generated_from_the_entries():
    tool = load_tool("make_weights_table")
    text = _read(README)
    assert tool.replace_table(text, tool.weights_table()) == text, (
        "README.md's weights table is out of date: python tools/make_weights_table.py --write")
    from mnet_backbone.weights import ENTRIES
    table = tool.weights_table()
    assert len(table.splitlines()) == 2 + len(ENTRIES)
    assert "| `keras_1.0_224` | Keras (Google) | 1 | 224 | 70.6 | – | 569 | 4.21 |" in table
    assert "| `timm_1.25_224_ra4` | timm | 1.25 | 224 | 76.924 | 93.234 | 880 | 6.24 |" in table


def test_the_weights_table_check_fails_on_a_stale_table(tmp_path, capsys):
    tool = load_tool("make_weights_table")
    stale = tmp_path / "README.md"
    text = _read(README)
    stale.write_text(text.replace("| `timm_1.25_224_ra4` |", "| `timm_1.25_224_old` |"))
    assert tool.main(["--check", "--readme", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert tool.main(["--write", "--readme", str(stale)]) == 0
    assert stale.read_text() == text
    stale.write_text("# no table here\n")
    assert tool.main(["--check", "--readme", str(stale)]) == 2
    assert "markers" in capsys.readouterr().err


# --- the quick starts --------------------------------------------------------------------------

@pytest.mark.skipif(not has("torchvision"), reason="needs torchvision")
def test_quickstart_torchvision_runs_as_written():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(quickstart("torchvision"), "README.md:torchvision", "exec"), {})
    printed = out.getvalue().splitlines()
    assert printed == ["torch.Size([1, 10])", "dict_keys(['boxes', 'scores', 'labels'])"]


def _sandbox(tmp_path):
    """A folder laid out like the checkout (configs/ copied, tools/ linked) plus the quick
    start's own config, so the README's relative paths work as written there."""
    shutil.copytree(os.path.join(ROOT, "configs"), tmp_path / "configs")
    os.symlink(os.path.join(ROOT, "tools"), tmp_path / "tools")
    config = quickstart("mmdet-config")
    name = re.match(r"# (configs/\S+\.py)", config).group(1)
    (tmp_path / name).write_text(config)
    return name


def test_quickstart_mmdet_config_builds_with_widths_that_follow_alpha(tmp_path, mmdet_models):
    import torch
    from mmengine.config import Config
    name = _sandbox(tmp_path)
    train = commands(quickstart("mmdet-train"))
    assert [c[1] for c in train] == ["tools/make_shapes_dataset.py", "tools/train.py",
                                     "tools/test.py"]
    assert all(os.path.exists(os.path.join(ROOT, c[1])) for c in train)
    assert train[1][2] == train[2][2] == name  # the block trains and tests the config above
    cfg = Config.fromfile(str(tmp_path / name))
    assert cfg.model.backbone.alpha == 0.5
    model = mmdet_models.build(cfg.model).eval()
    with torch.no_grad():
        features = model.extract_feat(torch.rand(1, 3, 128, 128))
    # out_indices (2, 3, 4) at alpha 0.5: 128, 256, 512 channels, then the extra layers
    assert [f.shape[1] for f in features][:3] == [128, 256, 512]


def test_quickstart_mnet_lines_are_valid_commands():
    from mnet_backbone.cli import build_parser
    lines = commands(quickstart("mnet"))
    assert [line[:2] for line in lines] == [["mnet", "predict"], ["mnet", "deploy"],
                                            ["mnet", "predict"]]
    parser = build_parser()
    for line in lines:
        parser.parse_args(line[1:])  # argparse exits (SystemExit) on an unknown argument


@pytest.mark.slow
def test_quickstart_mmdet_blocks_train_and_test_as_written(tmp_path):
    """The config and the three commands, run as written from a checkout-like folder; only the
    generated set is made tiny (8 train / 4 val images)."""
    if not has("mmdet"):
        pytest.skip("needs mmdet")
    name = _sandbox(tmp_path)
    tiny = {"tools/make_shapes_dataset.py": ["--num-train", "8", "--num-val", "4"]}
    for line in commands(quickstart("mmdet-train")):
        assert line[0] == "python"
        run = subprocess.run([sys.executable, *line[1:], *tiny.get(line[1], [])], cwd=tmp_path,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{shlex.join(line)}:\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    work = tmp_path / "work_dirs" / os.path.splitext(os.path.basename(name))[0]
    assert (work / "epoch_30.pth").exists()
    assert "coco/bbox_mAP" in run.stdout + run.stderr


@pytest.mark.slow
def test_quickstart_mnet_block_runs_as_written(tmp_path, monkeypatch):
    """The three ``mnet`` lines, run as written in a folder where the main job's checkpoint is
    the shipped shapes detector and ``data/shapes/val2017`` holds three generated images."""
    if not (has("mmdet") and has("onnxruntime")):
        pytest.skip("needs mmdet and onnxruntime")
    from mnet_backbone.cli import main
    from mnet_backbone.shapes import ShapesSpec, make_shapes_dataset
    _sandbox(tmp_path)
    make_shapes_dataset(str(tmp_path / "data" / "shapes"),
                        ShapesSpec(num_train=1, num_val=3, image_size=(320, 320), seed=5))
    (tmp_path / "work_dirs" / "main_job").mkdir(parents=True)
    shutil.copy(FIXTURE, tmp_path / "work_dirs" / "main_job" / "epoch_30.pth")
    monkeypatch.chdir(tmp_path)
    for line in commands(quickstart("mnet")):
        assert main(line[1:]) == 0, shlex.join(line)
    assert (tmp_path / "deployed" / "deploy.json").exists()
    for out in ("predictions", "predictions_deployed"):
        assert (tmp_path / out / "predictions.json").exists()
        assert len(glob.glob(str(tmp_path / out / "*.jpg"))) == 3
