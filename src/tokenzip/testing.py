"""Tiny randomly initialised models for tests: built from configs, no download.

``tiny_model(family)`` returns ``(model, tokenizer_or_processor)`` for every family tokenzip
supports. Weights are seeded, so two calls give identical models. Decoder tokenizers pad on the
left (as batched generation needs). The decoder families are those registered in
``tokenzip.models.families`` (each file there holds its family's tiny config); the gemma3 model mixes
sliding-window and global layers with a 16-token window so tests exercise both.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import torch

from tokenzip.errors import unknown_name
from tokenzip.models.families import family_named, family_names

DECODER_FAMILIES = family_names()
ENCODER_FAMILIES = ("bert",)
VISION_FAMILIES = ("vit", "dinov2")
VLM_FAMILIES = ("llava",)
FAMILIES = DECODER_FAMILIES + ENCODER_FAMILIES + VISION_FAMILIES + VLM_FAMILIES

_WORDS = (
    "the a of to and in is that it for on with as was by at be this from or an are have not but all "
    "magic number key value city river cat dog house tree blue green red quick brown fox jumps over lazy "
    "question answer special secret code memory token model layer cache attention window needle haystack "
    "one two three four five six seven eight nine zero hello world data text long short small large"
).split()


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        num = str(rng.randint(0, 999999))
        lines.append(" ".join(words[: len(words) // 2] + [num] + words[len(words) // 2 :]).capitalize() + ".")
    return lines


@functools.cache
def _decoder_tokenizer_object() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<pad>", "<bos>", "<eos>", "<unk>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (384 tokens) for the tiny decoders: any text encodes, padding on the left."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    obj = _decoder_tokenizer_object()
    obj = obj.from_str(obj.to_str())  # a private copy
    bos = obj.token_to_id("<bos>")
    obj.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=obj, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        padding_side="left",
    )


@functools.cache
def _bert_tokenizer_object() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=384, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def tiny_bert_tokenizer() -> Any:
    """A WordPiece tokenizer with [CLS]/[SEP] for the tiny BERT encoder."""
    from transformers import PreTrainedTokenizerFast

    obj = _bert_tokenizer_object()
    return PreTrainedTokenizerFast(
        tokenizer_object=obj.from_str(obj.to_str()), unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


_DECODER_COMMON = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
)


def _decoder_config(family: str, vocab_size: int) -> Any:
    return family_named(family).tiny_config(dict(_DECODER_COMMON, vocab_size=vocab_size))


def tiny_model(family: str, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random model of ``family`` and its tokenizer (or processor); see ``FAMILIES``."""
    import transformers as tf

    if family not in FAMILIES:
        raise unknown_name("tiny model family", family, FAMILIES)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family in DECODER_FAMILIES:
            tok = tiny_tokenizer()
            model = tf.AutoModelForCausalLM.from_config(_decoder_config(family, len(tok)), attn_implementation="sdpa")
        elif family == "bert":
            tok = tiny_bert_tokenizer()
            config = tf.BertConfig(
                vocab_size=len(tok), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=512, pad_token_id=0,
            )
            model = tf.BertModel(config, add_pooling_layer=False)
            model.set_attn_implementation("sdpa")
        elif family in VISION_FAMILIES:
            model, tok = _tiny_vision(family)
        else:
            model, tok = _tiny_llava()
        _spread_norm_weights(model)
    model.eval()
    return model, tok


@torch.no_grad()
def _spread_norm_weights(model: Any, spread: float = 0.5) -> None:
    """Give every normalisation layer seeded, non-constant weights.

    Freshly built norms have constant weights (Gemma's are zero, used as ``1 + w``), so after a
    query/key norm every key has the same length and norm-based scores tie up to rounding: a test
    would then be decided by float noise (a padded batch and a row alone round differently).
    """
    for name, param in model.named_parameters():
        if param.ndim == 1 and "norm" in name.rsplit(".", 2)[-2].lower() and name.endswith("weight"):
            param.add_(torch.randn_like(param) * spread)


def _tiny_vision(family: str) -> tuple[Any, Any]:
    import transformers as tf

    common = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                  image_size=56, patch_size=8, attn_implementation="sdpa")
    if family == "vit":
        model = tf.ViTModel(tf.ViTConfig(**common), add_pooling_layer=False)
        proc = tf.ViTImageProcessorPil(size={"height": 56, "width": 56})
    else:
        model = tf.Dinov2Model(tf.Dinov2Config(**common))
        proc = tf.BitImageProcessorPil(
            size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_center_crop=True,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True,
        )
    return model, proc


def _tiny_llava() -> tuple[Any, Any]:
    import transformers as tf

    tok = tiny_tokenizer()
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=32, patch_size=8, projection_dim=32)
    text = tf.LlamaConfig(**dict(_DECODER_COMMON, vocab_size=len(tok)))
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                            vision_feature_layer=-1, vision_feature_select_strategy="default",
                            projector_hidden_act="gelu")
    model = tf.LlavaForConditionalGeneration(config)
    model.set_attn_implementation("sdpa")
    image_proc = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = tf.LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=8,
                                  vision_feature_select_strategy="default", image_token="<image>",
                                  num_additional_image_tokens=1)
    return model, processor
