"""Tokenizer stage: audit tokenizers and train ones that need fewer tokens."""
