#!/usr/bin/env bash
# The LiteRT converter (litert-torch) and runtime (ai-edge-litert), for the package's .tflite
# export (mnet_backbone.deploy.mobile) and the benchmarks' LiteRT rows; tools/install.sh runs it.
#
# `pip install litert-torch` into the package's venv would add ~40 packages the converter never
# imports (transformers, tokenizers, kagglehub, pydantic, ...) and downgrade the venv's
# typing_extensions 4.16 -> 4.12.2 and anyio (litert-converter 0.5 pins xdsl==0.28.0, which pins
# typing-extensions<4.13; pip --dry-run, 2026-12-02 and 2026-12-04). Instead the set the converter
# and the interpreter import is installed pinned and without dependencies: it only adds packages
# (xdsl 0.75 instead of 0.28, which converts MobileNetV1 and the SSD detectors here), and changes
# none the venv already has (pip freeze before / after, 2026-12-04).
#
# Usage: bash tools/install_litert.sh            # into the venv (MNET_VENV overrides it)
#        MNET_LITERT_DIR=dir bash tools/install_litert.sh   # into a folder of its own instead,
#            which tools/benchmark.py --litert-dir appends to sys.path (benchmark peer only)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MNET_VENV:-$ROOT/.venv}/bin/python"
TARGET=()
if [ -n "${MNET_LITERT_DIR:-}" ]; then TARGET=(--target "$MNET_LITERT_DIR"); fi
"$PY" -m pip install --progress-bar off -q --no-deps "${TARGET[@]}" \
    ai-edge-litert==2.3.0 litert-torch==0.10.0 litert-converter==0.5.0 ai-edge-quantizer==0.10.0 \
    absl-py==2.5.1 immutabledict==4.3.1 jax==0.10.2 jaxlib==0.10.2 opt_einsum==3.4.0 \
    multipledispatch==1.0.0 ml_dtypes==0.7.0 flatbuffers==25.12.19 tabulate==0.10.0 \
    torchao==0.18.0 xdsl==0.75.0 lark==1.3.1 wadler_lindig==0.1.8 jaxtyping==0.3.11 \
    backports.strenum==1.2.8
"$PY" - "${MNET_LITERT_DIR:-}" <<'PY'
import sys
if sys.argv[1]:
    sys.path.append(sys.argv[1])
import ai_edge_litert.interpreter, litert_torch  # noqa: E401,F401
print(f"LiteRT converter and runtime ready ({sys.argv[1] or 'in the venv'})")
PY
