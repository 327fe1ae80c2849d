import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
# The version is written once, in the package; read as text so that setup needs no torch.
VERSION = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "mnet_backbone" / "__init__.py")
                    .read_text(), re.M).group(1)

# What both OpenMMLab faces stand on (mnet_backbone.openmmlab).
OPENMMLAB = ["mmengine==0.10.7", "mmcv==2.1.0", "setuptools>=77,<82"]
MMDET = OPENMMLAB + ["mmdet==3.3.0", "pycocotools",
                     "psutil", "seaborn"]  # psutil, seaborn: mmdet's analysis tools

setup(
    name="mnet-backbone",
    version=VERSION,
    description="MobileNetV1 (Howard et al. 2017) for PyTorch, MMDetection 3.x and torchvision",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["mnet_backbone", "mnet_backbone.*"]),
    install_requires=["torch>=2.0", "numpy", "Pillow"],
    # The `mnet` command (predict, deploy, convert-weights, flops, info); docs/command_line.md.
    entry_points={"console_scripts": ["mnet = mnet_backbone.cli:main"]},
    extras_require={
        # mmcv 2.1.0 must be built with compiled ops (tools/install.sh does it).
        "mmdet": MMDET,
        # Classification with mmpretrain (its ImageClassifier, data sets, metrics, tools); no
        # mmdet needed. mmpretrain 1.2.0 imports on this stack once its undeclared imports are
        # present.
        "cls": OPENMMLAB + ["mmpretrain==1.2.0", "importlib_metadata", "einops", "modelindex",
                        "mat4py"],
        "torchvision": ["torchvision>=0.15"],
        # Reading Google's Keras HDF5 and timm's safetensors ImageNet weights.
        "weights": ["h5py", "safetensors"],
        # Deployment runtimes: ONNX export (onnx, onnxscript), ONNX Runtime and OpenVINO.
        "deploy": ["onnx", "onnxruntime", "onnxscript", "openvino", "nncf"],
        # Mobile runtimes (docs/install.md, docs/deploy.md "Mobile runtimes"). ExecuTorch 1.5.1: the
        # .pte exporter (XNNPACK partitioner, PT2E int8 quantizer) and its runtime. pip adds
        # torchao 0.18, coremltools 9.0 and ~20 small packages (hydra-core, omegaconf, tiktoken,
        # tokenizers, sentencepiece, hypothesis, ...); torch 2.14.1 / torchvision 0.29.1 stay
        # (pip install --dry-run, 2026-12-04).
        "mobile": ["executorch==1.5.1"],
        # LiteRT's runtime (.tflite on XNNPACK); pip adds only backports.strenum. Its converter,
        # litert-torch 0.10, is deliberately not listed: resolved by pip it downgrades
        # typing_extensions 4.16 -> 4.12.2 (litert-converter 0.5 pins xdsl==0.28.0, which pins
        # typing-extensions<4.13) and anyio, and adds ~40 packages the converter never imports
        # (transformers, kagglehub, pydantic, ...); tools/install_litert.sh installs the set it
        # does import, pinned and without dependencies (tools/install.sh runs it).
        "litert": ["ai-edge-litert==2.3.0"],
        # Test-only peers: the parity tests compare against timm and Keras 3 (torch backend).
        # scikit-image: real photos for the ImageNet-weight tests (tests/real_weights.py); ruff:
        # the lint CI runs (ruff.toml).
        "dev": ["pytest", "matplotlib", "timm", "keras>=3", "h5py", "safetensors", "onnx",
                "onnxruntime", "onnxscript", "scikit-image", "ruff"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: PyTorch",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
