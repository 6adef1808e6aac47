"""The documentation runs as written: README.md and every page of docs/.

Conventions (docs/testing.md says the same to writers):

- A fenced block whose info string is exactly ``python`` runs. The blocks of one page run in order, in one
  namespace (``exec`` in this process), in a fresh temporary working directory, so a page may build on its
  earlier blocks and write relative paths. Tracebacks point at the page and its line.
- A block fenced ``python no-run`` (any info string after ``python``) is shown but not run: a client that needs
  a running server, a module file that must not be registered twice, a long benchmark.
- ``bash`` blocks are not run, but every ``tokenzip <command> [<subcommand>]`` in them must exist in the CLI and
  every ``--flag`` written after it must be one that (sub)command's parser accepts, spelled out in full.
- Relative links between pages and to ``benchmarks/`` must point at existing files (and headings).

Running the pages needs the real offline models (Gemma 3 270M, and MiniLM / DINOv2 for docs/layers.md), so that
test is ``slow``; a page naming a model that is not installed is skipped with the extra to install. Each model
is loaded once for the whole module (``tz.load_model`` is memoized here), and the method and task registries
forget what a page registered (docs/extending.md registers examples).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(.*)$")


@dataclass
class Block:
    info: str  # the fence's info string: "python", "python no-run", "bash", ...
    line: int  # 1-based line of the first code line in the page
    code: str


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown page (fences at the start of a line, as these pages write them)."""
    found, info, start, lines = [], None, 0, []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(text)
        if info is None:
            if match:
                info, start, lines = match.group(1).strip(), number + 1, []
        elif text.rstrip() == "```":
            found.append(Block(info, start, "\n".join(lines) + "\n"))
            info = None
        else:
            lines.append(text)
    assert info is None, f"{path.name}: a code fence opened at line {start - 1} is never closed"
    return found


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_pages_have_blocks_and_known_fences():
    """Every page is found, and every python fence is either run (``python``) or says it is not (``no-run``)."""
    assert (ROOT / "docs" / "README.md") in PAGES and len(PAGES) > 5
    for path in PAGES:
        for block in blocks(path):
            words = block.info.split()
            if words and words[0] == "python":
                assert words[1:] in ([], ["no-run"]), f"{page_id(path)}:{block.line}: unknown fence {block.info!r}"


# --- the Python blocks run --------------------------------------------------------------------------------------

def _canonical(dtype, device) -> tuple[str, str]:
    name = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    name = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(name, name)
    return name, "cpu" if device is None else str(device)


