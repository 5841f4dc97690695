#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (CPU only, no network, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
$PYTHON -m pip install -q -r requirements-test.txt
exec $PYTHON -m pytest -q tests "$@"
