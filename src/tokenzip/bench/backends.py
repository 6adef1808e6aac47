"""Where the jobs run: in this process, a local process pool, or a Ray cluster. All write the same rows.

``local`` with one worker runs in the calling process. With ``workers=N`` it starts N spawned
processes (each loads the model once and uses ``threads`` torch threads, by default the CPU count
divided by N, or 1 when the machine is already busier than its CPU count). ``ray`` starts N Ray
actors, each holding a model (``ray.init(address=...)`` when an address is given, else the running
Ray instance or a new local one); Ray is the optional extra ``tokenzip[ray]``. Rows come back to
the calling process, which alone writes the output file.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

from tokenzip.bench.worker import Job, Worker, default_threads
from tokenzip.errors import require

_WORKER: Worker | None = None


def _init_pool_worker(config: Any) -> None:
    global _WORKER
    _WORKER = Worker(config)


def _run_in_pool(job: Job) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER.run(job)


def execute(config: Any, jobs: list[Job], loaded: tuple[Any, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of each job as it finishes (in any order)."""
    if config.backend == "ray":
        yield from _ray(config, jobs)
    elif config.workers == 1:
        worker = Worker(config, loaded)
        try:
            for job in jobs:
                for row in worker.rows(job):  # written one by one: an interruption loses at most the current row
                    yield [row]
        finally:
            worker.close()
    else:
        config.threads = config.threads or default_threads(config.workers)
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(config.workers, len(jobs)), initializer=_init_pool_worker, initargs=(config,)) as pool:
            yield from pool.imap_unordered(_run_in_pool, jobs)


def _ray(config: Any, jobs: list[Job]) -> Iterator[list[dict[str, Any]]]:
    ray = require("ray", "ray")
    from ray.util import ActorPool

    if not ray.is_initialized():
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False)
    threads = config.threads or 1
    if config.threads is None:
        config.threads = threads
    remote_worker = ray.remote(num_cpus=threads)(Worker)
    actors = [remote_worker.remote(config) for _ in range(min(config.workers, len(jobs)))]
    try:
        yield from ActorPool(actors).map_unordered(lambda actor, job: actor.run.remote(job), jobs)
    finally:
        for actor in actors:
            ray.kill(actor)
