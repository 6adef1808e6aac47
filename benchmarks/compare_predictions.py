"""Do re-run rows give the same predictions as committed ones? Rows are matched by their ``key``.

    python benchmarks/compare_predictions.py benchmarks/kv-frontier/rows.jsonl results/check/rows.jsonl

Prints each differing row and ``N of M identical``; exits 1 when a prediction differs or a re-run row has no
committed twin (issue 13: behaviour unchanged after the architecture work).
"""

from __future__ import annotations

import argparse
import sys

from tokenzip.bench.rows import read_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", help="the committed rows.jsonl")
    parser.add_argument("rerun", help="rows.jsonl of the re-run")
    args = parser.parse_args()
    committed = {row["key"]: row for row in read_rows(args.committed)}
    same, problems = 0, 0
    for row in read_rows(args.rerun):
        old = committed.get(row["key"])
        if old is None:
            print(f"no committed row for {row['key']}")
            problems += 1
        elif old["predictions"] != row["predictions"]:
            print(f"differs: {row['key']}: {old['predictions']!r} -> {row['predictions']!r}")
            problems += 1
        else:
            same += 1
    print(f"{same} of {same + problems} identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
