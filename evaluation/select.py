"""Print the hyper-parameters selected on val as main_aro.py flags (what run.sh calls between val and test).

Pass the flags you gave main_aro.py for the val grid (settings flags must match; runtime-only
flags such as --device or --batch-size are accepted and ignored); stdout gets the chosen flags,
stderr the reason. The rule and its tie-break are in `evaluation.selection`. `--prompt-format auto`
(the default) means what it meant for main_aro.py; a selected `--threshold auto` run prints the
number its val split gave (recorded in its config.json), so the test run uses exactly that value.

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
from dataclasses import replace
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError
from dataset_zoo.catalog import get_spec
from dataset_zoo.splits import SPLITS
from evaluation.runs import SETTINGS, effective_option, load_runs
from evaluation.selection import METRICS, Selection, find_candidates, select_best, selectable_methods
from model_zoo.registry import auto_prompt_format
from runner.cli import build_parser as run_parser
from runner.cli import config_from_args
from runner.config import RunConfig

logger = logging.getLogger(__name__)


# main_aro.py flags that only say how to run (not which results): accepted, so run.sh can pass its
# shared flags to both commands, but left out of --help because selection ignores them.
RUNTIME_ONLY = ("data_root", "download", "device", "device_map", "batch_size", "num_workers", "threads", "overwrite")


def build_parser() -> argparse.ArgumentParser:
    """main_aro.py's flags (candidates must share its settings) plus what to select and by which metric."""
    settings = run_parser(add_help=False)
    for action in settings._actions:
        if action.dest in RUNTIME_ONLY:
            action.help = argparse.SUPPRESS
    parser = OneLineParser(prog="python -m evaluation.select", description=__doc__.split("\n\n")[0],
                           epilog="Examples:" + __doc__.split("Examples:")[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           parents=[settings], conflict_handler="resolve")
    search = parser.add_argument_group("what to select (hyper-parameter flags restrict the candidates to a grid)")
    search.add_argument("--method", required=True, choices=selectable_methods(), help="the method to select for")
    search.add_argument("--split", choices=SPLITS, default="val", help="selection split (default: %(default)s)")
    search.add_argument("--metric", choices=METRICS, default="accuracy", help="metric to maximise (default: %(default)s)")
    return parser


def select_from_args(args: argparse.Namespace) -> Selection:
    """Load the output root and run the selection the parsed arguments describe."""
    config = config_from_args(args, (args.method,))
    # A mistyped dataset has no runs: say so before the model's processor is read (which imports torch). The
    # model is not checked: its folder may be gone while its runs remain.
    get_spec(config.dataset)
    config = replace(config, prompt_format=recorded_prompt_format(config))
    settings = {name: getattr(config, name) for name in SETTINGS}
    settings["option"] = effective_option(config.dataset, config.option)
    grid = dict(config.hyperparameters)
    candidates = find_candidates(load_runs(config.output_dir), dataset=config.dataset, model=config.model_label,
                                 method=args.method, split=args.split, settings=settings, grid=grid)
    return select_best(candidates, args.metric)


def recorded_prompt_format(config: RunConfig) -> str:
    """The prompt format main_aro.py recorded for these flags: "auto" resolved as main_aro.py resolves it."""
    if config.prompt_format != "auto":
        return config.prompt_format
    if auto_prompt_format(config.model_path or config.model_name) == "paper":
        return "paper"  # the paper's own models; fits every llava checkpoint, so nothing needs reading
    from runner.run import open_model  # reads the checkpoint's config and processor (chat template)

    try:
        return open_model(config).prompt_format
    except ToolkitError as err:
        raise ToolkitError(f"--prompt-format auto needs the model's processor to tell chat from paper: {err}; "
                           f"or pass the resolved --prompt-format (chat or paper, see the runs' config.json)"
                           ) from None


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
