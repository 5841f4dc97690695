#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (CPU only, no network, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
$PYTHON -m pip install -q -r requirements-test.txt
# The trainings of the suite write several GB of checkpoints under pytest's temporary folders; keep
# only those of failed tests.
exec $PYTHON -m pytest -q -o tmp_path_retention_policy=failed tests "$@"
