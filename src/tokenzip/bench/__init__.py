"""Benchmark harness: tasks, metrics, runner and reports."""
