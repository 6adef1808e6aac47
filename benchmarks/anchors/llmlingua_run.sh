#!/usr/bin/env bash
# Compress the exported prompt-stage tasks with the llmlingua package (LLMLingua and LongLLMLingua) in
# its own virtual environment, on the same Gemma 3 270M tokenzip uses.
#   bash benchmarks/anchors/llmlingua_run.sh results/prompt/tasks.jsonl results/prompt/llmlingua.jsonl [--ratios 0.5]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${LLMLINGUA_VENV:-/work/venvs/llmlingua}"
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import llmlingua" 2>/dev/null \
    || bash "$root/benchmarks/anchors/llmlingua_setup.sh"
gemma_dir="$("$root/.venv/bin/python" -c 'from tokenzip.models.gemma import ensure_cache; print(ensure_cache())')"
exec "$venv/bin/python" "$root/benchmarks/anchors/llmlingua_run.py" "$1" "$2" --gemma-dir "$gemma_dir" \
    --view "$venv/gemma-3-270m-view" "${@:3}"
