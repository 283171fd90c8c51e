"""Every command's help: help text and default for every flag, `python ...` usage lines, only the flags a
command uses, and no torch import for help and argument errors (they answer at once)."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {  # usage prefix: command line
    "python main_aro.py": [str(REPO / "main_aro.py")],
    "python -m evaluation.select": ["-m", "evaluation.select"],
    "python -m evaluation.report": ["-m", "evaluation.report"],
    "python -m dataset_zoo.fetch": ["-m", "dataset_zoo.fetch"],
    "python -m model_zoo.toy.train": ["-m", "model_zoo.toy.train"],
    "python -m model_zoo.toy.evaluate": ["-m", "model_zoo.toy.evaluate"],
    "python -m bench.bench_engine": ["-m", "bench.bench_engine"],
}


def python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def parsers() -> dict[str, argparse.ArgumentParser]:
    import main_aro
    from bench import bench_engine
    from evaluation import report, select
    from model_zoo.toy import train
    from runner.cli import build_parser

    return {"main_aro.py": build_parser(**main_aro.PARSER_TEXT), "evaluation.select": select.build_parser(),
            "evaluation.report": report.build_parser(), "model_zoo.toy.train": train.build_parser(),
            "bench.bench_engine": bench_engine.build_parser()}


@pytest.mark.parametrize("name", ["main_aro.py", "evaluation.select", "evaluation.report", "model_zoo.toy.train",
                                  "bench.bench_engine"])
def test_every_flag_has_help_text_and_its_default(name):
    parser = parsers()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action)
        assert text and text.strip(), f"{name} {action.option_strings[0]} has no help text"
        if action.default not in (None, False):
            assert "default" in text.lower(), f"{name} {action.option_strings[0]} does not say its default"


@pytest.mark.parametrize("usage", COMMANDS)
def test_usage_lines_show_the_command_to_type(usage):
    done = python(*COMMANDS[usage], "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {usage} ")


def test_select_help_lists_only_the_flags_it_uses():
    from evaluation import select

    text = select.build_parser().format_help()
    for runtime in ("--device", "--batch-size", "--data-root", "--download", "--num_workers", "--threads",
                    "--overwrite"):
        assert runtime not in text
    for used in ("--dataset", "--model-name", "--output-dir", "--match", "--weight", "--metric"):
        assert used in text
    # run.sh passes its shared flags to both commands: the runtime ones are still accepted.
    args = select.build_parser().parse_args(["--method", "scaling_vis", "--device", "cpu", "--batch-size", "8",
                                             "--data-root", "d", "--download"])
    assert args.device == "cpu"


def test_a_bad_bench_shape_is_one_error_line():
    done = python("-m", "bench.bench_engine", "--shapes", "foo")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.fullmatch(r"error: unknown --shapes 'foo'; choose from llava, qwen2_vl .*\n", done.stderr)


@pytest.mark.parametrize("args", [
    [str(REPO / "main_aro.py"), "--help"],
    [str(REPO / "main_aro.py"), "--bogus"],
    [str(REPO / "main_aro.py"), "--weight", "0.5,0.8,1.2", "--weight1", "0.5,0.8", "--threshold", "0.3,0.4"],
    [str(REPO / "main_aro.py"), "--method", "scaling_vis", "--weight", "nan"],
    ["-m", "evaluation.select", "--help"],
    ["-m", "evaluation.report", "--help"],
])
def test_help_and_argument_errors_import_no_torch(args):
    done = python("-X", "importtime", *args)
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert imported, done.stderr[-500:]
    heavy = sorted(name for name in imported if name.split(".")[0] in ("torch", "transformers"))
    assert not heavy, heavy[:5]
    assert done.returncode in (0, 2)
