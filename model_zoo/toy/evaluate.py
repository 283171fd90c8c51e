"""Measure a toy checkpoint: held-out accuracy, attention on the objects, and how ScalingVis moves answers.

    python -m model_zoo.toy.evaluate                       # the shipped checkpoint, 500 fresh scenes
    python -m model_zoo.toy.evaluate --checkpoint DIR --n 1000 --test-seed toy-test-7

Scenes are rendered in memory from a named random stream (`--test-seed`), at full spatial spread, with
the toolkit's chat prompt and four-option question. Answers come from `VLM.generate` (greedy), exactly as
the toolkit produces them, and count as correct when the stripped lower-cased text equals the gold word.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from common.cli import OneLineParser
from model_zoo.toy import CHECKPOINT_DIR

# The toy model's modules import torch: they are imported inside the functions that use them, so that `--help`
# and argument errors answer at once.
if TYPE_CHECKING:
    from model_zoo.toy.attention_mass import AttentionReport
    from model_zoo.toy.data import Example

logger = logging.getLogger(__name__)

ALPHAS = (0.5, 0.8, 1.0, 1.2, 1.5, 2.0)
MAX_NEW_TOKENS = 3  # the answer word and EOS, with one token to spare


@dataclass
class ScalingRow:
    alpha: float
    accuracy: float
    changed: float   # share of answers that differ from the alpha = 1 answers


def generate_answers(vlm, examples: Sequence[Example], batch_size: int = 50) -> list[str]:
    """Greedy answers of a `VLM` for the examples (prompts as the toolkit builds them)."""
    from model_zoo.toy.data import prompt_for

    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = vlm.prepare([e.image for e in batch], [prompt_for(vlm.processor, e) for e in batch])
        answers += vlm.generate(inputs, max_new_tokens=MAX_NEW_TOKENS)
    return answers


def accuracy(answers: Sequence[str], examples: Sequence[Example]) -> float:
    return sum(a.strip().lower() == e.answer for a, e in zip(answers, examples)) / len(examples)


def scaling_table(vlm, examples: Sequence[Example], alphas: Sequence[float] = ALPHAS,
                  batch_size: int = 50) -> list[ScalingRow]:
    """Accuracy under ScalingVis at each alpha and the share of answers changed relative to alpha = 1."""
    from intervention import ScalingVis  # imported here: only this measurement needs the intervention

    baseline = generate_answers(vlm, examples, batch_size)
    rows = []
    for alpha in alphas:
        with ScalingVis(vlm, alpha=alpha):
            answers = generate_answers(vlm, examples, batch_size)
        changed = sum(a != b for a, b in zip(answers, baseline)) / len(examples)
        rows.append(ScalingRow(alpha, accuracy(answers, examples), changed))
    return rows


@dataclass
class Evaluation:
    n: int
    test_seed: str
    accuracy: float
    attention: AttentionReport
    scaling: list[ScalingRow]

    def to_dict(self) -> dict:
        return {"n": self.n, "test_seed": self.test_seed, "accuracy": self.accuracy,
                "attention": self.attention.to_dict(),
                "scaling_vis": [vars(row) for row in self.scaling]}

    def markdown(self) -> str:
        att = self.attention
        lines = [f"Held-out test set: {self.n} scenes from the stream `{self.test_seed}` (full spread, chat prompt, "
                 f"four options).", "", f"- accuracy (greedy `VLM.generate`, exact word): **{self.accuracy:.1%}**",
                 f"- attention of the last prompt token, middle layer(s) {att.middle_layers()}: mass inside the two "
                 f"boxes / their area fraction = **{att.middle_enrichment():.2f}x**", "",
                 "| LM layer | attention on image | mass in boxes | box area | enrichment | object | anchor "
                 "| top patch on a box |", "|---|---|---|---|---|---|---|---|"]
        for i, layer in enumerate(att.layers):
            lines.append(f"| {i} | {layer.image_share:.1%} | {layer.mass['both']:.1%} | {layer.area['both']:.1%} "
                         f"| {layer.enrichment('both'):.2f}x | {layer.enrichment('object'):.2f}x "
                         f"| {layer.enrichment('anchor'):.2f}x | {layer.top_patch_hits:.1%} |")
        lines += ["", "ScalingVis (all layers, last prompt position, prefill):", "",
                  "| alpha | accuracy | answers changed vs alpha 1 |", "|---|---|---|"]
        lines += [f"| {row.alpha} | {row.accuracy:.1%} | {row.changed:.1%} |" for row in self.scaling]
        return "\n".join(lines) + "\n"


def evaluate_checkpoint(path, n: int = 500, test_seed: str = "toy-test-0", alphas: Sequence[float] = ALPHAS,
                        variants: Sequence[str] = ("A",)) -> Evaluation:
    """Load `path` through `get_model` and measure it on `n` fresh scenes."""
    from model_zoo import get_model
    from model_zoo.toy.data import make_examples

    vlm = get_model(str(path), dtype="float32", device="cpu")
    return evaluate_vlm(vlm, make_examples(test_seed, n, variants=variants), test_seed, alphas)


def evaluate_vlm(vlm, examples: Sequence[Example], test_seed: str,
                 alphas: Sequence[float] = ALPHAS) -> Evaluation:
    from model_zoo.toy.attention_mass import measure_attention_mass

    answers = generate_answers(vlm, examples)
    attention = measure_attention_mass(vlm.model, vlm.processor, examples)
    return Evaluation(len(examples), test_seed, accuracy(answers, examples), attention,
                      scaling_table(vlm, examples, alphas))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m model_zoo.toy.evaluate", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(CHECKPOINT_DIR),
                        help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--n", type=int, default=500, help="number of fresh test scenes")
    parser.add_argument("--test-seed", default="toy-test-0", help="name of the random stream of the test scenes")
    parser.add_argument("--variant", choices=("A", "B"), default="A", help="synthetic Controlled variant")
    return parser


def main(argv: Sequence[str] | None = None) -> Evaluation:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = evaluate_checkpoint(args.checkpoint, args.n, args.test_seed, variants=(args.variant,))
    logger.info("%s", result.markdown())
    return result


if __name__ == "__main__":
    main()
