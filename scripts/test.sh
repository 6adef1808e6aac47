#!/usr/bin/env bash
# The test suite: set up .venv if needed, lint, then run pytest (extra arguments are passed on).
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "all,dev,ray"
ruff check src tests benchmarks
exec python -m pytest "$@"
