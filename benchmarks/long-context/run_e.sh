#!/bin/bash
# Issue 28 item 4 (2026-12-07): the plain chunked prefill (the same chunks of 1024 through transformers' own cache,
# nothing compressed) beside the rows of run_a3-run_d, then SmolLM2-135M-Instruct (full attention) at ~8k.
# One torch thread, one process at a time, in priority order (32k before 16k: the 32k row decides the headline);
# each line resumes (rows already there are skipped). The session stopped during the last line (SmolLM2's
# niah_multikey and two_facts: no rows). The second line also named compactor:budget=2048,chunk_size=1024, which
# refuses chunk_size (it cannot compress while prefilling: benchmarks/long-context/rows-smollm2.failures.jsonl); kvzip_fast, head-adaptive too, replaces it.
cd "$(dirname "$0")/../.."
P="${PYTHON:-python} benchmarks/long_context.py --threads 1"
$P --out benchmarks/long-context/rows.jsonl --context 8k --samples 2 --configs chunked:chunk_size=1024
$P --model smollm2-135m --out benchmarks/long-context/rows-smollm2.jsonl --context 7900 --samples 1 \
   --tasks niah_single qa --configs none chunked:chunk_size=1024 snapkv:budget=2048,chunk_size=1024 \
   kvzip:budget=2048,chunk_size=1024 kvzip_fast:budget=2048,chunk_size=1024
$P --out benchmarks/long-context/rows32.jsonl --context 32k --samples 1 --tasks niah_single \
   --configs chunked:chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 16k --samples 1 --configs chunked:chunk_size=1024
$P --model smollm2-135m --out benchmarks/long-context/rows-smollm2.jsonl --context 7900 --samples 1 \
   --tasks niah_multikey two_facts --configs none chunked:chunk_size=1024 snapkv:budget=2048,chunk_size=1024 \
   kvzip:budget=2048,chunk_size=1024 kvzip_fast:budget=2048,chunk_size=1024
