"""The decoder family registry: one file per family, each reachable from its model types."""

from __future__ import annotations

import pkgutil

import pytest

import tokenzip.models.families as families
from tokenzip.errors import TokenzipError
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.testing import DECODER_FAMILIES, tiny_model


def test_every_family_file_registers_a_family():
    files = {m.name for m in pkgutil.iter_modules(families.__path__) if not m.name.startswith("_")}
    assert files == set(families.family_names()) == set(DECODER_FAMILIES)


def test_model_types_map_back_to_their_family():
    for name in families.family_names():
        family = families.family_named(name)
        for model_type in family.model_types:
            assert families.family_of(model_type) is family
    assert families.family_of("gemma3_text").name == "gemma3"
    assert families.family_of("not-a-family") is None


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_the_adapter_reads_each_tiny_model(family):
    model, _ = tiny_model(family)
    adapter = DecoderAdapter(model)
    assert adapter.num_layers == 4 and adapter.num_kv_heads == 2
    assert families.family_of(model.config.model_type).name == family


def test_an_unsupported_model_type_names_the_supported_ones_and_where_to_add_one():
    model, _ = tiny_model("bert")
    with pytest.raises(TokenzipError, match=r"olmo2.*models/families"):
        DecoderAdapter(model)