@pytest.fixture(scope="module")
def shared_models():
    """``tz.load_model`` memoized for the module: every page that loads Gemma gets the same one. The pages run on
    one torch thread: their inputs are a few hundred tokens, and on a shared machine threads that must share
    cores run several times slower (measured here: 125 s for every page on one thread, 323 s on two while other
    jobs ran)."""
    import torch

    import tokenzip as tz

    real = tz.load_model
    loaded: dict = {}

    def load_model(name_or_path, dtype=None, device=None, **kwargs):
        key = (name_or_path, *_canonical(dtype, device), tuple(sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = real(name_or_path, dtype=dtype, device=device, **kwargs)
        return loaded[key]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tz, "load_model", load_model)
            yield loaded
    finally:
        torch.set_num_threads(threads)


def _missing_models(code: str) -> list[str]:
    import tokenzip as tz

    named = set(re.findall(r"load_model\(\s*[\"']([^\"']+)[\"']", code))
    rows = {row["name"]: row for row in tz.list_models()}
    return [f"{name} ({rows[name]['install']})" for name in sorted(named)
            if name in rows and not rows[name]["installed"]]


@pytest.mark.slow
@pytest.mark.filterwarnings("error:kvzip. no tokenizer given")  # every page passes KVzip its tokenizer
@pytest.mark.parametrize("path", [p for p in PAGES if any(b.info == "python" for b in blocks(p))], ids=page_id)
def test_page_runs_as_written(path, shared_models, tmp_path, monkeypatch, capsys):
    from tokenzip.bench.kinds.base import KINDS
    from tokenzip.bench.tasks import TASKS
    from tokenzip.method import METHODS
    from tokenzip.models.catalog import MODELS
    from tokenzip.models.families import FAMILIES

    runnable = [b for b in blocks(path) if b.info == "python"]
    missing = _missing_models("".join(b.code for b in runnable))
    if missing:
        pytest.skip(f"{page_id(path)} needs models that are not installed: {', '.join(missing)}")
    monkeypatch.chdir(tmp_path)
    registries = (METHODS, TASKS, KINDS, FAMILIES, MODELS)
    before = [set(r) for r in registries]  # the built-in entries load now, so that only the page's own are forgotten
    module = types.ModuleType(f"docs_{path.stem}")  # a real module: dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    started = time.perf_counter()
    try:
        for block in runnable:
            # padded so that tracebacks give the page's own line numbers
            code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
            exec(code, namespace)
    finally:
        for entries, known in zip(registries, before, strict=True):
            for added in set(entries) - known:
                entries.remove(added)
    with capsys.disabled():
        print(f"\n{page_id(path)}: {len(runnable)} block(s) in {time.perf_counter() - started:.1f} s", end="")


# --- the commands in bash blocks exist, with their flags -------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like usage lines: fall back to whitespace
        return line.split("#")[0].split()


def shown_commands() -> list[tuple[str, list[str], list[str]]]:
    """``(where, [command, subcommand...], [--flags])`` for every ``tokenzip ...`` in a bash block."""
    found = []
    for path in PAGES:
        for block in blocks(path):
            if block.info != "bash":
                continue
            logical, first = "", None
            for offset, text in enumerate(block.code.splitlines()):
                first = block.line + offset if not logical else first
                if text.rstrip().endswith("\\"):
                    logical += text.rstrip()[:-1] + " "
                    continue
                logical += text
                current = None
                for word in _words(logical):
                    if word == "tokenzip":
                        current = (f"{page_id(path)}:{first}", [], [])
                        found.append(current)
                    elif current is not None:
                        flag = word.strip("[]()|")
                        if flag.startswith("--"):
                            current[2].append(flag.split("=")[0])
                        elif not current[2] and len(current[1]) < 2 and re.fullmatch(r"[a-z][a-z-]*", word):
                            current[1].append(word)  # command, then a subcommand (checked below)
                logical = ""
    return found


def test_every_shown_command_exists_with_its_flags():
    from tokenzip.cli import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    shown = shown_commands()
    assert len(shown) > 20, "the docs show tokenzip commands in bash blocks"
    problems, helped = [], set()
    for where, names, flags in shown:
        target, path = parser, ["tokenzip"]
        if names:
            if names[0] not in commands:
                problems.append(f"{where}: no command `tokenzip {names[0]}` (known: {', '.join(commands)})")
                continue
            target = commands[names[0]]
            path.append(names[0])
            nested = _subcommands(target)
            if nested:
                if len(names) < 2 or names[1] not in nested:
                    problems.append(f"{where}: `tokenzip {names[0]}` needs one of: {', '.join(nested)}")
                    continue
                target = nested[names[1]]
                path.append(names[1])
        key = " ".join(path)
        if key not in helped:  # what `tokenzip ... --help` prints: it must render
            assert target.format_help()
            helped.add(key)
        known = _options(target) | _options(parser)
        problems += [f"{where}: `{key}` has no option {flag}" for flag in flags if flag not in known]
    assert not problems, "\n".join(problems)


# --- links -----------------------------------------------------------------------------------------------------

def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    inside, anchors = False, set()
    for text in path.read_text(encoding="utf-8").splitlines():
        if text.startswith("```"):
            inside = not inside
        elif not inside and text.startswith("#"):
            anchors.add(_anchor(text.lstrip("#")))
    return anchors


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_relative_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not problems, f"{page_id(path)}:\n" + "\n".join(problems)


def test_docs_folder_is_indexed():
    """docs/README.md links every page of docs/."""
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = [p.name for p in PAGES if p.parent.name == "docs" and p.name != "README.md"]
    missing = [name for name in pages if f"({name})" not in index]
    assert not missing, f"docs/README.md does not link: {', '.join(missing)}"

