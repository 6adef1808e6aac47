"""KV-cache stage: compress the key/value cache of a decoder after prefill (and during decoding).

    with tz.compress(model, tz.get_method("snapkv", ratio=0.5)):
        model.generate(...)
    tz.kv.answer(model, tok, context, questions, "kvzip")       # compress once, answer many
    tz.kv.answer(model, tok, long_context, questions, tz.get_method("kvzip", budget=4096), chunk_size=1024)
                                                                # compress while prefilling, in bounded memory
    tz.kv.plain_chunked_prefill(model, tok, long_context, chunk_size=1024)   # the same chunks, nothing compressed
"""

from tokenzip.kv.answer import CompressedCache, KVAnswer, Prefill, answer_from, plain_chunked_prefill, prefill
from tokenzip.kv.base import KVMethod, LayerContext, LayerResult
from tokenzip.kv.cache import PackedLayer, QuantizedLayer, cache_bytes
from tokenzip.kv.questions import answer

__all__ = [
    "CompressedCache", "KVAnswer", "KVMethod", "LayerContext", "LayerResult", "PackedLayer", "Prefill",
    "QuantizedLayer", "answer", "answer_from", "cache_bytes", "plain_chunked_prefill", "prefill",
]
