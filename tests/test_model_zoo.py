"""Tiny model builders, saving/loading, the model registry and the VLM wrapper."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from model_zoo.processors import load_processor
from model_zoo.tiny import (
    DEFAULT_WORDS,
    FAMILIES,
    build_tiny_vlm,
    build_word_tokenizer,
    count_unknown_words,
    save_tiny_vlm,
)
from tests.conftest import QUESTION, noise_image

PAPER_TEXTS = [
    "Where is the teapot in relation to the chair? Answer with left, right, on or under.",
    "Where are the white clouds in relation to the house? \nAnswer with left, right, front, behind, above or below.",
    "Where is the kite in the photo? Answer with left, right, top or bottom.",
    "Determine whether the description about the spatial relationship is correct or not. "
    "Answer with yes or no: The car is behind the suitcase.",
]


def _chat(processor, question: str = QUESTION) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize("text", PAPER_TEXTS)
def test_default_words_cover_the_paper_prompts(text):
    tokenizer = build_word_tokenizer(DEFAULT_WORDS, "llava")
    assert count_unknown_words(tokenizer, text) == 0


def test_word_tokenizer_splits_punctuation_and_pads_left():
    tokenizer = build_word_tokenizer(["where", "is", "the", "mug", "?"], "qwen2_vl")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Where is the mug?")["input_ids"])
    assert tokens == ["where", "is", "the", "mug", "?"]
    batch = tokenizer(["mug", "where is the mug"], padding=True)
    assert batch["input_ids"][0][0] == tokenizer.pad_token_id and batch["attention_mask"][0][-1] == 1
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") != tokenizer.unk_token_id


def test_tiny_vlm_renders_chat_template_and_expands_image_tokens(tiny, family):
    model, processor = tiny
    text = _chat(processor)
    expected_start = {"llava": "USER: <image>\n", "llava_next": "USER: <image>\n"}.get(family, "<|im_start|>user\n")
    assert text.startswith(expected_start)
    inputs = processor(images=[noise_image(40, 30, 0)], text=[text], return_tensors="pt")
    assert count_unknown_words(processor.tokenizer, QUESTION) == 0
    n_image = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image > 0
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == model.config.text_config.vocab_size and torch.isfinite(logits).all()


def test_tiny_vlm_is_deterministic_per_seed(tiny_factory):
    first, _ = tiny_factory("llava", seed=3)
    second, _ = tiny_factory("llava", seed=4)
    again = build_tiny_vlm("llava", seed=3)[0]
    w = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(first.state_dict()[w], again.state_dict()[w])
    assert not torch.equal(first.state_dict()[w], second.state_dict()[w])


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_tiny_vlm_loads_back_identically(tiny_factory, family, tmp_path):
    model, processor = tiny_factory(family)
    save_tiny_vlm(model, processor, tmp_path)
    loaded_model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = load_processor(str(tmp_path), model_type=loaded_model.config.model_type)
    if family.startswith("llava"):  # Qwen needs torchvision for the stock AutoProcessor (see processors.py)
        assert type(AutoProcessor.from_pretrained(tmp_path)) is type(processor)
    image = noise_image(50, 40, 1)
    original = processor(images=[image], text=[_chat(processor)], return_tensors="pt")
    reloaded = loaded_processor(images=[image], text=[_chat(loaded_processor)], return_tensors="pt")
    assert loaded_processor.tokenizer.padding_side == "left"
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    with torch.no_grad():
        assert torch.equal(model(**original).logits, loaded_model(**reloaded).logits)
