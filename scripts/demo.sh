#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `tokenzip demo` (extra arguments are passed on).
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "smollm2,bench"
exec tokenzip demo "$@"
