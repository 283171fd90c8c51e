"""`python -m analysis FIGURE [flags]`: the paper's attention analyses, error analysis and saliency maps.

Examples:
    python -m analysis attention-mass --model-name toy --dataset Synthetic_Controlled_A --limit 64
    python -m analysis heatmaps --model-name llava1.5 --dataset Controlled_Images_A --method scaling_vis \\
        --weight 0.8 --samples 0,5 --layers 8,16,24
    python -m analysis overlap-auroc --dataset COCO_QA_one_obj --model-name llava1.5 \\
        --coco-annotations data/annotations/instances_val2017.json --limit 200
    python -m analysis errors --runs output
    python -m analysis compare --runs output/<baseline folder> output/<method folder>
    python -m analysis all --model-name toy --dataset Synthetic_Controlled_A --method scaling_vis --weight 0.5

Each figure goes to <out>/<figure>/: a PNG, the numbers behind it (CSV or JSON) and caption.txt (what was
measured on what). Model mode captures the baseline's (and the method's) attention once per sample into
<capture-dir> (default <out>/captures), reused while the settings match.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from analysis.figures import FIGURES, MODEL
from common.cli import OneLineParser
from common.errors import ToolkitError
from runner.cli import build_parser as evaluation_parser

if TYPE_CHECKING:
    from analysis.context import Context

logger = logging.getLogger(__name__)

# main_aro.py flags that only concern evaluation run folders; hidden here (they are accepted and ignored)
# main_aro.py flags that mean nothing here (the analyses answer the samples as they are); --boxes-json and
# --coco-annotations are kept: they name the object boxes the overlap figures need.
_EVALUATION_ONLY = ("output_dir", "overwrite", "num_workers", "flip_test", "visual_prompt", "box_colour", "box_width",
                   "box_detector")


def _shared_flags() -> argparse.ArgumentParser:
    """main_aro.py's data/model/method flags plus the analysis' own."""
    parent = evaluation_parser(add_help=False)
    for action in parent._actions:  # argparse keeps a parser's actions there; no public way to hide one
        if action.dest in _EVALUATION_ONLY:
            action.help = argparse.SUPPRESS
    # batches of 8 rather than main_aro's 1: left-padded batches give the same answers and attention rows
    parent.set_defaults(batch_size=8)
    group = parent.add_argument_group("analysis")
    group.add_argument("--out", default="analysis_output", help="output folder (default: %(default)s)")
    group.add_argument("--runs", nargs="+", metavar="PATH",
                       help="finished run folders, or output roots holding them: figures that need only per-sample "
                            "records read these instead of running a model")
    group.add_argument("--capture-dir", default=None, help="where captured attention goes (default: <out>/captures)")
    group.add_argument("--samples", default=None,
                       help="per-sample figures: sample ids or 0-based positions among the analysed samples, e.g. "
                            "0,3,7 (default: the first 4)")
    group.add_argument("--layers", default=None, help="language-model layers to draw, e.g. 8,16,24 (default: per "
                                                      "figure)")
    group.add_argument("--dpi", type=int, default=100, help="PNG resolution (default: %(default)s)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m analysis", description=__doc__.split("\n\n")[0],
                           epilog="Examples:" + __doc__.split("Examples:")[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = parser.add_subparsers(dest="figure", metavar="FIGURE", required=True,
                                    title="figures (paper numbering; what they need)")
    shared = _shared_flags()
    for figure in FIGURES.values():
        text = f"{figure.summary} ({figure.paper}; {figure.source})"
        figures.add_parser(figure.name, parents=[shared], help=text, description=text)
    figures.add_parser("all", parents=[shared], help="every figure (with --runs: those that need only records)",
                       description="every figure; the README's example figures come from this")
    return parser


def _selected(args, ctx: Context) -> list:
    if args.figure != "all":
        figure = FIGURES[args.figure]
        if figure.source == MODEL and ctx.from_runs:
            raise ToolkitError(f"{figure.name} needs the model (it reads attention or gradients), not run folders; "
                               f"drop --runs and give --model-name/--model-path and --dataset")
        return [figure]
    chosen = []
    for figure in FIGURES.values():
        if figure.source == MODEL and ctx.from_runs:
            continue
        if figure.needs_method and not ctx.from_runs and ctx.method is None:
            logger.warning("skipping %s: it compares with a method; add --method scaling_vis or adapt_vis",
                           figure.name)
            continue
        chosen.append(figure)
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    failed: dict[str, list[str]] = {}  # message -> the figures it stopped (a shared cause is reported once)
    try:
        from analysis.context import Context  # imports torch and transformers: not needed for --help

        ctx = Context(args)
        for figure in _selected(args, ctx):
            try:
                written = figure.render(ctx)
            except ToolkitError as err:
                if args.figure != "all":
                    raise
                failed.setdefault(str(err), []).append(figure.name)  # `all` draws what it can
                continue
            folder = written[0].parent
            caption = (folder / "caption.txt").read_text(encoding="utf-8").strip()
            print(f"{figure.name}: {caption}\n  -> {folder}/ ({len(written)} files)", flush=True)
    except ToolkitError as err:
        failed.setdefault(str(err), [])
    for message, figures in failed.items():
        print(f"error: {', '.join(figures) + ': ' if figures else ''}{message}", file=sys.stderr)
    return 2 if failed else 0
