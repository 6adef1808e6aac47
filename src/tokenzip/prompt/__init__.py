"""Prompt stage: compress text before any model sees it."""
