#!/usr/bin/env bash
# Run the kvpress anchor (kvpress_run.py) in its own environment on a model tokenzip has cached.
#   bash benchmarks/anchors/kvpress_run.sh TASKS.jsonl OUT_DIR [--model NAME] [--presses ...] [--ratios ...]
#       [--samples N] [--threads N]
# TASKS.jsonl comes from `tokenzip bench --export-tasks`; rows go to OUT_DIR/kvpress.jsonl. NAME is tokenzip's
# short name (gemma-3-270m, smollm2-135m); by default the "model" the export was written for.
# TOKENZIP_PYTHON: the Python with tokenzip installed (default: the repository's .venv), used only to find (or
# build) the model's verified cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${KVPRESS_VENV:-/work/venvs/kvpress}"
tokenzip_python="${TOKENZIP_PYTHON:-$root/.venv/bin/python}"
[ $# -ge 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
tasks="$1" out="$2"
shift 2
model="" rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --model=*) model="${1#--model=}"; shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
if [ -z "$model" ]; then
    model="$("$tokenzip_python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline()).get("model", ""))' \
        "$tasks")"
fi
case "$model" in
    gemma-3-270m) module=tokenzip.models.gemma ;;
    smollm2-135m) module=tokenzip.models.smollm2 ;;
    *) echo "kvpress_run.sh: no cached model '$model'; give --model gemma-3-270m or --model smollm2-135m" >&2
       exit 2 ;;
esac
[ -x "$venv/bin/python" ] || bash "$root/benchmarks/anchors/kvpress_setup.sh"
model_dir="$("$tokenzip_python" -c "from $module import ensure_cache; print(ensure_cache())")"
exec "$venv/bin/python" "$root/benchmarks/anchors/kvpress_run.py" "$tasks" "$out" --model-dir "$model_dir" \
    ${rest[@]+"${rest[@]}"}
