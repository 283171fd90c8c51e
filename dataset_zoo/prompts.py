"""Prompt templates (data in `prompt/templates.json`) and the original AdaptVis prompt files.

Two sources of question text:
- the toolkit's versioned templates (default): model-agnostic questions in the paper's wording;
- the original `prompts/{dataset}_with_answer_{option}_options.jsonl` files, when the user points at
  them (`prompt_dir`): used verbatim, row i belonging to annotation row i ("paper-exact mode").

Either way the dataset records where its prompts came from in `dataset.prompt_info`, so results can log
the template name, version and file hash.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.errors import ToolkitError
from common.jsonio import iter_jsonl, read_json
from dataset_zoo.catalog import CHOICE_COUNTS

DEFAULT_TEMPLATE_FILE = Path(__file__).resolve().parent.parent / "prompt" / "templates.json"
# The general benchmarks' prompts live in their own file, so adding them left the spatial templates' hash
# (recorded by every spatial run) unchanged.
GENERAL_TEMPLATE_FILE = DEFAULT_TEMPLATE_FILE.with_name("general_qa.json")
SPATIAL_KEYS = ("questions", "option_sets", "two_options_text", "paper_prompts")
GENERAL_KEYS = ("questions",)
OPTION_WORDS = CHOICE_COUNTS

# The original files wrap the question in LLaVA-1.5 chat wording. Tolerated quirks: a double space after
# "USER:" and an extra newline before "ASSISTANT:" (both stripped as surrounding whitespace); quirks inside
# the question ("? \nAnswer with", "..", "Where are") are kept verbatim.
_CHAT_PREFIX = re.compile(r"^\s*<image>\s*USER:\s*")
_CHAT_SUFFIX = re.compile(r"\s*ASSISTANT:\s*$")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class OptionSet:
    """The answer words a question offers and how the question spells them out."""

    words: tuple[str, ...]
    text: str


class PromptTemplates:
    """The parsed template file; see prompt/templates.json for the strings."""

    def __init__(self, path: Path, data: dict, required: tuple[str, ...] = SPATIAL_KEYS):
        self.path = path
        self.name = data.get("name", path.stem)
        self.version = data.get("version")
        self.sha256 = file_sha256(path)
        self._data = data
        model = GENERAL_TEMPLATE_FILE if required == GENERAL_KEYS else DEFAULT_TEMPLATE_FILE
        for key in required:
            if key not in data:
                raise ToolkitError(f"{path}: prompt template file lacks the key {key!r}; start from the "
                                   f"repository's prompt/{model.name}")

    def question(self, template: str, **fields: str) -> str:
        try:
            return self._data["questions"][template].format(**fields)
        except KeyError as err:
            raise ToolkitError(f"{self.path}: template {template!r} is missing or uses an unknown field "
                               f"{err}; valid templates: {', '.join(self._data['questions'])}") from None

    def paper_prompt(self, template: str, **fields: str) -> str:
        return self._data["paper_prompts"][template].format(**fields)

    def option_set(self, set_name: str, option: str) -> OptionSet:
        try:
            entry = self._data["option_sets"][set_name][option]
        except KeyError:
            raise ToolkitError(f"{self.path}: no option set {set_name!r}/{option!r}") from None
        return OptionSet(tuple(entry["options"]), entry["text"])

    def two_options(self, first: str, second: str) -> OptionSet:
        return OptionSet((first, second), self._data["two_options_text"].format(first=first, second=second))

    def info(self, template: str, variant: str, option: Optional[str]) -> dict:
        """What a results file should record about the prompts of a dataset built from these templates."""
        return {"source": "template", "file": str(self.path), "name": self.name, "version": self.version,
                "sha256": self.sha256, "template": template, "variant": variant, "option": option}


def load_templates(path: Optional[Path | str] = None, required: tuple[str, ...] = SPATIAL_KEYS) -> PromptTemplates:
    """Read a template file (default: the repository's prompt/templates.json; `required=GENERAL_KEYS` for
    a file of the general benchmarks' prompts such as prompt/general_qa.json)."""
    path = Path(path) if path is not None else DEFAULT_TEMPLATE_FILE
    data = read_json(path, what="prompt template file")
    if not isinstance(data, dict):
        raise ToolkitError(f"{path}: a prompt template file holds one JSON object; start from the "
                           f"repository's prompt/{path.name}")
    return PromptTemplates(path, data, required)


@dataclass(frozen=True)
class PaperPromptRow:
    """One row of an original prompt file: the full prompt, its user text, the gold word (lower case)."""

    prompt: str
    question: str
    answer: str
    line: int


def paper_prompt_path(prompt_dir: Path | str, dataset: str, option: str) -> Path:
    return Path(prompt_dir) / f"{dataset}_with_answer_{option}_options.jsonl"


def strip_chat_wrapper(prompt: str) -> str:
    """The user text of an original prompt: without "<image>\\nUSER: " and "\\nASSISTANT:"."""
    return _CHAT_SUFFIX.sub("", _CHAT_PREFIX.sub("", prompt, count=1), count=1).strip()


def _row_answer(value, path: Path, line: int) -> str:
    # Answers are one-element lists (["On"]); the deleted VSR file used plain strings. Accept both.
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0].strip().lower()
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    raise ToolkitError(f"{path}:{line}: 'answer' must be a list like [\"Left\"] or a string, got {value!r}; "
                       f"fix the row or use an unmodified prompt file")


def read_paper_prompts(path: Path) -> list[PaperPromptRow]:
    """Parse an original prompt file; every row needs a string 'question' and an 'answer'."""
    if not path.is_file():
        raise ToolkitError(f"prompt file not found: {path}; the original files are named "
                           f"{{dataset}}_with_answer_{{option}}_options.jsonl (from the AdaptVis repository's "
                           f"prompts/ folder): place it there or drop prompt_dir / --prompt-dir")
    rows = []
    for line, row in iter_jsonl(path, what="prompt file"):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
            raise ToolkitError(f"{path}:{line}: a prompt row needs a string 'question' and an 'answer' "
                               f"(fields id/question/answer); fix the row")
        rows.append(PaperPromptRow(prompt=row["question"], question=strip_chat_wrapper(row["question"]),
                                   answer=_row_answer(row["answer"], path, line), line=line))
    return rows


def paper_prompts_for(prompt_dir: Path | str, dataset: str, option: str, n_rows: int,
                      annotation: Path) -> tuple[list[PaperPromptRow], dict]:
    """The verbatim rows for `dataset`, checked to align with its annotation file, plus their prompt_info."""
    path = paper_prompt_path(prompt_dir, dataset, option)
    rows = read_paper_prompts(path)
    if len(rows) != n_rows:
        raise ToolkitError(f"{path} has {len(rows)} rows but {annotation} has {n_rows}; prompt rows are matched "
                           f"to annotation rows by position, so use the prompt file of this dataset and "
                           f"option count ({dataset}, {option})")
    info = {"source": "paper_file", "file": str(path), "name": path.name, "version": None,
            "sha256": file_sha256(path), "template": None, "variant": "default", "option": option}
    return rows, info
