#!/usr/bin/env bash
# The test suite: set up .venv if needed, lint, then run pytest (extra arguments are passed on).
set -euo pipefail
# shellcheck disable=SC1091
# extras: everything the suite exercises; llamacpp builds llama.cpp's server from source once (~8 min on
# 2 cores; pip caches the wheel) for the proxy test. TOKENZIP_EXTRAS overrides the list.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "${TOKENZIP_EXTRAS:-all,dev,ray,llamacpp}"
ruff check src tests benchmarks
exec python -m pytest "$@"
