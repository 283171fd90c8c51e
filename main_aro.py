"""Evaluate a VLM on a spatial-reasoning benchmark, with or without ScalingVis / AdaptVis.

With no arguments, runs the offline demo: the tiny shipped `toy` model on the synthetic Controlled-A
scenes (generated into data/ on first use), baseline vs ScalingVis vs AdaptVis, and prints a table.

Examples:
    python main_aro.py
    python main_aro.py --dataset=Controlled_Images_A --model-name='llava1.5' --download \\
        --method adapt_vis --weight1 0.5 --weight2 1.5 --threshold 0.4 --option=four
    python main_aro.py --dataset VSR --model-name qwen2-vl --method scaling_vis --weight 0.5
    python main_aro.py --dataset COCO_QA_one_obj --split val --method scaling_vis --weight 0.5,0.8,1.2,1.5,2.0
    TEST_MODE=True python main_aro.py --dataset Controlled_Images_B --method base
    accelerate launch main_aro.py --dataset VG_QA_one_obj --model-name llava1.5 --method adapt_vis

Every configuration gets its own folder under --output-dir (config.json, samples.jsonl,
results.json), and a row in <output-dir>/results.csv. Rerunning a command resumes it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError
from runner.config import DTYPES, METHODS, OPTIONS, PROMPT_FORMATS, SCOPES, SPLITS, RunConfig, parse_list

DEMO_METHODS = ("base", "scaling_vis", "adapt_vis")


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command line; also the parent of `evaluation.select`, which takes the same settings flags."""
    parser = OneLineParser(add_help=add_help, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("Examples:")[1].split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=RunConfig.dataset,
                      help="benchmark name, e.g. Controlled_Images_A, COCO_QA_one_obj, VSR, POPE, GQA, TextVQA, "
                           "VQAv2 (default: %(default)s)")
    data.add_argument("--data-root", default=RunConfig.data_root, help="data folder (default: %(default)s)")
    data.add_argument("--download", action="store_true", help="fetch missing annotations and images")
    data.add_argument("--split", choices=SPLITS, default=None,
                      help="the paper's 20%% val / 80%% test split, or all (default: test if TEST_MODE=True, else all)")
    data.add_argument("--option", choices=OPTIONS, default=None,
                      help="answer options named in the question (default: the paper's per dataset); for POPE "
                           "the subset (adversarial, popular, random, all), for VQAv2 5k (a fixed sample) or full")
    data.add_argument("--prompt-dir", default=None,
                      help="folder with the original prompts/*_with_answer_*_options.jsonl, used verbatim")
    data.add_argument("--prompt-variant", choices=("default", "reversed"), default="default",
                      help="reversed: ask about the objects in swapped order (paper Fig. 28)")
    data.add_argument("--vsr-split", choices=("train", "dev", "test"), default="test",
                      help="file of VSR_random / VSR_zeroshot to read (default: %(default)s)")
    data.add_argument("--vsr-paper-resize", action="store_true",
                      help="stretch VSR images to 2300x4096 before the processor, as the original code did")
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (smoke runs)")
    data.add_argument("--seed", type=int, default=RunConfig.seed, help="split seed (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--model-name", default=RunConfig.model_name,
                       help="registry name, e.g. llava1.5, llava1.6, qwen2-vl, toy (default: %(default)s)")
    model.add_argument("--model-path", default=None, help="a local model folder or hub id (overrides --model-name)")
    model.add_argument("--revision", default=None, help="pin the hub revision of the model")
    model.add_argument("--dtype", choices=DTYPES, default=RunConfig.dtype)
    model.add_argument("--device", default=RunConfig.device, help="auto, cuda, cuda:1, mps or cpu")
    model.add_argument("--device-map", default=None,
                       help="e.g. auto: spread a model too large for one GPU over several (accelerate)")
    model.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=RunConfig.prompt_format,
                       help="chat: the model's chat template; paper: the original LLaVA-1.5 string")
    model.add_argument("--max-new-tokens", type=int, default=RunConfig.max_new_tokens,
                       help="answer length (default: %(default)s; answers are one word; the paper used 100)")

    method = parser.add_argument_group("method (comma-separated lists evaluate a grid in one pass)")
    method.add_argument("--method", default=None,
                        help=f"one or more of {', '.join(METHODS)} (default: base)")
    method.add_argument("--weight", default="", help="ScalingVis alpha(s), e.g. 0.8 or 0.5,0.8,1.2")
    method.add_argument("--weight1", default="", help="AdaptVis alpha(s) when the confidence is low (< 1)")
    method.add_argument("--weight2", default="", help="AdaptVis alpha(s) when the confidence is high (> 1)")
    method.add_argument("--threshold", default="", help="AdaptVis confidence threshold(s) in [0, 1]")
    method.add_argument("--no-round-confidence", action="store_true",
                        help="compare the raw confidence (the original rounds it to 2 decimals first)")
    method.add_argument("--scope", choices=SCOPES, default=RunConfig.scope,
                        help="prefill: scale only the last prompt token (the original); all: every generated one too")

    run = parser.add_argument_group("scoring and output")
    run.add_argument("--match", choices=("strict", "paper"), default=RunConfig.match,
                     help="strict: the answer names one option; paper: the original substring rule")
    run.add_argument("--output-dir", default=RunConfig.output_dir, help="output root (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="redo finished configurations")
    run.add_argument("--batch-size", type=int, default=RunConfig.batch_size)
    run.add_argument("--num_workers", "--num-workers", type=int, default=RunConfig.num_workers,
                     help="image-loading worker processes")
    run.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def parse_config(argv: Sequence[str]) -> RunConfig:
    """Command-line arguments → RunConfig. No arguments at all means the three-method demo."""
    args = build_parser().parse_args(argv)
    methods = parse_list(args.method, str) if args.method else (DEMO_METHODS if not argv else ("base",))
    return config_from_args(args, methods)


def config_from_args(args: argparse.Namespace, methods: tuple[str, ...]) -> RunConfig:
    """The RunConfig of parsed arguments: flags map to fields by name; hyper-parameter lists are parsed."""
    values = {field.name: getattr(args, field.name) for field in fields(RunConfig) if hasattr(args, field.name)}
    values.update({flag: parse_list(values[flag]) for flag in ("weight", "weight1", "weight2", "threshold")})
    return RunConfig(**{**values, "method": methods})


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from runner.run import outcome_summary, run  # after logging is set up: importing it loads torch

    try:
        outcomes = run(parse_config(argv))
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = outcome_summary(outcomes)
    if summary:
        print(summary)
        names = ", ".join(o.path.name for o in outcomes) if len(outcomes) <= 3 else f"{len(outcomes)} folders"
        print(f"run folders: {outcomes[0].path.parent}/ ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
