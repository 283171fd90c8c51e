"""Vision-language models: the registry of supported checkpoints, the `VLM` wrapper and tiny test models."""
