#!/bin/bash
# 32k (1 sample of niah_single) for memory and time, then 4k; one torch thread (the machine is shared)
cd /work/main
P=".venv/bin/python benchmarks/long_context.py --out benchmarks/long-context/rows32.jsonl --threads 1"
$P --context 32k --samples 1 --tasks niah_single --configs snapkv:budget=4096,chunk_size=1024 none \
   kvzip:budget=4096,chunk_size=1024 streaming_llm:budget=4096,chunk_size=1024 \
   expected_attention:budget=4096,chunk_size=1024 snapkv:budget=4096,chunk_size=2048 snapkv:budget=2048,chunk_size=1024
$P --context 4k --samples 1 --configs none kvzip:budget=2048,chunk_size=1024 snapkv:budget=2048,chunk_size=1024 \
   streaming_llm:budget=2048,chunk_size=1024 expected_attention:budget=2048,chunk_size=1024
