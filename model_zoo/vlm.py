"""The `VLM` wrapper: one loaded model + processor, turning (image, question) pairs into answers.

Prompts come from the model's own chat template (prompt_format="chat") or, with prompt_format="paper",
the original AdaptVis code's literal LLaVA-1.5 string ("<image>\\nUSER: {question}\\nASSISTANT:")
so results can match the paper; "auto" picks one per model
(`resolve_prompt_format`). Batches are left-padded (the intervention targets the last prompt
position, which left padding puts at the same index for every row).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from PIL import Image
from transformers import BatchFeature, GenerationConfig

from common.errors import ToolkitError
from model_zoo.registry import PROMPT_FORMATS, FamilySpec, family_spec

logger = logging.getLogger(__name__)

PAPER_TEMPLATE = "{image}\nUSER: {question}\nASSISTANT:"


class VLM:
    """A loaded vision-language model.

    Attributes: `model`, `processor`, `name` (short name or path given by the user), `model_id`,
    `revision`, `family` (a key of `model_zoo.registry.FAMILIES`), `spec`, `prompt_format` ("chat" or
    "paper"; given as "auto" it resolves as for an unregistered checkpoint), and the properties `dtype`,
    `device`, `image_token_id`.
    """

    def __init__(self, model, processor, *, name: str, model_id: str, revision: str | None = None,
                 prompt_format: str = "chat"):
        self.model = model
        self.processor = processor
        self.name = name
        self.model_id = model_id
        self.revision = revision
        self.spec: FamilySpec = family_spec(model.config.model_type, model_id)
        self.family = self.spec.name
        self.prompt_format = resolve_prompt_format(prompt_format, self.spec, processor, source=model_id)
        # HF generation requires left padding; the intervention relies on it too.
        processor.tokenizer.padding_side = "left"

    @classmethod
    def from_loaded(cls, model, processor, *, name: str | None = None, prompt_format: str = "chat") -> "VLM":
        """Wrap an already built model (e.g. a tiny test model)."""
        name = name or f"{model.config.model_type}-in-memory"
        return cls(model.eval(), processor, name=name, model_id=name, prompt_format=prompt_format)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_token_id(self) -> int:
        return int(getattr(self.model.config, self.spec.image_token_attr))

    @property
    def image_token(self) -> str:
        return self.processor.tokenizer.convert_ids_to_tokens(self.image_token_id)

    def to_dict(self) -> dict:
        return {"name": self.name, "model_id": self.model_id, "revision": self.revision, "family": self.family,
                "model_class": type(self.model).__name__, "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device), "prompt_format": self.prompt_format}

    def build_prompt(self, question: str, paper_prompt: str | None = None) -> str:
        """The full text for the processor (image placeholder included) for one question."""
        if self.prompt_format == "paper":
            return paper_prompt if paper_prompt is not None else paper_chat_prompt(self.image_token, question)
        return chat_prompt(self.processor, question)

    def prepare(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> BatchFeature:
        """Left-padded model inputs on the model's device, pixel values in the model's dtype."""
        if len(images) != len(prompts):
            raise ToolkitError(f"prepare() got {len(images)} images but {len(prompts)} prompts; pass one image "
                               f"per prompt")
        if not prompts:
            raise ToolkitError("prepare() needs at least one (image, prompt) pair")
        inputs = self.processor(images=list(images), text=list(prompts), padding=True, return_tensors="pt")
        return inputs.to(self.device).to(self.dtype)

    def generation_config(self, max_new_tokens: int, **extra) -> GenerationConfig:
        """Greedy decoding (no sampling, one beam). Other defaults of the checkpoint's generation config
        still apply as in stock `generate`, e.g. Qwen2-VL-Instruct's repetition_penalty=1.05."""
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=self.model.generation_config.eos_token_id,
                                pad_token_id=self.processor.tokenizer.pad_token_id, **extra)

    def generate_ids(self, inputs: BatchFeature, max_new_tokens: int, **extra):
        """Raw `generate` output (greedy); `extra` goes into the generation config (e.g. output_logits)."""
        with torch.inference_mode():
            return self.model.generate(**inputs, generation_config=self.generation_config(max_new_tokens, **extra))

    def decode_new_tokens(self, sequences: torch.Tensor, prompt_length: int) -> list[str]:
        texts = self.processor.tokenizer.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
        return [text.strip() for text in texts]

    def generate(self, inputs: BatchFeature, max_new_tokens: int) -> list[str]:
        """Greedy answers, special tokens skipped, whitespace stripped."""
        sequences = self.generate_ids(inputs, max_new_tokens)
        return self.decode_new_tokens(sequences, inputs["input_ids"].shape[1])


def chat_prompt(processor, question: str) -> str:
    """One user turn (an image, then the question) in the processor's chat template, ready for the answer."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def paper_chat_prompt(image_token: str, question: str) -> str:
    """The original code's literal LLaVA-1.5 prompt around `question`."""
    return PAPER_TEMPLATE.format(image=image_token, question=question)


def resolve_prompt_format(requested: str, spec: FamilySpec, processor, *, source: str,
                          auto_format: str = "chat") -> str:
    """The prompt format ("chat" or "paper") a model runs with, or a ToolkitError saying why none fits.

    requested: "auto", "chat" or "paper". auto_format: what "auto" means for this model
        (`model_zoo.registry.auto_prompt_format`: "paper" for the paper's LLaVA-1.5 names).
    Needs only the processor (for its chat template), so `get_model` calls it before loading weights.
    A llava checkpoint without a chat template falls back from "auto" to "paper" with a logged notice:
    the paper string is the format llava-family checkpoints were trained with.
    """
    if requested not in PROMPT_FORMATS:
        raise ToolkitError(f"unknown prompt format {requested!r}; use one of {', '.join(PROMPT_FORMATS)}")
    chosen = auto_format if requested == "auto" else requested
    if chosen == "paper" and not spec.paper_prompt:
        raise ToolkitError(f"prompt format 'paper' reproduces the original LLaVA-1.5 prompt and only applies to "
                           f"the llava family, not {spec.name} ({source}); use --prompt-format chat or auto")
    if chosen == "chat" and not processor.chat_template:
        if requested == "auto" and spec.paper_prompt:
            logger.warning("%s ships no chat template: using the original LLaVA-1.5 prompt "
                           "(--prompt-format paper) instead", source)
            return "paper"
        fix = ("use --prompt-format paper (the original LLaVA-1.5 prompt) or a checkpoint with a chat template"
               if spec.paper_prompt else "use a checkpoint whose processor has a chat template")
        raise ToolkitError(f"{source} ships no chat template, which --prompt-format {requested} needs; {fix}")
    return chosen
