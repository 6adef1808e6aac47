#!/usr/bin/env bash
# Create the virtual environment the llmlingua anchor runs in: llmlingua 0.2.2 (microsoft/LLMLingua)
# with transformers 4.57.6, the last 4.x release (Gemma 3 needs >= 4.50; llmlingua was written for
# the 4.x cache API). Kept outside the repository: $LLMLINGUA_VENV, default /work/venvs/llmlingua.
#
# torch is not downloaded again: when the project's .venv exists, its CPU build of torch is linked
# into the new environment (only torch, through a .pth file); otherwise torch is installed from the
# package index. Run: bash benchmarks/anchors/llmlingua_setup.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${LLMLINGUA_VENV:-/work/venvs/llmlingua}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" "transformers==4.57.6" "tokenizers>=0.22,<0.23" "tiktoken" "nltk" "numpy" "safetensors" "psutil" \
    "sympy" "networkx" "jinja2" "fsspec" "filelock" "typing-extensions"
# llmlingua and accelerate declare torch as a dependency; install them without letting pip pull a CUDA torch.
"${pip[@]}" --no-deps "llmlingua==0.2.2" "accelerate==1.10.1"

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
main_site="$(ls -d "$root"/.venv/lib/python3*/site-packages 2>/dev/null | head -n1 || true)"
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
"$venv/bin/python" -c "import torch, transformers, llmlingua; print('llmlingua venv ready:', 'torch', torch.__version__, \
'transformers', transformers.__version__, 'llmlingua', llmlingua.__version__ if hasattr(llmlingua, '__version__') else '0.2.2')"
