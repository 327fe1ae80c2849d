import importlib.util
import os
import sys

import pytest
import torch

# Tests measure behaviour, not speed: keep them from fighting over the 2 cores of CI.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")


def pytest_configure(config):
    # `pytest -m "not slow"` is the quick subset for iteration (docs/testing.md); CI runs all.
    config.addinivalue_line(
        "markers", "slow: a long end-to-end run (the main job, a command line on every backend); "
        "deselect with -m 'not slow'")


def has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def load_tool(name: str):
    """``tools/<name>.py`` as a module (the tools are scripts, not a package), so tests call
    their ``main`` as the command line does. Their folder is appended to ``sys.path``, as a
    script's own folder is, so a tool's import of a sibling (``import main_job_report``) works;
    appended, so ``tools/test.py`` never shadows the standard library's ``test``."""
    if TOOLS not in sys.path:
        sys.path.append(TOOLS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mmdet_models():
    """mmdet's MODELS with the package's face, built under mmdet's scope for this test: every
    mmengine Runner makes its own scope the process's current one, so a Runner of an earlier test
    would otherwise decide which registry ``MODELS.build`` searches."""
    if not has("mmdet"):
        pytest.skip("mmdet not installed")
    import mnet_backbone.mmdet_plugin  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield MODELS


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny generated COCO-format detection set (shapes), made once per session."""
    from mnet_backbone.shapes import ShapesSpec, make_shapes_dataset
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(str(root), ShapesSpec(num_train=8, num_val=4, image_size=(128, 128),
                                              max_objects=3, min_size=16, seed=1))
    return str(root)
