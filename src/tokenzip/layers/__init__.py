"""In-model stage: prune and merge hidden-state tokens inside encoders, ViTs, decoders and VLMs.

    with tz.compress(model, tz.get_method("tome", ratio=0.5)):
        out = model(**inputs)

Methods live in ``tokenzip.layers.methods`` (one file each); :class:`LayersMethod` is their base,
:class:`Step` what a method sees at a reduction layer, :class:`LayersReport` what a forward pass did.
"""

from tokenzip.layers.base import LayersMethod, LayersReport, Step

__all__ = ["LayersMethod", "LayersReport", "Step"]
