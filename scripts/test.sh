#!/usr/bin/env bash
# The whole test suite: installs the package and the real services the tests start, then runs pytest.
# Extra arguments go to pytest (e.g. `-m slow` for the soak and load runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-services
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
