"""Vision transformers for the layers stage: Hugging Face ViT and DINOv2 (and their task heads).

Both are pre-norm transformers with a [CLS] token first and no padding: ``ViTModel.layers[i]`` /
``Dinov2Model.encoder.layer[i]`` with the self-attention module at ``.attention``.
"""

from __future__ import annotations

from typing import Any


def vision_stack(model: Any) -> Any:
    """The layers-stage view of a ViT or DINOv2 model, else None."""
    from transformers import Dinov2Model, PreTrainedModel, ViTModel

    from tokenzip.models.stack import LayerStack  # lazy: models.stack loads transformers; this module needs only torch

    base = getattr(model, "base_model", model)
    if not isinstance(base, PreTrainedModel):
        return None
    if isinstance(base, ViTModel):
        layers, model_type = base.layers, "vit"
    elif isinstance(base, Dinov2Model):
        layers, model_type = base.encoder.layer, "dinov2"
    else:
        return None
    return LayerStack(architecture="vision", model_type=model_type, model=model, root=base, layers=list(layers),
                      attention=[layer.attention for layer in layers])
