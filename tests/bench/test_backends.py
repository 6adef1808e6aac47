"""The local process pool and Ray write the same rows as the in-process run (timing fields aside)."""

from __future__ import annotations

import os

import pytest

import tokenzip as tz

from .test_runner import comparable

SWEEP = dict(model="tiny:llama", stage="kv", methods=["snapkv"], ratios=[0.5], tasks=["niah_single"], context=300,
             samples=2, max_new_tokens=3, progress=False, summary=False, threads=1, warmup=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_llama):
    return comparable(tz.bench.run(out=tmp_path_factory.mktemp("inprocess"), loaded=tiny_llama, **SWEEP))


@pytest.mark.slow  # two spawned processes, each importing torch and transformers and loading the model
def test_local_pool_gives_the_same_rows(tmp_path, reference):
    rows = tz.bench.run(out=tmp_path / "pool", workers=2, **SWEEP)
    # measured in pool processes (which of the two takes which job is up to the pool: one may take both)
    assert all(r["pid"] != os.getpid() for r in rows)
    assert comparable(rows) == reference


@pytest.mark.slow  # a local Ray cluster (its own processes)
@pytest.mark.xdist_group("ray")  # one Ray instance at a time when the suite runs in parallel (pytest -n)
def test_ray_gives_the_same_rows(tmp_path, reference):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rows = tz.bench.run(out=tmp_path / "ray", workers=1, backend="ray", **SWEEP)
    finally:
        ray.shutdown()
    assert comparable(rows) == reference
