"""Every command's help: help text and default for every flag, `python ...` usage lines, only the flags a
command uses, and no torch import for help and argument errors (they answer at once: `-X importtime` lists
every module a command imported)."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAIN = str(REPO / "main_aro.py")
COMMANDS = {  # usage prefix: command line
    "python main_aro.py": [MAIN],
    "python app.py": [str(REPO / "app.py")],
    "python -m analysis": ["-m", "analysis"],
    "python -m evaluation.select": ["-m", "evaluation.select"],
    "python -m evaluation.report": ["-m", "evaluation.report"],
    "python -m dataset_zoo.fetch": ["-m", "dataset_zoo.fetch"],
    "python -m training.finetune": ["-m", "training.finetune"],
    "python -m training.flip_test": ["-m", "training.flip_test"],
    "python -m model_zoo.toy.train": ["-m", "model_zoo.toy.train"],
    "python -m model_zoo.toy.evaluate": ["-m", "model_zoo.toy.evaluate"],
    "python -m bench.bench_engine": ["-m", "bench.bench_engine"],
    "python -m bench.bench_methods": ["-m", "bench.bench_methods"],
    "python -m bench.bench_clvs": ["-m", "bench.bench_clvs"],
    "python -m bench.bench_vea": ["-m", "bench.bench_vea"],
}


def python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def parser_of(name: str) -> argparse.ArgumentParser:
    """The parser of one command (imported here, so that one command's failure stays its own)."""
    if name == "main_aro.py":
        import main_aro
        from runner.cli import build_parser

        return build_parser(**main_aro.PARSER_TEXT)
    if name in ("bench.bench_clvs", "bench.bench_vea"):  # the shared per-method benchmark command line
        from bench import harness

        return harness.build_parser(f"python -m {name}", importlib.import_module(name).__doc__)
    return importlib.import_module({"app.py": "app", "analysis": "analysis.cli"}.get(name, name)).build_parser()


def flag_actions(parser: argparse.ArgumentParser):
    """(parser, action) of every flag, those of sub-commands (`python -m analysis FIGURE`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from flag_actions(sub)
        elif action.option_strings:
            yield parser, action


def described(text: str) -> bool:
    """Whether a help text says something besides the default (`(%(default)s)` alone does not)."""
    return bool(re.search(r"[A-Za-z]{3}", re.split(r"\(?default\b", text, maxsplit=1)[0]))


@pytest.mark.parametrize("name", ["main_aro.py", "app.py", "analysis", "evaluation.select", "evaluation.report",
                                  "training.finetune", "training.flip_test", "model_zoo.toy.train",
                                  "model_zoo.toy.evaluate", "bench.bench_engine", "bench.bench_methods",
                                  "bench.bench_clvs", "bench.bench_vea"])
def test_every_flag_has_help_text_and_its_default(name):
    for parser, action in flag_actions(parser_of(name)):
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0]
        assert action.help and described(action.help), f"{name} {flag} has no help text"
        if action.default not in (None, False):
            text = parser._get_formatter()._get_help_string(action)
            assert "default" in text.lower(), f"{name} {flag} does not say its default"


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


# (command line, what its one error line says; None: --help, which exits 0)
NO_TORCH = [
    ([MAIN, "--bogus"], "unrecognized arguments: --bogus"),
    ([MAIN, "--weight", "0.5,0.8,1.2", "--weight1", "0.5,0.8", "--threshold", "0.3,0.4"],
     "--weight is a hyper-parameter of scaling_vis"),
    ([MAIN, "--method", "scaling_vis", "--weight", "nan"], "--weight nan is not a finite number"),
    ([MAIN, "--dataset", "Nope"], "unknown dataset 'Nope'"),
    ([MAIN, "--model-name", "nope"], "unknown model 'nope'"),
    ([MAIN, "--model-path", "./no/such/folder"], "no checkpoint directory at './no/such/folder'"),
    ([MAIN, "--device", "foo"], "unknown device 'foo'"),
    ([MAIN, "--device", "cuda:"], "unknown device 'cuda:'"),
    ([MAIN, "--device", "foo", "--device-map", "auto"], "unknown device 'foo'"),
    ([MAIN, "--device", "cpu", "--device-map", "auto"], "--device cpu and --device-map auto both place the "
                                                        "model; give one of them"),
    ([MAIN, "--box-colour", "blue"], "--box-colour applies only with --visual-prompt box"),
    ([MAIN, "--visual-prompt", "box", "--box-width", "0"], "--box-width must be >= 1"),
    ([MAIN, "--visual-prompt", "box", "--box-colour", "nocolour"], "unknown box colour 'nocolour'"),
    (["-m", "evaluation.select", "--dataset", "Nope", "--method", "scaling_vis"], "unknown dataset 'Nope'"),
    (["-m", "training.flip_test", "--boxes-json", "boxes.json"], "--boxes-json applies only with --visual-prompt"),
    (["-m", "training.flip_test", "--device", "foo"], "unknown device 'foo'"),
    (["-m", "model_zoo.toy.train", "--output", "x", "--variants", "C"], "--variants takes A, B or A,B"),
    (["-m", "bench.bench_engine", "--shapes", "foo"], "unknown --shapes 'foo'"),
    (["-m", "bench.bench_methods", "--shapes", "foo"], "unknown --shapes 'foo'"),
    (["-m", "bench.bench_clvs", "--reps", "0"], "--reps must be >= 1"),
] + [pytest.param(COMMANDS[usage] + ["--help"], None, id=f"{usage} --help") for usage in COMMANDS]


@pytest.mark.parametrize("args, error", NO_TORCH)
def test_help_and_argument_errors_import_no_torch(args, error):
    done = python("-X", "importtime", *args)
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert imported, done.stderr[-500:]
    heavy = sorted(name for name in imported if name.split(".")[0] in ("torch", "transformers"))
    assert not heavy, heavy[:5]
    messages = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    if error is None:
        assert done.returncode == 0 and done.stdout.startswith("usage: "), messages
    else:
        assert done.returncode == 2 and len(messages) == 1 and messages[0].startswith("error: "), messages
        assert error in messages[0]
