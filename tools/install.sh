#!/usr/bin/env bash
# One-shot, idempotent set-up of mnet-backbone on a fresh machine:
#   torch/torchvision -> mmcv 2.1.0 with compiled ops -> mmdet 3.3.0, mmpretrain 1.2.0 -> this
#   package (editable) with ExecuTorch and LiteRT -> the LiteRT converter (tools/install_litert.sh).
#
# Usage: bash tools/install.sh            # venv in ./.venv (override with MNET_VENV=path)
#        MNET_WHEEL_CACHE=dir             # where a built mmcv wheel is kept and looked for
#        PIP_FIND_LINKS="dir1 dir2"       # also searched for a ready mmcv wheel
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MNET_VENV:-$ROOT/.venv}"
CACHE="${MNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnet-backbone/wheels}"
MMCV_VERSION=2.1.0

log() { printf '\n[install] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar off)

log "build tools (setuptools<82 keeps pkg_resources, which mmcv's build and mmengine import)"
"${PIP[@]}" -q "setuptools>=77,<82" wheel ninja

log "torch 2.14.1 / torchvision 0.29.1"
"${PIP[@]}" -q torch==2.14.1 torchvision==0.29.1

have_mmcv_ops() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; }

if have_mmcv_ops; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    mkdir -p "$CACHE"
    links=(--find-links "$CACHE")
    for d in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$d"); done
    # --only-binary: take a ready wheel (cache or PIP_FIND_LINKS) but never PyPI's op-less sdist.
    if "${PIP[@]}" -q --only-binary mmcv "${links[@]}" "mmcv==$MMCV_VERSION" 2>/dev/null \
            && have_mmcv_ops; then
        log "installed mmcv $MMCV_VERSION from a ready wheel"
    else
        log "building mmcv $MMCV_VERSION with ops from source (about 11 minutes on 2 cores)"
        work="$(mktemp -d)"
        "$PY" -m pip download -q --no-deps --no-binary :all: -d "$work" "mmcv==$MMCV_VERSION"
        tar -xzf "$work"/mmcv-*.tar.gz -C "$work"
        src="$work/mmcv-$MMCV_VERSION"
        # torch 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --no-build-isolation --no-deps -w "$CACHE" "$src"
        "${PIP[@]}" -q --only-binary mmcv --find-links "$CACHE" "mmcv==$MMCV_VERSION"
        rm -rf "$work"
        have_mmcv_ops || { echo "mmcv $MMCV_VERSION was built but mmcv.ops does not import" >&2; exit 1; }
    fi
fi

log "mnet-backbone (editable) with its mmdet, cls (mmpretrain), torchvision, weights, deploy, mobile (ExecuTorch), litert and dev extras"
"${PIP[@]}" -q -e "$ROOT[mmdet,cls,torchvision,weights,deploy,mobile,litert,dev]"

# The LiteRT converter (litert-torch) is not in the litert extra: pip's resolution of it would
# downgrade typing_extensions (setup.py says why); its pinned import set goes in without deps.
log "LiteRT converter (litert-torch) into the venv, pinned, without dependencies"
MNET_VENV="$VENV" bash "$ROOT/tools/install_litert.sh"

# --- real ImageNet weights for the tests (mnet_backbone.weights.tf_graph), fetched once ----------
# Google's MobileNetV1 1.0/224 as a TF frozen graph, shipped in the PyPI sdist nudity==0.2.3 (MIT):
# pip downloads it, retrained_graph.pb is checked (SHA-256) and kept in
# ${MNET_CACHE:-${XDG_CACHE_HOME:-~/.cache}/mnet-backbone}/tf_graphs/; nothing is fetched at test time.
log "real MobileNetV1 ImageNet graph (PyPI nudity==0.2.3) into the local cache (once)"
"$PY" -m mnet_backbone.weights --fetch-imagenet-graph
# --- end of real ImageNet weights ----------------------------------------------------------------

"$PY" -c "import torch, mmcv, mmdet, mmpretrain, mnet_backbone.mmpretrain_plugin; print('torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmpretrain', mmpretrain.__version__)"
"$PY" -c "import torch, torchvision, executorch.runtime, ai_edge_litert.interpreter, litert_torch; assert (torch.__version__.split('+')[0], torchvision.__version__.split('+')[0]) == ('2.14.1', '0.29.1'), 'the mobile runtimes changed torch'; print('ExecuTorch and LiteRT ready')" 2>&1 | tail -1
log "done: activate with 'source $VENV/bin/activate'"
