#!/bin/bash
# This session's runs (2026-12-02, second session), one torch thread each, in priority order:
# the 32k dense prefill (memory and time aims), 16k retention, then the other methods and 4k.
cd /work/main
P=".venv/bin/python benchmarks/long_context.py --threads 1"
$P --out benchmarks/long-context/rows32.jsonl --context 32k --samples 1 --tasks niah_single \
   --configs none kvzip:budget=4096,chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 16k --samples 1 \
   --configs none kvzip:budget=4096,chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 8k --samples 2 \
   --configs snapkv:budget=4096,chunk_size=1024 streaming_llm:budget=4096,chunk_size=1024 \
   expected_attention:budget=4096,chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 4k --samples 1 \
   --configs none kvzip:budget=2048,chunk_size=1024 snapkv:budget=2048,chunk_size=1024 \
   streaming_llm:budget=2048,chunk_size=1024 expected_attention:budget=2048,chunk_size=1024
$P --out benchmarks/long-context/rows.jsonl --context 16k --samples 1 \
   --configs snapkv:budget=4096,chunk_size=1024 streaming_llm:budget=4096,chunk_size=1024 \
   expected_attention:budget=4096,chunk_size=1024 kvzip:budget=4096,chunk_size=2048
$P --out benchmarks/long-context/rows.jsonl --context 8k --samples 2 \
   --configs kvzip:budget=2048,chunk_size=1024 kvzip:budget=4096,chunk_size=2048
