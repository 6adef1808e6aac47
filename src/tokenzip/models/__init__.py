"""Model loading and the per-family adapters: the only place that knows transformers internals."""

from tokenzip.models.catalog import MODELS, ModelSpec, list_models
from tokenzip.models.loading import load_model
from tokenzip.models.paths import cache_dir

__all__ = ["MODELS", "ModelSpec", "cache_dir", "list_models", "load_model"]
