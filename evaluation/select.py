"""Print the hyper-parameters selected on val as main_aro.py flags (what run.sh calls between val and test).

Pass the flags you gave main_aro.py for the val grid (settings flags must match; runtime-only
flags such as --device or --batch-size are accepted and ignored); stdout gets the chosen flags,
stderr the reason. The rule and its tie-break are in `evaluation.selection`.

Examples:
    python -m evaluation.select --output-dir output --dataset Controlled_Images_A --model-name llava1.5 \\
        --method scaling_vis                                      # prints e.g. --weight 0.8
    python -m evaluation.select --dataset VSR --model-name llava1.5 --method adapt_vis \\
        --weight1 0.5,0.8 --weight2 1.2,1.5,2.0 --metric f1       # prints e.g. --weight1 0.5 --weight2 1.2 --threshold 0.6
    FLAGS=$(python -m evaluation.select --dataset VG_QA_one_obj --method adapt_vis) && \\
        python main_aro.py --dataset VG_QA_one_obj --method adapt_vis --split test $FLAGS
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from common.errors import ToolkitError
from evaluation.runs import effective_option, load_runs
from evaluation.selection import METRICS, SELECTABLE_METHODS, Selection, find_candidates, select_best
from runner.config import DTYPES, OPTIONS, PROMPT_FORMATS, SCOPES, SPLITS, RunConfig, parse_list

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.select", description=__doc__.split("\n\n")[0],
                                     epilog="Examples:" + __doc__.split("Examples:")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    search = parser.add_argument_group("what to select")
    search.add_argument("--dataset", required=True, help="benchmark name, e.g. Controlled_Images_A")
    search.add_argument("--method", required=True, choices=SELECTABLE_METHODS)
    search.add_argument("--split", choices=SPLITS, default="val", help="selection split (default: %(default)s)")
    search.add_argument("--metric", choices=METRICS, default="accuracy", help="default: %(default)s")
    search.add_argument("--output-dir", default=RunConfig.output_dir, help="output root (default: %(default)s)")
    search.add_argument("--weight", default="", help="restrict ScalingVis candidates to these alphas")
    search.add_argument("--weight1", default="", help="restrict AdaptVis candidates to these weight1 values")
    search.add_argument("--weight2", default="", help="restrict AdaptVis candidates to these weight2 values")
    search.add_argument("--threshold", default="", help="restrict AdaptVis candidates to these thresholds")

    settings = parser.add_argument_group("settings the candidates must share (main_aro.py's flags and defaults)")
    settings.add_argument("--model-name", default=RunConfig.model_name)
    settings.add_argument("--model-path", default=None)
    settings.add_argument("--revision", default=None)
    settings.add_argument("--dtype", choices=DTYPES, default=RunConfig.dtype)
    settings.add_argument("--option", choices=OPTIONS, default=None, help="default: the paper's per dataset")
    settings.add_argument("--prompt-dir", default=None)
    settings.add_argument("--limit", type=int, default=None)
    settings.add_argument("--seed", type=int, default=RunConfig.seed)
    settings.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=RunConfig.prompt_format)
    settings.add_argument("--max-new-tokens", type=int, default=RunConfig.max_new_tokens)
    settings.add_argument("--no-round-confidence", action="store_true")
    settings.add_argument("--scope", choices=SCOPES, default=RunConfig.scope)
    settings.add_argument("--match", choices=("strict", "paper"), default=RunConfig.match)

    ignored = parser.add_argument_group("accepted and ignored (they do not change results)")
    for flag in ("--data-root", "--device", "--batch-size", "--num_workers", "--num-workers"):
        ignored.add_argument(flag, default=None, help=argparse.SUPPRESS)
    for flag in ("--download", "--overwrite", "--verbose"):
        ignored.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    return parser


def select_from_args(args: argparse.Namespace) -> Selection:
    """Load the output root and run the selection the parsed arguments describe."""
    model = RunConfig(model_name=args.model_name, model_path=args.model_path).model_label
    settings = {
        "option": effective_option(args.dataset, args.option), "match": args.match, "seed": args.seed,
        "scope": args.scope, "prompt_format": args.prompt_format, "max_new_tokens": args.max_new_tokens,
        "limit": args.limit, "dtype": args.dtype, "revision": args.revision, "prompt_dir": args.prompt_dir,
        "no_round_confidence": args.no_round_confidence,
    }
    grid = {flag: parse_list(getattr(args, flag)) for flag in ("weight", "weight1", "weight2", "threshold")}
    candidates = find_candidates(load_runs(args.output_dir), dataset=args.dataset, model=model,
                                 method=args.method, split=args.split, settings=settings, grid=grid)
    return select_best(candidates, args.metric)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the selected flags on stdout; 0 on success, 2 with one error line on stderr otherwise."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        selection = select_from_args(args)
    except ToolkitError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    logger.info("selected: %s", selection.reason())
    sys.stdout.write(" ".join(selection.flags()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
