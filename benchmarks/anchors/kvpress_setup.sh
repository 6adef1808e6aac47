#!/usr/bin/env bash
# Create the virtual environment the kvpress anchor runs in: kvpress 0.5.5 (NVIDIA/kvpress), which
# pins transformers < 5.3, with transformers 5.2.0. Kept outside the repository: $KVPRESS_VENV,
# default /work/venvs/kvpress.
#
# kvpress is installed without its declared dependencies so pip cannot pull a CUDA torch; the modules
# it imports at start-up are installed explicitly. torch is not downloaded again: when the project's
# .venv exists, its CPU build of torch is linked into the new environment (through a .pth file);
# otherwise torch is installed from the package index (PROJECT_VENV: another project venv to link torch from,
# e.g. from a git worktree without its own .venv). Run: bash benchmarks/anchors/kvpress_setup.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${KVPRESS_VENV:-/work/venvs/kvpress}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" "transformers==5.2.0" "tokenizers>=0.22,<0.24" "huggingface_hub>=1.3,<2" "safetensors" "numpy<3" \
    "cachetools>=5.5.2,<6" "requests>=2.32.3,<3" "fire>=0.6,<0.7" "datasets>=2.21" "pandas>=2.2.2,<3" "psutil" \
    "sympy" "networkx" "jinja2" "fsspec" "filelock" "typing-extensions" "tqdm" "pyyaml" "regex" "packaging"
"${pip[@]}" --no-deps "kvpress==0.5.5" "accelerate==1.10.1"

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
main_site="$(ls -d "${PROJECT_VENV:-$root/.venv}"/lib/python3*/site-packages 2>/dev/null | head -n1 || true)"
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "$main_site" ] && [ -d "$main_site/torch" ]; then
        links="$venv/torch-from-project"
        mkdir -p "$links"
        for entry in "$main_site"/torch "$main_site"/torchgen "$main_site"/torch-*.dist-info; do
            [ -e "$entry" ] && ln -sfn "$entry" "$links/$(basename "$entry")"
        done
        echo "$links" > "$site/torch-from-project.pth"
    else
        "${pip[@]}" "torch>=2.4"
    fi
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import torch, transformers, kvpress; from importlib.metadata import version; \
print('kvpress venv ready: torch', torch.__version__, 'transformers', transformers.__version__, 'kvpress', version('kvpress'))"
