#!/usr/bin/env bash
# The test suite: set up .venv if needed, lint, then run pytest (extra arguments are passed on).
# Tests run in TOKENZIP_TEST_WORKERS parallel processes (pytest-xdist; default: 2, or 1 on a one-CPU machine),
# each with one torch thread; 0 runs them in this process (e.g. for pdb). Ray's tests share one worker
# (xdist_group "ray").
set -euo pipefail
# shellcheck disable=SC1091
# extras: everything the suite exercises; llamacpp builds llama.cpp's server from source once (~8 min on
# 2 cores; pip caches the wheel) for the proxy test. TOKENZIP_EXTRAS overrides the list.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "${TOKENZIP_EXTRAS:-all,dev,ray,llamacpp}"
ruff check src tests benchmarks
workers="${TOKENZIP_TEST_WORKERS:-$(( $(nproc) < 2 ? 0 : 2 ))}"
if [ "$workers" != 0 ]; then
    set -- -n "$workers" --dist loadgroup "$@"
fi
exec python -m pytest "$@"
