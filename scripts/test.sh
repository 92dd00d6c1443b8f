#!/usr/bin/env bash
# scripts/test.sh -- install dependencies, build the release preset and run every test.
# Extra arguments go to ctest, e.g. `scripts/test.sh -L package` or `-R nn`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j 2
ctest --preset release "$@"
