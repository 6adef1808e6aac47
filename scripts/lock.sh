#!/usr/bin/env bash
# Refresh the committed locks from pyproject.toml (pip-tools' pip-compile, run in a throwaway venv):
#   requirements/lock.txt      every extra, newest versions the ranges allow (what the README's commands install)
#   requirements/lock-min.txt  the same with the lowest supported transformers (CI's second environment)
# Usage: bash scripts/lock.sh          (about 3 minutes; needs the package index, nothing else)
# The locks stay inside pyproject's caps; releases above them are tried by scripts/canary.sh, which says
# when a cap can be raised (then: raise it, run this, run .ci/run; docs/install.md#how-a-new-release-gets-in).
# Pins: requirements/pins.txt (torch: the CPU build setup.sh installs first; written into the locks as
# torch==2.13.0, which a CPU or a CUDA build of that release satisfies) and requirements/pins-min.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
"${PYTHON:-python3}" -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q "pip-tools==7.6.2"
extras="all,dev,ray,serve,parallel,llamacpp"
compile() {  # $1 constraints file, $2 output
    CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/venv/bin/pip-compile" -q --upgrade --allow-unsafe --strip-extras \
        --no-emit-index-url --no-emit-find-links --extra "$extras" -c "$1" -o "$2" pyproject.toml
    sed -i 's/^torch==\([0-9.]*\)+cpu$/torch==\1/' "$2"
    # the "all" extra names tokenzip itself: drop that line (and its "via" comments), the project is not pinned
    sed -i '/^tokenzip @ /,/^[^ ]/{/^tokenzip @ /d;/^    #/d}' "$2"
}
mkdir -p requirements
compile requirements/pins.txt requirements/lock.txt
compile requirements/pins-min.txt requirements/lock-min.txt
grep -h '^transformers==' requirements/lock.txt requirements/lock-min.txt
