"""Flip test: answer every sample and its horizontal mirror, and report whether the answers flip together.

Examples:
    python -m training.flip_test --model-path finetuned/toy-b/best --dataset Synthetic_Controlled_B
    python -m training.flip_test --model-name toy --dataset Synthetic_Controlled_A --weight 0.5
    python -m training.flip_test --model-name toy --dataset Synthetic_Controlled_A --visual-prompt box
    python -m training.flip_test --model-name toy --dataset VSR --visual-prompt box --box-detector my_det:detect
    python -m training.flip_test --model-name qwen3-vl --dataset VSR --split test --output flip.jsonl

Prints accuracy on the originals and on the flips and the flip consistency (`scoring.flip_consistency`);
--output writes every answer as JSON lines and the metrics to <output>.metrics.json. Samples whose text
cannot be flipped unambiguously (VSR captions with a "left"/"right" outside a relation phrase) are left out
and counted. --weight answers under ScalingVis at that alpha (1 = the unmodified model); --visual-prompt box
draws the referenced objects' boxes (red, 3 px unless --box-colour/--box-width) on both images, from the
synthetic sidecar, --boxes-json, --coco-annotations or your --box-detector MODULE:FUNCTION (`dataset_zoo.boxes`;
the detector sees each image as the model does, mirrored for a flip).

From Python (e.g. the runner): `run_flip_test(vlm, samples, alpha=..., visual_prompt=...)`, or evaluate
`dataset_zoo.flip.flip_samples(samples)[0]` alongside the originals and score the records with
`scoring.flip_consistency.flip_consistency`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm.auto import tqdm

from common.cli import OneLineParser
from common.errors import ToolkitError
from dataset_zoo.base import Sample
from dataset_zoo.boxes import check_detector_spec
from dataset_zoo.catalog import get_spec
from dataset_zoo.flip import flip_samples, original_id
from dataset_zoo.splits import SPLITS
from dataset_zoo.visual_prompt import VISUAL_PROMPTS, parse_colour
from model_zoo.registry import DTYPE_NAMES, check_device_name, resolve_model_reference
from runner.cli import add_box_flags
from runner.config import RunConfig, check_box_flags
from scoring.flip_consistency import flip_consistency

logger = logging.getLogger(__name__)
VisualPrompt = Callable[[Sample, object], object]


def answer_samples(vlm, samples: Sequence[Sample], *, alpha: float = 1.0, visual_prompt: Optional[VisualPrompt] = None,
                   batch_size: int = 8, max_new_tokens: int = 10, match: str = "strict") -> list[dict]:
    """One record per sample (id, relation, generation, prediction, gold, correct), answered at `alpha`."""
    from scoring import judge
    from intervention.session import open_session
    records = []
    for start in tqdm(range(0, len(samples), batch_size), desc="flip test", unit="batch", dynamic_ncols=True):
        batch = samples[start:start + batch_size]
        images = [s.image if visual_prompt is None else visual_prompt(s, s.image) for s in batch]
        prompts = [vlm.build_prompt(s.question, s.paper_prompt) for s in batch]
        session = open_session(vlm, vlm.prepare(images, prompts), max_new_tokens=max_new_tokens)
        for sample, generation in zip(batch, session.answers(alpha)):
            verdict = judge(generation, sample, match)
            records.append({"id": sample.id, "relation": sample.relation, "question": sample.question,
                            "generation": generation, "prediction": verdict.prediction, "gold": sample.answer,
                            "correct": verdict.correct})
    return records


def run_flip_test(vlm, samples: Sequence[Sample], **answer_kwargs) -> tuple[dict, list[dict]]:
    """(metrics, records) of the flip test on `samples`; `answer_kwargs` go to `answer_samples`."""
    flips, refused = flip_samples(samples)
    kept = {original_id(flip) for flip in flips}
    records = answer_samples(vlm, [s for s in samples if s.id in kept] + flips, **answer_kwargs)
    metrics = flip_consistency(records)
    metrics.update(n_refused=len(refused), refused_ids=[s.id for s in refused])
    return metrics, records


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training.flip_test", description=__doc__.split("\n\n")[0],
                           epilog=__doc__.split("Examples:")[1].split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-name", default=RunConfig.model_name, help="registry name (default: %(default)s)")
    parser.add_argument("--model-path", default=None, help="checkpoint or adapter folder (overrides --model-name)")
    parser.add_argument("--dataset", default=RunConfig.dataset, help="benchmark name, as for main_aro.py")
    parser.add_argument("--data-root", default=RunConfig.data_root, help="data folder")
    parser.add_argument("--split", choices=SPLITS, default="all", help="the paper's val / test split, or all")
    parser.add_argument("--option", choices=("two", "four", "six"), default=None,
                        help="answer options named in the question (default: the paper's per dataset)")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--weight", type=float, default=1.0, help="ScalingVis alpha (1 = no intervention)")
    parser.add_argument("--visual-prompt", choices=VISUAL_PROMPTS, default=RunConfig.visual_prompt,
                        help="box: draw boxes around the objects the question names, on both images")
    add_box_flags(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="samples per forward pass")
    parser.add_argument("--max-new-tokens", type=int, default=RunConfig.max_new_tokens, help="answer length")
    parser.add_argument("--match", choices=("strict", "paper"), default=RunConfig.match,
                        help="strict: the answer names one option; paper: the original substring rule")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=RunConfig.dtype,
                        help="weights' precision; auto: float32 on CPU, the checkpoint's own on a GPU")
    parser.add_argument("--device", default=RunConfig.device, help="auto (cuda, then mps, then cpu), cuda, cuda:1, "
                                                                   "mps or cpu")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSONL file for every answer (the metrics go to <output>.metrics.json)")
    return parser


def check_args(args) -> None:
    """Every flag, checked before any data or model loads (main_aro.py's rules, `runner.config`)."""
    get_spec(args.dataset)
    resolve_model_reference(args.model_path or args.model_name)
    check_device_name(args.device)
    for flag, low in (("limit", 1), ("batch_size", 1), ("max_new_tokens", 1), ("box_width", 1)):
        value = getattr(args, flag)
        if value is not None and value < low:
            raise ToolkitError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
    if not math.isfinite(args.weight) or args.weight < 0:
        raise ToolkitError(f"--weight must be a finite number >= 0 (1 = no intervention), got {args.weight}")
    check_box_flags(args)
    parse_colour(args.box_colour)
    _check_box_detector(args)


def _check_box_detector(args) -> None:
    """--box-detector's form and company (main_aro.py's rule)."""
    if args.box_detector is None:
        return
    check_detector_spec(args.box_detector)
    if args.visual_prompt != "box":
        raise ToolkitError("--box-detector finds the boxes that --visual-prompt box draws; add --visual-prompt box "
                           "or drop --box-detector")


def _visual_prompt(args) -> Optional[VisualPrompt]:
    if args.visual_prompt == "none":
        return None
    from dataset_zoo.boxes import box_source_for, load_detector
    from dataset_zoo.visual_prompt import BoxPrompt
    detector = None if args.box_detector is None else load_detector(args.box_detector)
    source = box_source_for(args.dataset, args.data_root, boxes_json=args.boxes_json,
                            coco_annotations=args.coco_annotations, detector=detector)
    return BoxPrompt(source, colour=args.box_colour, width=args.box_width)


def _write(output: Path, records: list[dict], metrics: dict) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(json.dumps(r) + "\n" for r in records))
    output.with_name(output.name + ".metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


def _report(metrics: dict) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"
    return (f"pairs {metrics['n_pairs']} (refused {metrics['n_refused']}): accuracy original "
            f"{pct(metrics['accuracy_original'])}, flipped {pct(metrics['accuracy_flipped'])}, both correct "
            f"{pct(metrics['both_correct'])}; flip consistency {pct(metrics['consistency'])} "
            f"({metrics['n_consistent']} of {metrics['n_parsed']} parsed pairs)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        from dataset_zoo import get_dataset
        from model_zoo import get_model  # imports torch: after the checks, so a typo is refused at once

        dataset = get_dataset(args.dataset, root=args.data_root, split=args.split, option=args.option)
        samples = list(dataset)[:args.limit] if args.limit else list(dataset)
        visual_prompt = _visual_prompt(args)
        vlm = get_model(args.model_path or args.model_name, dtype=args.dtype, device=args.device)
        metrics, records = run_flip_test(vlm, samples, alpha=args.weight, visual_prompt=visual_prompt,
                                         batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                         match=args.match)
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if visual_prompt is not None:
        metrics["visual_prompt"] = visual_prompt.to_dict()
    if args.output is not None:
        _write(args.output, records, metrics)
    print(_report(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
