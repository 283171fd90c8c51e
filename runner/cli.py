"""The command line of `main_aro.py`, shared with `evaluation.select` (which takes the same settings).

Every method's hyper-parameter is a flag, generated from the method registry (`methods`): its name,
type, range, default and the source of the default. A comma-separated value evaluates a grid in one
pass. This module imports neither torch nor transformers, so `--help` and argument errors answer at once.

`--method` defaults: with no arguments at all, the offline demo's three methods (base, scaling_vis,
adapt_vis); otherwise base. A hyper-parameter flag that no requested method takes is an error naming
the methods that take it, never silently dropped.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Optional, Sequence

from common.cli import OneLineParser
from dataset_zoo.catalog import OPTION_NAMES
from dataset_zoo.splits import SPLITS
from dataset_zoo.visual_prompt import VISUAL_PROMPTS
from methods import all_hyperparameters, all_methods, methods_taking
from methods.registry import format_value
from model_zoo.registry import DTYPE_NAMES, PROMPT_FORMATS
from runner.config import DEVICE_MAPS, RunConfig, check_box_flags

DEMO_METHODS = ("base", "scaling_vis", "adapt_vis")


def build_parser(add_help: bool = True, prog: Optional[str] = None, description: Optional[str] = None,
                 epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """main_aro.py's command line; also the parent of `evaluation.select`, which takes the same settings."""
    parser = OneLineParser(prog=prog, add_help=add_help, description=description, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=RunConfig.dataset,
                      help="benchmark name, e.g. Controlled_Images_A, COCO_QA_one_obj, VSR, POPE, GQA, TextVQA, "
                           "VQAv2 (default: %(default)s)")
    data.add_argument("--data-root", default=RunConfig.data_root, help="data folder (default: %(default)s)")
    data.add_argument("--download", action="store_true", help="fetch missing annotations and images")
    data.add_argument("--split", choices=SPLITS, default=None,
                      help="the paper's 20%% val / 80%% test split, or all (default: test if TEST_MODE=True, else all)")
    data.add_argument("--option", choices=OPTION_NAMES, default=None,
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
    data.add_argument("--flip-test", action="store_true",
                      help="also answer each sample's horizontal mirror (left <-> right swapped; ambiguous VSR "
                           "captions left out) and report flip consistency: does the answer flip with the image?")
    data.add_argument("--visual-prompt", choices=VISUAL_PROMPTS, default=RunConfig.visual_prompt,
                      help="box: draw boxes around the objects the question names before the model sees the image "
                           "(default: %(default)s)")
    add_box_flags(data)
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (smoke runs)")
    data.add_argument("--seed", type=int, default=RunConfig.seed, help="split seed (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--model-name", default=RunConfig.model_name,
                       help="registry name, e.g. llava1.5, llava1.6, qwen2-vl, toy (default: %(default)s)")
    model.add_argument("--model-path", default=None, help="a local model folder or hub id (overrides --model-name)")
    model.add_argument("--revision", default=None, help="pin the hub revision of the model")
    model.add_argument("--dtype", choices=DTYPE_NAMES, default=RunConfig.dtype,
                       help="weights' precision; auto: float32 on CPU (float16 there is slow and inexact: "
                            "warned), the checkpoint's own on a GPU (default: %(default)s)")
    model.add_argument("--device", default=RunConfig.device,
                       help="auto (cuda, then mps, then cpu), cuda, cuda:1, mps or cpu; checked before anything "
                            "loads (default: %(default)s)")
    model.add_argument("--device-map", choices=DEVICE_MAPS, default=None,
                       help="spread a model too large for one GPU over several (accelerate), instead of "
                            "--device (leave that at auto); unset: one device")
    model.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=RunConfig.prompt_format,
                       help="chat: the model's chat template; paper: the original LLaVA-1.5 string; auto: paper "
                            "for llava1.5 and llava1.5-13b (the paper's models), chat otherwise (default: %(default)s)")
    model.add_argument("--max-new-tokens", type=int, default=RunConfig.max_new_tokens,
                       help="answer length (default: %(default)s; answers are one word; the paper used 100)")

    add_method_arguments(parser)

    run = parser.add_argument_group("scoring and output")
    run.add_argument("--match", choices=("strict", "paper"), default=RunConfig.match,
                     help="strict: the answer names one option; paper: the original substring rule")
    run.add_argument("--output-dir", default=RunConfig.output_dir, help="output root (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true",
                     help="redo finished configurations, also those whose folder holds a run of other inputs "
                          "(data root, annotation, prompt source or model: an error without this flag)")
    run.add_argument("--batch-size", type=int, default=RunConfig.batch_size,
                     help="samples per forward pass (default: %(default)s)")
    run.add_argument("--num_workers", "--num-workers", type=int, default=RunConfig.num_workers,
                     help="image-loading worker processes (default: %(default)s)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: $OMP_NUM_THREADS when set, else the machine's cores, "
                          "divided among the local processes of a sharded run)")
    run.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def add_box_flags(group) -> None:
    """What --visual-prompt box draws with and where its boxes come from (main_aro.py, training.flip_test)."""
    group.add_argument("--box-colour", default=RunConfig.box_colour,
                       help="--visual-prompt box: a colour name or #rrggbb (default: %(default)s)")
    group.add_argument("--box-width", type=int, default=RunConfig.box_width,
                       help="--visual-prompt box: line width in pixels (default: %(default)s)")
    group.add_argument("--boxes-json", default=None,
                       help="--visual-prompt box: a boxes JSON (schema in dataset_zoo/boxes.py); default: the "
                            "synthetic scenes' own boxes")
    group.add_argument("--coco-annotations", default=None,
                       help="--visual-prompt box: COCO instances JSON (e.g. instances_val2017.json) for COCO-QA/VSR")
    group.add_argument("--box-detector", default=None, metavar="MODULE:FUNCTION",
                       help="--visual-prompt box: your detector fn(image, names) -> {name: [x0, y0, x1, y1]}, "
                            "imported from the current directory or sys.path (none is bundled)")


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """--method and one flag per registered hyper-parameter (bool ones as --x / --no-x)."""
    names = ", ".join(m.name for m in all_methods())
    group = parser.add_argument_group("method (comma-separated values evaluate a grid in one pass)")
    group.add_argument("--method", default=None,
                       help=f"one or more of {names} (default: base; with no arguments at all, the demo's "
                            f"{','.join(DEMO_METHODS)})")
    for hyperparameter in all_hyperparameters().values():
        takers = ", ".join(methods_taking(hyperparameter.name))
        default = ("the paper's per-dataset value" if hyperparameter.default is None
                   else format_value(hyperparameter.default))
        source = f"; {hyperparameter.source}" if hyperparameter.source else ""
        text = f"[{takers}] {hyperparameter.help} (default: {default}{source})".replace("%", "%%")
        if hyperparameter.kind is bool:
            group.add_argument(hyperparameter.flag, dest=hyperparameter.name, default=None,
                               action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(hyperparameter.flag, dest=hyperparameter.name, default=None, help=text,
                               metavar=hyperparameter.name.upper() if hyperparameter.grid else None)


def parse_config(argv: Sequence[str], **parser_text) -> RunConfig:
    """Command-line arguments -> RunConfig. No arguments at all means the three-method demo; box flags without
    --visual-prompt box are an error (`check_box_flags`). `parser_text`: prog / description / epilog of the
    calling command."""
    args = build_parser(**parser_text).parse_args(argv)
    methods = _split(args.method) if args.method else (DEMO_METHODS if not argv else ("base",))
    config = config_from_args(args, methods)
    check_box_flags(config)
    return config


def config_from_args(args: argparse.Namespace, methods: tuple[str, ...]) -> RunConfig:
    """The RunConfig of parsed arguments: settings map to fields by name; hyper-parameters are parsed
    (and range-checked) by their registry entries."""
    values = {field.name: getattr(args, field.name) for field in fields(RunConfig)
              if hasattr(args, field.name) and field.name not in ("method", "hyperparameters")}
    given = {}
    for name, hyperparameter in all_hyperparameters().items():
        value = getattr(args, name, None)
        if value is not None:
            given[name] = (value,) if hyperparameter.kind is bool else hyperparameter.parse(value)
    return RunConfig(**values, method=methods, hyperparameters=given)


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())
