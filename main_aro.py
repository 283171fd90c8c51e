"""Evaluate a VLM on a spatial-reasoning benchmark, with or without ScalingVis / AdaptVis.

With no arguments, runs the offline demo: the tiny shipped `toy` model on the synthetic Controlled-A
scenes (generated into data/ on first use), baseline vs ScalingVis vs AdaptVis, and prints a table.

Examples:
    python main_aro.py
    python main_aro.py --dataset=Controlled_Images_A --model-name='llava1.5' --download \\
        --method adapt_vis --weight1 0.5 --weight2 1.5 --threshold 0.4 --option=four
    python main_aro.py --dataset VSR --model-name qwen2-vl --method scaling_vis --weight 0.5
    python main_aro.py --dataset VSR --split val --method adapt_vis --weight1 0.5 --weight2 1.2 --threshold auto
    python main_aro.py --dataset COCO_QA_one_obj --split val --method scaling_vis --weight 0.5,0.8,1.2,1.5,2.0
    TEST_MODE=True python main_aro.py --dataset Controlled_Images_B --method base
    accelerate launch main_aro.py --dataset VG_QA_one_obj --model-name llava1.5 --method adapt_vis

Every configuration gets its own folder under --output-dir (config.json, samples.jsonl,
results.json), and a row in <output-dir>/results.csv. Rerunning a command resumes it.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from common.errors import ToolkitError
from runner.cli import parse_config

PARSER_TEXT = {"prog": "main_aro.py", "description": __doc__.split("\n\n")[0],
               "epilog": __doc__.split("Examples:")[1].split("\n\n")[0]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        config = parse_config(argv, **PARSER_TEXT)
        from runner.run import outcome_summary, run  # after parsing: importing it loads torch

        outcomes = run(config)
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
