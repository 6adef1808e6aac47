"""Prompt methods, one file each; importing this package registers them."""

from tokenzip.prompt.methods import (  # noqa: F401
    baselines,
    extractive,
    llmlingua,
    longcodezip,
    longllmlingua,
    selective_context,
)
