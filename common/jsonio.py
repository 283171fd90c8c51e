"""Reading JSON and JSONL files with errors a user can act on.

Every failure (missing file, undecodable bytes, malformed JSON) becomes a `ToolkitError` that names the
file and, for syntax errors, the line, so a corrupt download or a hand-edited file is found at once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from common.errors import ToolkitError


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ToolkitError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ToolkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); the file is corrupt, "
                           f"download it again") from None
    except OSError as err:
        raise ToolkitError(f"cannot read {path}: {err.strerror}") from None


def read_json(path: Path | str, what: str = "JSON file") -> Any:
    """Parse a whole JSON file; errors name the file, line and column."""
    path = Path(path)
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ToolkitError(f"{path}:{err.lineno}:{err.colno}: malformed JSON ({err.msg}); fix the file or "
                           f"delete it and download it again") from None


def iter_jsonl(path: Path | str, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """Yield (line_number, value) for every non-blank line (1-based line numbers, as editors show them).

    Blank lines are skipped because the real files differ in whether they end with a newline.
    """
    path = Path(path)
    text = _read_text(path, what)
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as err:
            raise ToolkitError(f"{path}:{line_no}: malformed JSON line ({err.msg} at column {err.colno}); fix "
                               f"the line or delete the file and download it again") from None


def read_jsonl(path: Path | str, what: str = "JSONL file") -> list[tuple[int, Any]]:
    """All (line_number, value) pairs of a JSONL file; see `iter_jsonl`."""
    return list(iter_jsonl(path, what))
