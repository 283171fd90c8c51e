"""Vision-language models: the registry of supported checkpoints, the `VLM` wrapper and tiny test models.

    from model_zoo import get_model
    vlm = get_model("llava1.5", dtype="float32")
    inputs = vlm.prepare([image], [vlm.build_prompt(question)])
    answers = vlm.generate(inputs, max_new_tokens=10)
"""
from model_zoo.registry import FAMILIES, MODELS, register_model

__all__ = ["get_model", "open_checkpoint", "VLM", "MODELS", "FAMILIES", "register_model"]


def __getattr__(name: str):
    # Imported on first use: they pull in torch and transformers, which the torch-free report and
    # selection code (reading registry facts) must not pay for.
    if name in ("get_model", "open_checkpoint"):
        from model_zoo import loading
        return getattr(loading, name)
    if name == "VLM":
        from model_zoo.vlm import VLM
        return VLM
    raise AttributeError(f"module 'model_zoo' has no attribute {name!r}")
