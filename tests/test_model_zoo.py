"""Tiny model builders, saving/loading, the model registry and the VLM wrapper."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from common.errors import ToolkitError
from model_zoo import MODELS, VLM, get_model, register_model
from model_zoo.registry import FAMILIES as FAMILY_SPECS
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
def test_saved_tiny_vlm_loads_back_identically_through_get_model(tiny_factory, family, tmp_path):
    model, processor = tiny_factory(family)
    save_tiny_vlm(model, processor, tmp_path)
    vlm = get_model(str(tmp_path))
    assert AutoModelForImageTextToText.from_pretrained(tmp_path).config.model_type == family
    if family.startswith("llava"):  # Qwen needs torchvision for the stock AutoProcessor (see processors.py)
        assert type(AutoProcessor.from_pretrained(tmp_path)) is type(processor)
    assert (vlm.family, vlm.dtype, vlm.device.type, vlm.prompt_format) == (family, torch.float32, "cpu", "chat")
    assert vlm.processor.tokenizer.padding_side == "left"
    image = noise_image(50, 40, 1)
    original = processor(images=[image], text=[_chat(processor)], return_tensors="pt")
    reloaded = vlm.prepare([image], [vlm.build_prompt(QUESTION)])
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    with torch.no_grad():
        assert torch.equal(model(**original).logits, vlm.model(**reloaded).logits)
    assert vlm.to_dict() == {"name": str(tmp_path), "model_id": str(tmp_path), "revision": None, "family": family,
                             "model_class": type(model).__name__, "dtype": "float32", "device": "cpu",
                             "prompt_format": "chat"}


def test_generate_is_greedy_and_decodes_new_tokens_only(tiny_factory):
    model, processor = tiny_factory("qwen3_vl")
    vlm = VLM.from_loaded(model, processor)
    inputs = vlm.prepare([noise_image(50, 40, 1), noise_image(20, 70, 2)],
                         [vlm.build_prompt(QUESTION), vlm.build_prompt("Where is the cat?")])
    answers = vlm.generate(inputs, max_new_tokens=4)
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    new = processor.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answers == [text.strip() for text in new] and all(answers)
    assert vlm.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_paper_prompt_format_is_llava_only(tiny_factory):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor, prompt_format="paper")
    assert vlm.build_prompt("Where is the cat?") == "<image>\nUSER: Where is the cat?\nASSISTANT:"
    assert vlm.build_prompt("ignored", paper_prompt="<image>\nUSER: verbatim\nASSISTANT:") == \
        "<image>\nUSER: verbatim\nASSISTANT:"
    assert VLM.from_loaded(model, processor).build_prompt("Where is the cat?") == \
        "USER: <image>\nWhere is the cat? ASSISTANT:"
    qwen_model, qwen_processor = tiny_factory("qwen2_vl")
    with pytest.raises(ToolkitError, match="paper"):
        VLM.from_loaded(qwen_model, qwen_processor, prompt_format="paper")
    with pytest.raises(ToolkitError, match="prompt format"):
        VLM.from_loaded(model, processor, prompt_format="fancy")


def test_prepare_rejects_mismatched_lists(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("llava"))
    with pytest.raises(ToolkitError, match="one image per prompt"):
        vlm.prepare([noise_image(10, 10, 0)], ["a", "b"])


def test_registry_lists_the_issue_names():
    assert {"llava1.5", "llava1.5-13b", "llava1.6", "llava1.6-mistral", "qwen2-vl", "qwen2.5-vl", "qwen2.5-vl-3b",
            "qwen3-vl", "qwen3-vl-8b"} <= set(MODELS)
    assert MODELS["llava1.5"].model_id == "llava-hf/llava-1.5-7b-hf" and MODELS["llava1.5"].family == "llava"
    assert all(entry.family in FAMILY_SPECS for entry in MODELS.values())


@pytest.mark.parametrize("name, message", [("gpt-5", "valid names: .*llava1.5"),
                                           ("./no/such/dir", "no checkpoint directory")])
def test_unknown_names_list_the_valid_ones(name, message):
    with pytest.raises(ToolkitError, match=message):
        get_model(name)


def test_unloadable_directory_and_bad_options_raise_toolkit_errors(tmp_path):
    with pytest.raises(ToolkitError, match="cannot load a model config"):
        get_model(str(tmp_path))
    for kwargs, message in ((dict(dtype="float8"), "dtype"), (dict(device="tpu"), "device")):
        with pytest.raises(ToolkitError, match=message):
            get_model(str(tmp_path), **kwargs)  # options are checked before anything is read


def test_registered_local_directory_loads_by_name(tiny_factory, tmp_path, monkeypatch):
    save_tiny_vlm(*tiny_factory("llava"), tmp_path / "toy")
    monkeypatch.setitem(MODELS, "toy-test", MODELS["llava1.5"])  # restored after the test
    entry = register_model("toy-test", str(tmp_path / "toy"), family="llava", local=True)
    assert entry.location() == str(tmp_path / "toy")
    vlm = get_model("toy-test", prompt_format="paper")
    assert (vlm.name, vlm.model_id, vlm.prompt_format) == ("toy-test", str(tmp_path / "toy"), "paper")
