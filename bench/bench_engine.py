"""Benchmark of the answering engines: prefix-shared (`engine="prefix"`) vs naive generate, on CPU.

    python -m bench.bench_engine                      # both shapes, timing + throughput + memory
    python -m bench.bench_engine --shapes llava --reps 5 --no-memory

Every workload of `bench.workload` runs on the same model and batch, round-robin (one call of each per
repetition, after warm-up), so machine-load drifts hit all of them alike; the tables show medians (and
minima) and the ratios the issue targets. Other processes distort timings on a shared machine: a
repetition counts only if the rest of the machine used at most `--max-external` cores meanwhile
(from /proc/stat), and repetitions continue until enough are quiet (up to 4x); the table reports how
many were kept and the 1-minute load average before and after.

Peak memory is measured in a child process per shape and batch size (glibc told to return freed
blocks to the OS, so RSS follows the tensors): the rise of peak RSS over the RSS before the call.
"""
from __future__ import annotations

import argparse

from bench.shapes import SHAPES, check_bench_args
from common.cli import OneLineParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench.bench_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--reps", type=int, default=11, help="timed round-robin repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--max-external", type=float, default=0.25,
                        help="count a repetition only if other processes used at most this many cores meanwhile")
    parser.add_argument("--batch", type=int, default=8, help="batch size for throughput and memory")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--memory-worker", nargs=2, metavar=("SHAPE", "BATCH"), help=argparse.SUPPRESS)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The arguments, checked: a bad shape or count is one error line, before any model is built."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.shapes = ",".join(check_bench_args(parser, args, counts=("reps", "threads", "batch")))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from bench.engine_timing import run  # imports torch and the models: only once the arguments are checked

    run(args)


if __name__ == "__main__":
    main()
