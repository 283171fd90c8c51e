"""The general-QA benchmarks of the paper's appendix (Tables 3, 4, 10): POPE, GQA, TextVQA and VQAv2.

Sources: the evaluation-ready lmms-lab copies on the Hugging Face hub (read as described in
dataset_zoo.hub_tables; schemas and layout in docs/data.md):

* POPE (`lmms-lab/POPE`, config default, split test: `data/test-*.parquet`, 9,000 rows): `question_id`,
  `question`, `answer` (yes/no), `image_source`, `category` (adversarial / popular / random), `image`.
  Yes/no questions; option = one subset or "all" (default; metrics per subset and their average).
  Sample id "<category>-<question_id>".
* GQA (`lmms-lab/GQA`, testdev balanced: `testdev_balanced_instructions/testdev-*.parquet` with `id`,
  `imageId`, `question`, `answer`, optional `types`; images in `testdev_balanced_images/testdev-*.parquet`
  with `id`, `image`). Short answer, exact match; relation = the structural type (`types.structural`).
* TextVQA (`lmms-lab/textvqa`, split validation: `data/validation-*.parquet`, 5,000 rows): `question_id`,
  `question`, `image_id`, `answers` (ten strings), `image`. Short answer, VQA accuracy; gold = the most
  frequent answer (first seen on ties).
* VQAv2 (`lmms-lab/VQAv2`, split validation: `data/validation-*.parquet`, 214,354 rows): `question_id`,
  `question`, `image_id`, `answers` (ten {"answer", ...}), `multiple_choice_answer`, `answer_type`, `image`.
  Short answer, VQA accuracy; relation = the answer type. Option "5k" (default): a fixed sample of 5,000
  questions, `sorted(random.Random(1).sample(range(N), 5000))` over the full file, whatever --seed says,
  so every run and every paper table sees the same questions; "full": all of them.

The question text is the "short_answer" template of prompt/general_qa.json (the question plus "Answer the
question using a single word or phrase."). Splits (val/test/all) apply on top of the option, as for every
dataset. Images are extracted once to `<root>/<repo>/images/`.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from common.errors import ToolkitError
from dataset_zoo import download as _download
from dataset_zoo.base import SHORT_ANSWER, YES_NO, Sample
from dataset_zoo.catalog import POPE_SUBSETS, DatasetSpec
from dataset_zoo.hub_tables import HubTable, Row, ensure_images, read_rows
from dataset_zoo.prompts import PromptTemplates
from dataset_zoo.splits import select

VQAV2_SAMPLE_SIZE = 5000
VQAV2_SAMPLE_SEED = 1  # fixed on purpose: the "5k" sample must not move with --seed
YES_NO_OPTIONS = ("yes", "no")


@dataclass(frozen=True)
class Question:
    """One row of a questions table, parsed; `image_key` names its image in the image table."""

    id: str
    text: str
    answer: str
    relation: str
    image_key: str
    answers: Optional[tuple[str, ...]] = None
    subset: Optional[str] = None


def _text(values: dict, column: str, where: str) -> str:
    value = values[column]
    if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    raise ToolkitError(f"{where}: {column!r} must be a non-empty string or number, got {value!r}; download the "
                       f"file again or fix the copy")


def _pope(values: dict, where: str) -> Question:
    answer = _text(values, "answer", where).strip().lower()
    category = _text(values, "category", where)
    if answer not in YES_NO_OPTIONS or category not in POPE_SUBSETS:
        raise ToolkitError(f"{where}: POPE rows have answer yes/no and category {'/'.join(POPE_SUBSETS)}, got "
                           f"{values['answer']!r} / {category!r}; download the file again or fix the copy")
    return Question(f"{category}-{_text(values, 'question_id', where)}", _text(values, "question", where), answer,
                    category, _text(values, "image_source", where), subset=category)


def _gqa(values: dict, where: str) -> Question:
    types = values.get("types")
    relation = types.get("structural") if isinstance(types, dict) else None
    return Question(_text(values, "id", where), _text(values, "question", where), _text(values, "answer", where),
                    relation or "gqa", _text(values, "imageId", where))


def _human_answers(values: dict, where: str) -> tuple[str, ...]:
    # TextVQA stores plain strings, VQAv2 {"answer", "answer_confidence", "answer_id"} records.
    raw = values["answers"]
    answers = [a.get("answer") if isinstance(a, dict) else a for a in raw] if isinstance(raw, list) else None
    if not answers or not all(isinstance(answer, str) for answer in answers):
        raise ToolkitError(f"{where}: 'answers' must be a list of human answers (strings or {{\"answer\": ...}}), "
                           f"got {str(raw)[:80]}; download the file again or fix the copy")
    return tuple(answers)


def _textvqa(values: dict, where: str) -> Question:
    answers = _human_answers(values, where)
    return Question(_text(values, "question_id", where), _text(values, "question", where),
                    Counter(answers).most_common(1)[0][0], "text", _text(values, "image_id", where), answers)


def _vqav2(values: dict, where: str) -> Question:
    return Question(_text(values, "question_id", where), _text(values, "question", where),
                    _text(values, "multiple_choice_answer", where), _text(values, "answer_type", where),
                    _text(values, "image_id", where), _human_answers(values, where))


def fixed_sample(n: int, size: int = VQAV2_SAMPLE_SIZE, seed: int = VQAV2_SAMPLE_SEED) -> list[int]:
    """Sorted row indices of the fixed VQAv2 sample (every row when there are at most `size`)."""
    return sorted(random.Random(seed).sample(range(n), size)) if n > size else list(range(n))


def _choose_pope(questions: Sequence[Question], option: str) -> list[Question]:
    return list(questions) if option == "all" else [q for q in questions if q.subset == option]


def _choose_vqav2(questions: Sequence[Question], option: str) -> list[Question]:
    return list(questions) if option == "full" else [questions[i] for i in fixed_sample(len(questions))]


def _everything(questions: Sequence[Question], option: str) -> list[Question]:
    return list(questions)


@dataclass(frozen=True)
class GeneralSource:
    """Where a benchmark's rows and images are and how a row becomes a Question.

    images: a separate table of (id, image) rows (GQA), or None when each question row embeds its image.
    choose: the questions `option` selects, in file order.
    """

    questions: HubTable
    parse: Callable[[dict, str], Question]
    task: str
    choose: Callable[[Sequence[Question], str], list[Question]] = _everything
    images: Optional[HubTable] = None

    @property
    def tables(self) -> tuple[HubTable, ...]:
        return (self.questions,) + ((self.images,) if self.images else ())

    @property
    def image_table(self) -> HubTable:
        return self.images or self.questions


SOURCES = {
    "POPE": GeneralSource(HubTable("lmms-lab/POPE", "data/test",
                                   ("question_id", "question", "answer", "image_source", "category"),
                                   image="image"), _pope, YES_NO, _choose_pope),
    "GQA": GeneralSource(HubTable("lmms-lab/GQA", "testdev_balanced_instructions/testdev",
                                  ("id", "imageId", "question", "answer"), optional=("types",)),
                         _gqa, SHORT_ANSWER,
                         images=HubTable("lmms-lab/GQA", "testdev_balanced_images/testdev", ("id",), image="image")),
    "TextVQA": GeneralSource(HubTable("lmms-lab/textvqa", "data/validation",
                                      ("question_id", "question", "image_id", "answers"), image="image"),
                             _textvqa, SHORT_ANSWER),
    "VQAv2": GeneralSource(HubTable("lmms-lab/VQAv2", "data/validation",
                                    ("question_id", "question", "image_id", "answers", "multiple_choice_answer",
                                     "answer_type"), image="image"), _vqav2, SHORT_ANSWER, _choose_vqav2),
}


def fetch_general(spec: DatasetSpec, root: Path, mirror: Optional[str] = None) -> None:
    """Download the hub files of a general benchmark that are not present yet."""
    for table in SOURCES[spec.name].tables:
        _download.fetch_table(spec, root, table, mirror)


def _parse_all(source: GeneralSource, rows: Sequence[Row], name: str) -> list[Question]:
    questions, seen = [], {}
    for index, row in enumerate(rows):
        where = f"{row.file} row {row.position + 1}"
        question = source.parse(row.values, where)
        if question.id in seen:
            raise ToolkitError(f"{where}: question id {question.id} repeats row {seen[question.id] + 1} of "
                               f"{name}; ids key resumed runs, so fix the copy or download it again")
        seen[question.id] = index
        questions.append(question)
    return questions


def _image_rows(source: GeneralSource, root: Path, name: str, questions: Sequence[Question],
                rows_by_id: dict[str, Row]) -> dict[str, Row]:
    """{image key: the row holding that image} for `questions`."""
    if source.images is None:
        return {q.image_key: rows_by_id[q.id] for q in questions}
    table = {str(row.values["id"]): row for row in read_rows(root, source.images, name)}
    missing = sorted({q.image_key for q in questions} - set(table))
    if missing:
        raise ToolkitError(f"{name}: {len(missing)} image(s) the questions use are not in "
                           f"{source.images.repo}/{source.images.pattern} (e.g. {missing[0]}); download the "
                           f"image files again or fix the copy")
    return {q.image_key: table[q.image_key] for q in questions}


def load_general(spec: DatasetSpec, root: Path, option: str, split: str, seed: int,
                 templates: PromptTemplates, check_images: bool = True) -> tuple[list[Sample], str, dict]:
    """(samples of `option` and `split`, task, info) of a general benchmark whose files are present."""
    source = SOURCES[spec.name]
    rows = read_rows(root, source.questions, spec.name)
    questions = _parse_all(source, rows, spec.name)
    indices = {q.id: index for index, q in enumerate(questions)}
    selected = select(source.choose(questions, option), split, seed)
    rows_by_id = {q.id: rows[indices[q.id]] for q in selected}
    images = ensure_images(source.image_table, _image_rows(source, root, spec.name, selected, rows_by_id),
                           root / spec.images)
    if check_images:
        _require_image_files(spec.name, images)
    options = YES_NO_OPTIONS if source.task == YES_NO else ()
    samples = [Sample(id=q.id, index=indices[q.id], image_path=images[q.image_key],
                      question=templates.question("short_answer", question=q.text.strip()), options=options,
                      answer=q.answer, relation=q.relation, answers=q.answers, subset=q.subset)
               for q in selected]
    info = {"source": source.questions.repo, "files": sorted({str(row.file) for row in rows}),
            "n_total": len(questions)}
    if spec.name == "VQAv2" and option == "5k":
        info.update(sample_size=VQAV2_SAMPLE_SIZE, sample_seed=VQAV2_SAMPLE_SEED)
    return samples, source.task, info


def _require_image_files(name: str, images: dict[str, Path]) -> None:
    missing = [path for path in images.values() if not path.is_file()]
    if missing:
        raise ToolkitError(f"{len(missing)} images of {name} are missing (e.g. {missing[0]}); the JSON copy "
                           f"points at files that are not there: place them or fix the paths")
