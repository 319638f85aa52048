#!/usr/bin/env bash
# The embedded demo: installs the package, then runs `livemon demo` (broker, worker, simulator, web page).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/livemon demo "$@"
