"""KV-cache stage: compress the key/value cache of a decoder after prefill (and during decoding)."""
