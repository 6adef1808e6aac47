#!/bin/bash
# retention at 8k (2 samples x 4 tasks) and 16k (1 sample x 4 tasks); one torch thread (the machine is shared)
cd /work/main
P=".venv/bin/python benchmarks/long_context.py --out benchmarks/long-context/rows.jsonl --threads 1"
$P --context 8k --samples 2 --configs none kvzip:budget=4096,chunk_size=1024 snapkv:budget=4096,chunk_size=1024 \
   streaming_llm:budget=4096,chunk_size=1024 expected_attention:budget=4096,chunk_size=1024
$P --context 16k --samples 1 --configs none kvzip:budget=4096,chunk_size=1024 snapkv:budget=4096,chunk_size=1024 \
   streaming_llm:budget=4096,chunk_size=1024 expected_attention:budget=4096,chunk_size=1024
$P --context 8k --samples 2 --configs kvzip:budget=2048,chunk_size=1024 snapkv:budget=2048,chunk_size=1024 \
   kvzip:budget=4096,chunk_size=2048
$P --context 16k --samples 1 --configs kvzip:budget=2048,chunk_size=1024 kvzip:budget=4096,chunk_size=2048
