"""What every command line of the toolkit shares: one-line errors, `python -m ...` usage lines, and
every flag's default in its help text."""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path


class DefaultsInHelp(argparse.HelpFormatter):
    """Append "(default: X)" to a flag's help unless the text already names its default. Flags whose
    default is None (unset: the help says what that means) or False (an off switch) are left alone."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default" in text.lower()):
            return text
        return f"{text} (default: %(default)s)"


class RawDescriptionDefaultsInHelp(DefaultsInHelp, argparse.RawDescriptionHelpFormatter):
    """DefaultsInHelp that keeps the description's and epilog's line breaks (examples stay readable)."""


def invocation() -> str:
    """How the running command was started: `python -m package.module` or `python script.py`, so usage
    lines show a command that can be copied (argparse would show the file name of the module)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return f"python {Path(sys.argv[0]).name}"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one `error: ...` line (no usage dump) and exit status 2; the
    usage line shows the `python ...` command (unless `prog` is given) and every flag's default."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("prog") is None:
            kwargs["prog"] = invocation()
        formatter = kwargs.get("formatter_class", argparse.HelpFormatter)
        if formatter is argparse.RawDescriptionHelpFormatter:
            kwargs["formatter_class"] = RawDescriptionDefaultsInHelp
        elif formatter is argparse.HelpFormatter:
            kwargs["formatter_class"] = DefaultsInHelp
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message}{self._closest_flags(message)} (see {self.prog} --help)\n")

    def _closest_flags(self, message: str) -> str:
        """For mistyped flags (`--cd-alhpa`), the flags they were probably meant to be."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        known = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        guesses = []
        for word in message[len(prefix):].split():
            flag = word.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("--") else []
            if close:
                guesses.append(f"{close[0]} for {flag}")
        return f"; did you mean {', '.join(guesses)}?" if guesses else ""
