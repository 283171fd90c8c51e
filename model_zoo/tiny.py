"""Tiny random-weight VLMs of every supported family, built locally with no download.

Tests, benchmarks and the toy-model training script use these builders. Each model is a real
transformers architecture (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Qwen3-VL) initialised at random
via `Model._from_config`, paired with a word-level tokenizer over a small vocabulary and the family's
own processor class, so the processor expands image placeholders and builds pixel inputs exactly as
for the released checkpoints.

    model, processor = build_tiny_vlm("qwen2_vl", seed=0)
    save_tiny_vlm(model, processor, "/tmp/tiny-qwen")   # loads with get_model("/tmp/tiny-qwen")

`overrides` tune the configs: `text_config={...}` and `vision_config={...}` are merged into the
sub-configs (e.g. `text_config={"initializer_range": 0.09}`), `patch_size=16` sets the vision patch size
of the model and of the image processor, any other key is set on the top-level config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from model_zoo.processors import processor_class_for

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")

# The paper's question wordings (WhatsUp / COCO / VG QA prompts and the VSR yes/no prompt), chat-template
# words, and a few common object names, so that toolkit prompts tokenize without <unk> floods.
DEFAULT_WORDS: tuple[str, ...] = tuple(dict.fromkeys("""
    where is are the a an in of to relation photo image picture answer with or and one word phrase
    left right on under front behind top bottom above below near next beside inside outside over
    yes no determine whether description about spatial relationship correct not true false
    user assistant system you helpful what which how this that it there
    mug table chair armchair sofa bed cup bowl plate bottle beer book box ball cat dog bench kite car
    truck bus person man woman child boy girl hat candle teapot knife fork spoon tape lamp window rug
    sink oven clock laptop phone tv pillow house tree tall white blue red green black small large
    suitcase umbrella bag handbag vase pot plant flower shelf desk door wall floor ground sky cloud
    clouds water sand boat bicycle horse sheep cow bird train toilet pizza cake banana apple orange
    object scene shape square circle triangle
    . , ? ! : ; ' " ( ) - / 0 1 2 3 4 5 6 7 8 9
""".split()))


@dataclass(frozen=True)
class _SpecialTokens:
    """The family's special tokens; `tokens` lists them in vocabulary order (ids 0..k-1)."""

    tokens: tuple[str, ...]
    unk: str
    pad: str
    eos: str
    bos: str | None
    image: str


_LLAVA_TOKENS = _SpecialTokens(("<unk>", "<s>", "</s>", "<pad>", "<image>"),
                               unk="<unk>", pad="<pad>", eos="</s>", bos="<s>", image="<image>")
_QWEN_TOKENS = _SpecialTokens(
    ("<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
     "<|image_pad|>", "<|video_pad|>"),
    unk="<unk>", pad="<|endoftext|>", eos="<|im_end|>", bos=None, image="<|image_pad|>")

# LLaVA-1.5 conversation style: "USER: <image>\n{question} ASSISTANT:" (as llava-hf's template renders it).
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ (message['content'] if message['content'] is string else message['content'][0]['text']) + ' ' }}"
    "{%- else -%}{{ message['role'].upper() + ': ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] + ' ' }}{%- else -%}"
    "{%- for c in message['content'] if c['type'] == 'image' -%}{{ '<image>\\n' }}{%- endfor -%}"
    "{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] + ' ' }}{%- endfor -%}"
    "{%- endif -%}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)
# Qwen conversation style: <|im_start|>role\n ... <|im_end|>\n, the image framed by vision_start/end.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _special_tokens(family: str) -> _SpecialTokens:
    _check_family(family)
    return _LLAVA_TOKENS if family.startswith("llava") else _QWEN_TOKENS


def _chat_template(family: str) -> str:
    return LLAVA_CHAT_TEMPLATE if family.startswith("llava") else QWEN_CHAT_TEMPLATE


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {', '.join(FAMILIES)}")


