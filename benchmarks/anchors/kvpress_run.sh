#!/usr/bin/env bash
# Run the kvpress anchor (kvpress_run.py) in its own environment on tokenzip's cached Gemma 3 270M.
#   bash benchmarks/anchors/kvpress_run.sh TASKS.jsonl OUT_DIR [--presses ...] [--ratios ...] [--threads N]
# TASKS.jsonl comes from `tokenzip bench --export-tasks`; rows go to OUT_DIR/kvpress.jsonl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${KVPRESS_VENV:-/work/venvs/kvpress}"
[ -x "$venv/bin/python" ] || bash "$root/benchmarks/anchors/kvpress_setup.sh"
gemma_dir="$("$root/.venv/bin/python" -c 'from tokenzip.models.gemma import ensure_cache; print(ensure_cache())')"
exec "$venv/bin/python" "$root/benchmarks/anchors/kvpress_run.py" "$1" "$2" --gemma-dir "$gemma_dir" "${@:3}"
