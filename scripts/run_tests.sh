#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (CPU only, no network, a few minutes) and list
# the 20 slowest tests. Extra arguments go to pytest: `bash scripts/run_tests.sh -m "not slow"` is the
# inner loop (under a minute on 2 cores).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
cd "$(dirname "$0")/.."
bct_env PYTHON python3
$PYTHON -m pip install -q -r requirements-test.txt
# The trainings of the suite write several GB of checkpoints under pytest's temporary folders; keep
# only those of failed tests.
exec $PYTHON -m pytest -q -o tmp_path_retention_policy=failed --durations=20 tests "$@"
