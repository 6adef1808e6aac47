"""KV-cache methods, one file each; importing this package registers them."""

from tokenzip.kv.methods import (  # noqa: F401
    adakv,
    compactor,
    cur,
    decoding,
    expected_attention,
    h2o,
    keydiff,
    kivi,
    knorm,
    kvmerger,
    kvzip,
    kvzip_fast,
    leverage,
    pyramidkv,
    random,
    snapkv,
    streaming_llm,
    tova,
    vatp,
    zipcache,
)
