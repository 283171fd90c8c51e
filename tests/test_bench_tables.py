"""The benchmarks' shared pieces that need no model: argument checks and the ratio table's arithmetic
(the benchmarks themselves time real work and are run by hand, see bench/README.md)."""
from __future__ import annotations

import argparse

import pytest

from bench.harness import ratio_table
from bench.shapes import check_bench_args
from common.cli import OneLineParser


def test_the_ratio_table_pairs_repetitions_and_reports_the_ratio_of_medians():
    times = {"baseline": [1.0, 2.0, 4.0], "method": [1.5, 2.0, 4.4]}  # per-repetition ratios 1.5, 1.0, 1.1
    table = ratio_table(times, [("method / baseline", "method", "baseline", "<= 1.2")], digits=2)
    assert "| baseline | 2000.0 | 1000.0 |" in table
    assert "| method / baseline | 1.10 (1.00) | <= 1.2 |" in table


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m bench.test")
    parser.add_argument("--shapes", default="llava")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=0)
    return parser


def test_bench_arguments_are_checked_before_anything_is_built(capsys):
    parser = _parser()
    assert check_bench_args(parser, parser.parse_args(["--shapes", "qwen2_vl, llava"])) == ["qwen2_vl", "llava"]
    for argv, message in ((["--reps", "0"], "--reps must be >= 1, got 0"),
                          (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
                          (["--shapes", "gpt"], "unknown --shapes 'gpt'; choose from llava, qwen2_vl")):
        with pytest.raises(SystemExit):
            check_bench_args(parser, parser.parse_args(argv))
        assert message in capsys.readouterr().err


def test_a_count_left_at_none_takes_its_default():
    parser = _parser()
    args = parser.parse_args([])
    assert isinstance(args, argparse.Namespace) and args.threads is None
    assert check_bench_args(parser, args) == ["llava"]
