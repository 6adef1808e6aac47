"""`tokenzip serve --ray --replicas N`: the same application on Ray Serve, one model and one context cache
per replica, behind Ray's router (needs ``ray[serve]``: ``pip install 'tokenzip[ray,serve]'``).

Each replica builds its app (and loads its model) when it starts; requests about one document may reach
different replicas, each of which then caches that document once.
"""

from __future__ import annotations

import time
from typing import Any

from tokenzip.errors import require
from tokenzip.serve import build_app


def deployment(options: dict[str, Any], replicas: int, num_cpus: float = 0.5) -> Any:
    """A bound Ray Serve application running ``build_app(**options)`` on ``replicas`` replicas."""
    serve = require("ray.serve", "ray", "ray[serve]")

    @serve.ingress()
    class TokenzipReplica:
        """One replica: its own model, backend and context cache."""

        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options

        def __serve_build_asgi_app__(self) -> Any:
            return build_app(**self.options)

    return serve.deployment(TokenzipReplica, name="tokenzip", num_replicas=replicas,
                            ray_actor_options={"num_cpus": num_cpus}).bind(options)


def start(options: dict[str, Any], host: str, port: int, replicas: int) -> None:
    """Start (or join) a local Ray instance and deploy ``replicas`` replicas on ``http://host:port/``."""
    ray = require("ray", "ray")
    serve = require("ray.serve", "ray", "ray[serve]")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(options, replicas), name="tokenzip", route_prefix="/")


def run_ray(options: dict[str, Any], host: str, port: int, replicas: int) -> int:
    """The CLI's ``--ray``: deploy, then serve until interrupted."""
    serve = require("ray.serve", "ray", "ray[serve]")
    start(options, host, port, replicas)
    print(f"tokenzip serve: {replicas} Ray Serve replicas of {options['model']} on http://{host}:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0
