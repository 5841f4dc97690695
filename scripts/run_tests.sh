#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (CPU only, no network, a few minutes) and list
# the 20 slowest tests. Extra arguments go to pytest: `bash scripts/run_tests.sh -m "not slow"` is the
# inner loop. TEST_WORKERS=2 (default) runs the test files on two pytest-xdist workers, one file per
# worker at a time (a file's module fixtures are made once), the minutes-long ones first;
# TEST_WORKERS=0 runs them in this process.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
cd "$(dirname "$0")/.."
bct_env PYTHON python3
bct_env TEST_WORKERS 2
$PYTHON -m pip install -q -r requirements-test.txt
# The report page's browser test opens it in headless Chromium (Debian's package); without it, and with no
# way to install it here, that test is skipped and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  if [ "$(id -u)" = 0 ] || [ -n "${SUDO}" ]; then
    { ${SUDO} apt-get update -qq && DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || echo "note: could not install chromium with apt-get; the report page's browser test is skipped"
  fi
fi
# The trainings of the suite write several GB of checkpoints under pytest's temporary folders; keep
# only those of failed tests.
# The files come in the order tests/conftest.py gives them (the minutes-long ones first), which
# --no-loadscope-reorder keeps.
PARALLEL=(); if [ "${TEST_WORKERS}" != 0 ]; then PARALLEL=(-n "${TEST_WORKERS}" --dist loadfile --no-loadscope-reorder); fi
exec $PYTHON -m pytest -q -o tmp_path_retention_policy=failed --durations=20 ${PARALLEL[@]+"${PARALLEL[@]}"} tests "$@"
