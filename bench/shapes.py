"""The benchmarks' model shapes and input batch, described without torch (the command lines check `--shapes`
against them before anything loads); `bench.workload` builds the models.

Models: tiny random CPU models with the sequence layout of the paper's models and a small language
model (`SHAPES`): LLaVA-1.5-like (CLIP 336 px / patch 14 -> 576 image tokens) and Qwen2-VL-like
(672 x 672 image, patch 14, 2x2 merge -> 576 image tokens); LM 4 layers x hidden 256 x 8 heads x MLP 1024.

Answer length: random weights never emit EOS, so every workload decodes exactly `ANSWER_TOKENS` = 2
tokens (max_new_tokens=2): the cost of a one-word answer followed by EOS (the first token comes from
the prompt's last position, the second from one decode step), identical for every variant.
"""
from __future__ import annotations

import argparse

ANSWER_TOKENS = 2
LANGUAGE_MODEL = dict(lm_layers=4, hidden=256, heads=8, kv_heads=8, vision_layers=2, vision_hidden=64,
                      text_config={"intermediate_size": 1024})
SHAPES = {
    "llava": dict(family="llava", image_size=336, patch_size=14, image=(400, 300)),
    "qwen2_vl": dict(family="qwen2_vl", image_size=672, patch_size=14, image=(672, 672)),
}
QUESTIONS = (
    "Where is the mug in relation to the table? Answer with left, right, on or under.",
    "Where is the cat?",
    "Is the dog on the left or right of the chair? Answer in one word.",
    "Where is the lamp in relation to the bed?",
)


def check_shapes(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The shapes of a `--shapes` value; an unknown one is the parser's one-line error."""
    shapes = [shape.strip() for shape in text.split(",") if shape.strip()]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown or not shapes:
        parser.error(f"unknown --shapes {', '.join(map(repr, unknown or [text]))}; choose from {', '.join(SHAPES)}")
    return shapes


def check_bench_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     counts: tuple[str, ...] = ("reps", "threads")) -> list[str]:
    """The shapes to time, after checking `args`: each of `counts` >= 1 (None: its default), --warmup >= 0
    and the shapes known; anything else is the parser's one-line error, before any model is built."""
    for flag in counts:
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return check_shapes(parser, args.shapes)


def batch_images(shape: str, batch_size: int) -> tuple[list, list[str]]:
    """The benchmark batch's noise images of the shape's size and its questions (of different lengths)."""
    from numpy.random import default_rng
    from PIL import Image

    width, height = SHAPES[shape]["image"]
    images = [Image.fromarray(default_rng(i).integers(0, 256, (height, width, 3), dtype="uint8"))
              for i in range(batch_size)]
    return images, [QUESTIONS[i % len(QUESTIONS)] for i in range(batch_size)]
