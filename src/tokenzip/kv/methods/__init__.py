"""KV-cache methods, one file each; importing this package registers them."""

from tokenzip.kv.methods import (  # noqa: F401
    adakv,
    decoding,
    expected_attention,
    h2o,
    keydiff,
    kivi,
    knorm,
    kvmerger,
    kvzip,
    pyramidkv,
    random,
    snapkv,
    streaming_llm,
    tova,
    vatp,
    zipcache,
)
