"""Fine-tune a VLM (full or LoRA, vision frozen by default) on a spatial-reasoning set, in the evaluator's format.

Examples:
    python -m training.finetune --model toy --dataset Synthetic_Controlled_B --output-dir finetuned/toy-b \\
        --lr 1e-3 --batch-size 16 --grad-accum 1 --max-steps 150 --eval-every 25 --save-every 25
    python -m training.finetune --model qwen3-vl --dataset VSR_random --output-dir finetuned/qwen3vl-vsr \\
        --precision bf16 --gradient-checkpointing
    python -m training.finetune --model qwen3-vl --dataset VSR_zeroshot --tuning lora --flip \\
        --output-dir finetuned/qwen3vl-vsr-lora --precision bf16
    accelerate launch --num_processes 4 -m training.finetune --model qwen3-vl --dataset VSR_random ...

The output folder gets checkpoint-<step>/ (every --save-every steps; the newest and the best are kept),
best/ (the lowest evaluation loss) and training_summary.json. Every checkpoint folder, best/ included,
evaluates with `python main_aro.py --model-path <folder>` and no other flag. Rerunning the same command
resumes from the newest checkpoint (a killed run loses at most the steps since it); a finished run is
reported and left alone (--overwrite trains again).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError
from dataset_zoo.catalog import DATASET_NAMES
from dataset_zoo.splits import SPLITS
from model_zoo.registry import PROMPT_FORMATS
from training.config import PADDING_SIDES, PRECISIONS, SCHEDULERS, TUNINGS, FinetuneConfig

DEFAULTS = FinetuneConfig(output_dir="")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=DEFAULTS.dataset,
                      help=f"one of {', '.join(DATASET_NAMES)} (VSR*: train file, dev for evaluation; others: see "
                           "--split/--eval-fraction) (default: %(default)s)")
    data.add_argument("--data-root", default=DEFAULTS.data_root, help="data folder (default: %(default)s)")
    data.add_argument("--split", choices=SPLITS, default=None,
                      help="WhatsUp sets: the paper split to train on (default val; synthetic sets: all)")
    data.add_argument("--option", choices=("two", "four", "six"), default=None,
                      help="answer options named in the questions (default: the paper's per dataset)")
    data.add_argument("--eval-fraction", type=float, default=DEFAULTS.eval_fraction,
                      help="share of groups held out for evaluation when there is no dev file (default: %(default)s)")
    data.add_argument("--synthetic-seed", type=int, default=DEFAULTS.synthetic_seed,
                      help="seed of the rendered training scenes (not 0: the evaluation scenes) (default: %(default)s)")
    data.add_argument("--synthetic-pairs", type=int, default=DEFAULTS.synthetic_pairs,
                      help="object pairs rendered for training, 4 images each (default: %(default)s)")
    data.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    data.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N samples only")
    data.add_argument("--flip", action="store_true",
                      help="add horizontally flipped copies with left/right swapped (hard negatives)")
    data.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=DEFAULTS.prompt_format,
                      help="must match the evaluation's --prompt-format (default: %(default)s)")
    data.add_argument("--padding-side", choices=PADDING_SIDES, default=DEFAULTS.padding_side,
                      help="where a batch's shorter sequences are padded (default: %(default)s)")
    data.add_argument("--num-workers", type=int, default=DEFAULTS.num_workers,
                      help="data-loading processes (default: %(default)s)")


def _model_flags(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULTS.model, help="registry name, folder or hub id (default: %(default)s)")
    model.add_argument("--revision", default=None, help="hub revision of the model")
    model.add_argument("--tuning", choices=TUNINGS, default=DEFAULTS.tuning,
                       help="full: every unfrozen weight; lora: low-rank adapters (default: %(default)s)")
    model.add_argument("--lora-r", type=int, default=DEFAULTS.lora_r, help="LoRA rank (default: %(default)s)")
    model.add_argument("--lora-alpha", type=float, default=DEFAULTS.lora_alpha,
                       help="LoRA alpha (default: %(default)s)")
    model.add_argument("--lora-dropout", type=float, default=DEFAULTS.lora_dropout,
                       help="LoRA dropout (default: %(default)s)")
    model.add_argument("--lora-targets", type=_csv, default=DEFAULTS.lora_targets,
                       help=f"module names, comma-separated (default: {','.join(DEFAULTS.lora_targets)})")
    model.add_argument("--merge-lora", action="store_true", help="write best/ as a merged full model")
    model.add_argument("--freeze-vision", default=DEFAULTS.freeze_vision, action=argparse.BooleanOptionalAction,
                       help="keep the vision tower and projector/mergers frozen, as the peer recommends "
                            "(default: %(default)s; --no-freeze-vision trains them too)")
    model.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                       help="fp32; bf16 weights (the peer's); or fp32 weights with bf16 autocast "
                            "(default: %(default)s)")
    model.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")


def _optimisation_flags(parser: argparse.ArgumentParser) -> None:
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=float, default=DEFAULTS.epochs,
                     help="passes over the training set (default: %(default)s)")
    opt.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    opt.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="per process (default: %(default)s)")
    opt.add_argument("--grad-accum", type=int, default=DEFAULTS.grad_accum,
                     help="batches per optimizer step (default: %(default)s)")
    opt.add_argument("--lr", type=float, default=DEFAULTS.lr, help="peak learning rate (default: %(default)s)")
    opt.add_argument("--lr-scheduler", choices=SCHEDULERS, default=DEFAULTS.lr_scheduler,
                     help="learning-rate schedule after the warm-up (default: %(default)s)")
    opt.add_argument("--warmup-steps", type=int, default=DEFAULTS.warmup_steps,
                     help="optimizer steps of linear learning-rate warm-up (default: %(default)s)")
    opt.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay,
                     help="AdamW weight decay (default: %(default)s)")
    opt.add_argument("--adam-beta2", type=float, default=DEFAULTS.adam_beta2, help="AdamW beta2 (default: %(default)s)")
    opt.add_argument("--max-grad-norm", type=float, default=DEFAULTS.max_grad_norm,
                     help="gradient-norm clipping; 0: none (default: %(default)s)")
    opt.add_argument("--seed", type=int, default=DEFAULTS.seed, help="model init and data order (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training.finetune", description=__doc__.split("\n\n")[0],
                           epilog=__doc__.split("Examples:")[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_flags(parser)
    _model_flags(parser)
    _optimisation_flags(parser)
    out = parser.add_argument_group("evaluation and output")
    out.add_argument("--output-dir", required=True, help="run folder (checkpoints, best/, summary)")
    out.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every,
                     help="optimizer steps between evaluations (default: %(default)s)")
    out.add_argument("--save-every", type=int, default=DEFAULTS.save_every,
                     help="optimizer steps between checkpoints (default: %(default)s)")
    out.add_argument("--eval-batch-size", type=int, default=DEFAULTS.eval_batch_size,
                     help="samples per evaluation batch (default: %(default)s)")
    out.add_argument("--overwrite", action="store_true", help="delete the folder's previous run and train again")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_config(argv: Sequence[str]) -> tuple[FinetuneConfig, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    values = {name: getattr(args, name) for name in FinetuneConfig.__dataclass_fields__ if hasattr(args, name)}
    return FinetuneConfig(**values, progress=not args.quiet), args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    config, args = parse_config(sys.argv[1:] if argv is None else list(argv))
    from transformers.utils import logging as transformers_logging

    from training.trainer import Trainer  # imports torch and transformers
    if args.quiet:
        transformers_logging.disable_progress_bar()  # also the weight-loading and shard-writing bars

    try:
        outcome = Trainer(config, overwrite=args.overwrite).run()
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loss = "n/a" if outcome.best_eval_loss is None else f"{outcome.best_eval_loss:.4f}"
    print(f"best: {outcome.best_dir} (step {outcome.best_step} of {outcome.steps}, eval loss {loss})")
    print(f"evaluate: python main_aro.py --model-path {outcome.best_dir} --dataset {config.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