def build_word_tokenizer(words: Sequence[str], family: str) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over `words` plus the family's special tokens (left padding).

    Text is split on whitespace and every punctuation mark becomes its own token, so "table?" is
    ["table", "?"]. Special tokens get the first ids and are matched before any splitting.
    """
    special = _special_tokens(family)
    vocab: dict[str, int] = {}
    for token in (*special.tokens, *(w.lower() for w in words)):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special.unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special.tokens])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=special.unk, pad_token=special.pad, eos_token=special.eos,
        bos_token=special.bos, padding_side="left", chat_template=_chat_template(family),
        model_input_names=["input_ids", "attention_mask"])
    return tokenizer


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str | None) -> int | None:
    return None if token is None else tokenizer.convert_tokens_to_ids(token)


def _text_config(family: str, tokenizer, *, lm_layers: int, hidden: int, heads: int, kv_heads: int) -> dict:
    special = _special_tokens(family)
    head_dim = hidden // heads
    config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=lm_layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=4096, pad_token_id=_token_id(tokenizer, special.pad),
        eos_token_id=_token_id(tokenizer, special.eos), bos_token_id=_token_id(tokenizer, special.bos),
        tie_word_embeddings=False)
    if family.startswith("qwen"):
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0,
                                     "mrope_section": _mrope_section(head_dim)}
        if family == "qwen3_vl":
            config["head_dim"] = head_dim
            config["rope_parameters"]["mrope_interleaved"] = True
    return config


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (temporal, height, width) like Qwen's [16, 24, 24]."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


@dataclass
class _Shape:
    lm_layers: int
    hidden: int
    heads: int
    kv_heads: int
    vision_layers: int
    vision_hidden: int
    image_size: int
    patch_size: int


def _llava_parts(family: str, tokenizer, shape: _Shape):
    vision = dict(hidden_size=shape.vision_hidden, intermediate_size=2 * shape.vision_hidden,
                  num_hidden_layers=shape.vision_layers, num_attention_heads=max(1, shape.vision_hidden // 16),
                  image_size=shape.image_size, patch_size=shape.patch_size, projection_dim=shape.vision_hidden)
    text = _text_config(family, tokenizer, lm_layers=shape.lm_layers, hidden=shape.hidden, heads=shape.heads,
                        kv_heads=shape.kv_heads)
    common = dict(text_config=text, vision_config=vision, image_token_id=_token_id(tokenizer, "<image>"),
                  vision_feature_select_strategy="default", vision_feature_layer=-2, tie_word_embeddings=False)
    size = {"shortest_edge": shape.image_size}
    crop = {"height": shape.image_size, "width": shape.image_size}
    processor_kwargs = dict(patch_size=shape.patch_size, vision_feature_select_strategy="default",
                            num_additional_image_tokens=1, image_token="<image>")
    if family == "llava":
        image_processor = CLIPImageProcessorPil(size=size, crop_size=crop)
        return LlavaConfig(**common), LlavaForConditionalGeneration, image_processor, LlavaProcessor, processor_kwargs
    s = shape.image_size
    pinpoints = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s]]
    image_processor = LlavaNextImageProcessorPil(size=size, crop_size=crop, image_grid_pinpoints=pinpoints)
    config = LlavaNextConfig(**common, image_grid_pinpoints=pinpoints)
    return config, LlavaNextForConditionalGeneration, image_processor, LlavaNextProcessor, processor_kwargs


_QWEN_CLASSES = {
    "qwen2_vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration),
    "qwen3_vl": (Qwen3VLConfig, Qwen3VLForConditionalGeneration),
}


def _qwen_vision_config(family: str, shape: _Shape) -> dict:
    heads = max(1, shape.vision_hidden // 16)
    common = dict(depth=shape.vision_layers, num_heads=heads, patch_size=shape.patch_size,
                  spatial_merge_size=2, temporal_patch_size=2)
    if family == "qwen2_vl":
        return dict(common, embed_dim=shape.vision_hidden, hidden_size=shape.hidden, mlp_ratio=2)
    if family == "qwen2_5_vl":
        # One windowed and one full-attention block, like the released model's mix.
        return dict(common, hidden_size=shape.vision_hidden, intermediate_size=2 * shape.vision_hidden,
                    out_hidden_size=shape.hidden, fullatt_block_indexes=[shape.vision_layers - 1],
                    window_size=4 * shape.patch_size)
    side = max(2, shape.image_size // shape.patch_size)
    return dict(common, hidden_size=shape.vision_hidden, intermediate_size=2 * shape.vision_hidden,
                out_hidden_size=shape.hidden, num_position_embeddings=side * side,
                deepstack_visual_indexes=[0])


def _qwen_parts(family: str, tokenizer, shape: _Shape):
    config_cls, model_cls = _QWEN_CLASSES[family]
    text = _text_config(family, tokenizer, lm_layers=shape.lm_layers, hidden=shape.hidden, heads=shape.heads,
                        kv_heads=shape.kv_heads)
    ids = {name: _token_id(tokenizer, tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = config_cls(text_config=text, vision_config=_qwen_vision_config(family, shape),
                        tie_word_embeddings=False, **ids)
    factor = shape.patch_size * 2
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=factor * factor, max_pixels=shape.image_size * shape.image_size, patch_size=shape.patch_size,
        merge_size=2, temporal_patch_size=2)
    return config, model_cls, image_processor, processor_class_for(family), {}


_PARTS: dict[str, Callable] = {"llava": _llava_parts, "llava_next": _llava_parts, "qwen2_vl": _qwen_parts,
                               "qwen2_5_vl": _qwen_parts, "qwen3_vl": _qwen_parts}
_DEFAULT_PATCH = {"llava": 14, "llava_next": 14, "qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
_DEFAULT_IMAGE_SIZE = {"llava": 28, "llava_next": 28, "qwen2_vl": 56, "qwen2_5_vl": 56, "qwen3_vl": 64}


def _apply_overrides(config, overrides: dict) -> None:
    for key, value in overrides.items():
        if key in ("text_config", "vision_config"):
            sub = getattr(config, key)
            for sub_key, sub_value in value.items():
                setattr(sub, sub_key, sub_value)
        else:
            setattr(config, key, value)


def build_tiny_vlm(family: str, *, seed: int = 0, lm_layers: int = 2, hidden: int = 64, heads: int = 4,
                   kv_heads: int = 2, vision_layers: int = 2, vision_hidden: int = 32,
                   image_size: int | None = None, patch_size: int | None = None,
                   words: Sequence[str] = DEFAULT_WORDS, **overrides):
    """A random-weight model of `family` (fp32, eval mode) and its processor.

    image_size: for LLaVA families the CLIP input size (default 28 = 2x2 patches of 14, i.e. 4 image
    tokens; LLaVA-NeXT adds anyres grid tokens depending on the original image size); for Qwen families
    the largest image area in pixels is image_size**2 (default 56 for 14-px patches, 64 for Qwen3-VL's 16,
    i.e. up to 4 image tokens after the 2x2 merge).
    """
    _check_family(family)
    shape = _Shape(lm_layers, hidden, heads, kv_heads, vision_layers, vision_hidden,
                   image_size or _DEFAULT_IMAGE_SIZE[family], patch_size or _DEFAULT_PATCH[family])
    tokenizer = build_word_tokenizer(words, family)
    config, model_cls, image_processor, processor_cls, processor_kwargs = _PARTS[family](family, tokenizer, shape)
    _apply_overrides(config, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    model.eval()
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=_chat_template(family), **processor_kwargs)
    return model, processor


def save_tiny_vlm(model, processor, path: str | Path) -> Path:
    """Save model and processor so that `get_model(path)` (and, for LLaVA, the Auto classes) load them.

    The Qwen processors are saved through their no-video variant; see `model_zoo.processors` for how a
    saved Qwen directory loads without torchvision.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def count_unknown_words(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    """How many <unk> ids `text` tokenizes to (a check that the vocabulary covers a prompt)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return sum(1 for i in ids if i == tokenizer.unk_token_id)


