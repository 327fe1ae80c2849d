#!/usr/bin/env bash
# Optional benchmark peer: LiteRT (TFLite + XNNPACK) and litert-torch, for tools/benchmark.py.
#
# `pip install ai-edge-litert litert-torch` into the package's venv would add ~40 packages the
# benchmark never uses (transformers, tokenizers, kagglehub, pydantic, ...) and downgrade the
# venv's typing_extensions (pip --dry-run, 2026-12-02). Instead the set the converter and the
# interpreter import is installed without dependencies into a folder of its own, which
# tools/benchmark.py appends to sys.path (after the venv's packages, so nothing the package uses
# is shadowed). Usage: bash tools/install_litert.sh   (MNET_LITERT_DIR overrides the folder)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MNET_VENV:-$ROOT/.venv}/bin/python"
DIR="${MNET_LITERT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mnet-backbone/litert}"
"$PY" -m pip install --progress-bar off -q --no-deps --target "$DIR" \
    ai-edge-litert==2.3.0 litert-torch==0.10.0 litert-converter==0.5.0 ai-edge-quantizer==0.10.0 \
    absl-py==2.5.1 immutabledict==4.3.1 jax==0.10.2 jaxlib==0.10.2 opt_einsum==3.4.0 \
    multipledispatch==1.0.0 ml_dtypes==0.7.0 flatbuffers==25.12.19 tabulate==0.10.0 \
    torchao==0.18.0 xdsl==0.75.0 lark==1.3.1 wadler_lindig==0.1.8 jaxtyping==0.3.11
"$PY" - "$DIR" <<'PY'
import sys
sys.path.append(sys.argv[1])
import ai_edge_litert.interpreter, litert_torch  # noqa: E401,F401
print(f"LiteRT peer ready in {sys.argv[1]} (tools/benchmark.py finds it there)")
PY
