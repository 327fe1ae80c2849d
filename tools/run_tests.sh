#!/usr/bin/env bash
# Set up everything (tools/install.sh, idempotent), lint (ruff.toml) and run the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k cost`.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MNET_VENV:-$ROOT/.venv}"
bash "$ROOT/tools/install.sh" || { echo "set-up failed" >&2; exit 1; }
cd "$ROOT"
"$VENV/bin/python" -m ruff check . || { echo "lint failed (ruff.toml): fix the lines above" >&2; exit 1; }
"$VENV/bin/python" -m pytest tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$rc"
