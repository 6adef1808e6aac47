#!/bin/bash
# End of the second session: chunks of 2048 and a 2048 budget at 32k, then chunks of 2048 at 8k (one torch thread).
cd /work/main
P=".venv/bin/python benchmarks/long_context.py --threads 1"
$P --out benchmarks/long-context/rows32.jsonl --context 32k --samples 1 --tasks niah_single \
   --configs snapkv:budget=4096,chunk_size=2048 kvzip:budget=4096,chunk_size=2048 snapkv:budget=2048,chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 8k --samples 2 --configs kvzip:budget=4096,chunk_size=2048
