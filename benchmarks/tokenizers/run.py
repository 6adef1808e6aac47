"""Benchmark of the tokenizer stage: BPE vs SuperBPE at 8k/32k/64k, and token premiums of the offline models.

Every training run is a fresh `tokenzip tokenizers train` process on the default corpus (so its peak RSS
is its own); each trained tokenizer is then measured on the corpus' held-out part (in domain) and on two
out-of-domain English texts: the English source strings of the gettext catalogs on this machine, and the
licence texts in /usr/share/common-licenses. Run from the repository root:

    python benchmarks/tokenizers/run.py --work /tmp/tokenzip-tokbench

It writes benchmarks/tokenizers/results.json, curves.png and audit/ (via `tokenzip tokenizers audit`),
and prints the markdown tables recorded in benchmarks/tokenizers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [("bpe", 8000, None), ("superbpe", 8000, None), ("bpe", 32000, None), ("superbpe", 32000, None),
        ("bpe", 64000, None), ("superbpe", 64000, None), ("unigram", 32000, None),
        ("superbpe", 32000, 8000), ("superbpe", 32000, 24000), ("superbpe", 8000, 2000), ("superbpe", 8000, 6000)]
BASELINE = """import resource, tokenzip.cli
from tokenzip.tokenizers.corpus import default_corpus
peak = lambda: round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
imported = peak()
default_corpus()
print(imported, peak())"""


def run_name(algo: str, vocab: int, transition: int | None) -> str:
    return f"{algo}-{vocab}" + (f"-t{transition}" if transition else "")


def train_all(work: Path) -> dict[str, dict]:
    reports = {}
    for algo, vocab, transition in RUNS:
        name = run_name(algo, vocab, transition)
        out = work / name
        if not (out / "training_report.json").is_file():
            cmd = ["tokenzip", "tokenizers", "train", "--algo", algo, "--vocab", str(vocab), "--out", str(out),
                   "--no-progress"] + (["--transition", str(transition)] if transition else [])
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        reports[name] = json.loads((out / "training_report.json").read_text())
    return reports


def english_out_of_domain() -> dict[str, list[str]]:
    from tokenzip.tokenizers.catalogs import find_catalogs, read_mo
    from tokenzip.tokenizers.clean import clean_ui_string

    msgids = set()
    for cat in find_catalogs():
        try:
            msgids.update(read_mo(cat.path))
        except (OSError, ValueError):
            continue
    english = sorted({t for t in (clean_ui_string(m) for m in msgids) if t})
    licences = [p.read_text(encoding="utf-8", errors="replace")
                for p in sorted(Path("/usr/share/common-licenses").glob("*")) if p.is_file()]
    return {"catalog English (UI strings)": english, "licence texts": licences}


def measure(work: Path, reports: dict[str, dict]) -> dict[str, dict]:
    from tokenizers import Tokenizer

    from tokenzip.tokenizers.corpus import default_corpus
    from tokenzip.tokenizers.pretokenize import splitter
    from tokenzip.tokenizers.replay import check_against_stock

    corpus = default_corpus()
    extra = english_out_of_domain()
    out = {"texts": {k: {"strings": len(v), "bytes": sum(len(t.encode()) for t in v)} for k, v in extra.items()}}
    # how many pieces each pre-tokenizer makes: no tokenizer using it can need fewer tokens
    pieces = {}
    for superwords in (False, True):
        split = splitter(superwords)
        pieces["superword" if superwords else "subword"] = sum(len(split.pre_tokenize_str(t)) for t in corpus.heldout)
    out["heldout_pieces"] = pieces
    out["heldout_bytes"] = corpus.heldout_bytes
    imported, loaded = subprocess.run([sys.executable, "-c", BASELINE], check=True, capture_output=True,
                                      text=True).stdout.split()
    out["baseline_rss_mb"] = {"after imports": int(imported), "with corpus loaded": int(loaded)}
    from tokenzip.tokenizers.catalogs import find_catalogs
    from tokenzip.tokenizers.parallel import alignment_sizes

    catalogs = find_catalogs()
    out["catalogs"] = {"files": len(catalogs), "by source": {s: sum(c.source == s for c in catalogs)
                                                             for s in sorted({c.source for c in catalogs})}}
    out["alignment_sizes"] = alignment_sizes([30, 40, 50, 60], catalogs)
    out["runs"] = {}
    for name, report in reports.items():
        tok = Tokenizer.from_file(str(work / name / "tokenizer.json"))
        row = {"held-out bytes/token": report["heldout"]["bytes/token"], "held-out tokens": report["heldout"]["tokens"]}
        for label, texts in extra.items():
            n = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
            row[f"{label} bytes/token"] = out["texts"][label]["bytes"] / n
            row[f"{label} tokens"] = n
        if report["algo"] == "superbpe":
            sample = [t for t in corpus.heldout[:800] if "<|endoftext|>" not in t]
            row["replay"] = check_against_stock(tok, sample, report["superbpe"]["stage1_merges"])
        out["runs"][name] = row
    return out


def plot(reports: dict[str, dict], path: Path) -> None:
    from tokenzip.tokenizers.report import plot_curves

    curves = {name: r["curve"] for name, r in reports.items() if r.get("curve") and name.count("-") == 1
              and name.endswith("64000")}
    curves.update({name: r["curve"] for name, r in reports.items() if name.startswith("superbpe-32000")})
    marks = {name: r["transition"] for name, r in reports.items() if r.get("transition") and name in curves}
    plot_curves(curves, path, "Held-out bytes/token by vocabulary size (one run each, merge list cut)", marks)


def tables(reports: dict[str, dict], measured: dict) -> str:
    from tokenzip.table import format_table

    rows = []
    for name, r in reports.items():
        m = measured["runs"][name]
        bpe = "bpe-" + name.split("-")[1]  # BPE asked for the same vocabulary size
        base = measured["runs"].get(bpe)
        row = {"tokenizer": name, "vocab": r["vocab_size"], "transition": r["transition"],
               "train s": round(r["seconds"], 1), "peak RSS MB": round(r["peak_rss_mb"]),
               "held-out B/tok": round(m["held-out bytes/token"], 3)}
        if base and name != bpe:
            row["tokens vs BPE"] = f"{m['held-out tokens'] / base['held-out tokens'] - 1:+.1%}"
        for label in measured["texts"]:
            row[f"{label} B/tok"] = round(m[f"{label} bytes/token"], 3)
            if base and name != bpe:
                row[f"{label} vs BPE"] = f"{m[f'{label} tokens'] / base[f'{label} tokens'] - 1:+.1%}"
        if "replay" in m:
            row["stock = training order"] = f"{m['replay']['texts'] - m['replay']['texts_differing']}/" \
                                            f"{m['replay']['texts']}"
        rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return format_table(rows, columns, markdown=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tokenzip-tokbench", help="where trained tokenizers go")
    parser.add_argument("--languages", default="50", help="languages for the premium audit")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    start = time.time()
    reports = train_all(work)
    measured = measure(work, reports)
    plot(reports, HERE / "curves.png")
    audit_cmd = ["tokenzip", "tokenizers", "audit", "gemma-3-270m", "minilm-l6",
                 str(work / "bpe-32000" / "tokenizer.json"), str(work / "superbpe-32000" / "tokenizer.json"),
                 "--languages", args.languages, "--out", str(HERE / "audit"), "--no-curves"]
    print("$", " ".join(audit_cmd), file=sys.stderr, flush=True)
    audit_out = subprocess.run(audit_cmd, check=True, capture_output=True, text=True).stdout
    results = {"load_average_at_start": load, "load_average_at_end": os.getloadavg(),
               "wall_seconds": time.time() - start, "reports": reports, "measured": measured}
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(tables(reports, measured))
    print()
    print(json.dumps({k: measured[k] for k in ("heldout_pieces", "texts", "baseline_rss_mb", "catalogs",
                                               "alignment_sizes")} | {"load": [load, os.getloadavg()]}, indent=1))
    print()
    print(audit_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
