"""Where tokenzip keeps files it builds: converted weights, corpora."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where tokenzip keeps converted weights: ``$TOKENZIP_CACHE`` or the user cache directory."""
    env = os.environ.get("TOKENZIP_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tokenzip"))
