"""In-model stage: prune and merge hidden-state tokens inside encoders, ViTs, decoders and VLMs."""
