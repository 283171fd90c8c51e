"""What the page does, as functions from the page's inputs to what it shows; `demo.page` only wires them to Gradio
components, and tests call them directly.

A problem the visitor can fix (an invalid setting, a file that is not an image) comes back as a `message` in the
page, never as an exception: the server keeps serving. Anything else is logged with its traceback on the server
and shown as one line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from analysis.stats import image_map
from common.errors import ToolkitError
from demo import figures
from demo.controls import configuration_from
from demo.engine import Engine, Outcome, Progress, Result, silent
from demo.sources import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, DatasetSource, Source, UploadSource, load_upload

logger = logging.getLogger(__name__)

DATASET_SAMPLE = "a sample of the dataset"
UPLOADED = "your image and question"
SOURCE_KINDS = (DATASET_SAMPLE, UPLOADED)
ALL = "all"
RIGHT = "right at baseline"
WRONG = "wrong at baseline"
VERDICT_FILTERS = (ALL, RIGHT, WRONG)


@dataclass(frozen=True)
class View:
    """What the page shows after a request: `message` ("" when all went well), the answers table (Markdown), the
    heatmaps and the per-layer mass plot (None when there is nothing to draw), the layer drawn (None: unchanged);
    `result` for Python callers and tests."""

    message: str
    answers: str = ""
    heatmap: Optional[Image.Image] = None
    masses: Optional[Image.Image] = None
    layer: Optional[int] = None
    result: Optional[Result] = field(default=None, repr=False)


@dataclass(frozen=True)
class Selection:
    """The dataset positions a filter keeps, and a message when it keeps none."""

    positions: tuple[int, ...]
    message: str = ""


@dataclass(frozen=True)
class Shown:
    """Everything the page shows after any input changed: what is answered (`about`), how many samples the filters
    keep (None when no dataset sample is shown) and the position shown among them, and the `view` of the answers."""

    about: str
    kept: Optional[int]
    position: int
    view: View


def respond(engine: Engine, kind: str, relation: str, verdict: str, position: Any, path: Optional[str],
            question: Optional[str], method: str, names: Sequence[str], values: Sequence[Any], layer: Any, *,
            max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS,
            progress: Progress = silent) -> Shown:
    """The page from its input values alone: the source is derived from the inputs as they are when the request
    is made (never from state another request may not have updated yet), so whatever order requests finish in,
    the last one shows exactly what the page's inputs say."""
    try:
        return _respond(engine, kind, relation, verdict, position, path, question, method, names, values, layer,
                        max_bytes, max_pixels, progress)
    except Exception as err:  # noqa: BLE001  (the page must keep working; the server log has the traceback)
        logger.exception("demo request failed")
        return Shown(describe(engine, None), None, 0,
                     View(f"internal error ({type(err).__name__}: {err}); the server log has the details"))


def _respond(engine, kind, relation, verdict, position, path, question, method, names, values, layer, max_bytes,
             max_pixels, progress) -> Shown:
    if kind == UPLOADED:
        source, problem = upload(path, question, max_bytes=max_bytes, max_pixels=max_pixels)
        if source is None:
            return Shown(describe(engine, None), None, 0, View(problem))
        return Shown(describe(engine, source), None, 0, show(engine, source, method, names, values, layer, progress))
    chosen = choose_samples(engine, relation, verdict, progress)
    if not chosen.positions:
        return Shown(describe(engine, None), None, 0, View(chosen.message))
    position = min(max(int(position or 0), 0), len(chosen.positions) - 1)
    source = DatasetSource(chosen.positions[position])
    return Shown(describe(engine, source), len(chosen.positions), position,
                 show(engine, source, method, names, values, layer, progress))


def show(engine: Engine, source: Source, method: str, names: Sequence[str], values: Sequence[Any],
         layer: Any, progress: Progress = silent) -> View:
    """Answer `source` with the baseline and `method` at the control `values`, and draw layer `layer` (None: the
    middle layer, where the paper's figures find attention on the objects)."""
    try:
        configuration = configuration_from(method, names, values)
    except ToolkitError as err:
        return View(f"invalid setting: {err}")
    try:
        result = engine.result(source, configuration, progress)
        image = source.image if isinstance(source, UploadSource) else result.sample.image
        n_layers = figures.layer_count(result)
        drawn = n_layers // 2 if layer is None else min(max(int(layer), 0), n_layers - 1)
        progress(0.9, desc="drawing")
        return View(_notes(result), answer_table(result, drawn), figures.heatmaps(result, image, drawn),
                    figures.masses(result, drawn), drawn, result)
    except ToolkitError as err:
        return View(str(err))


def choose_samples(engine: Engine, relation: str, verdict: str, progress: Progress = silent) -> Selection:
    """Dataset positions with gold relation `relation` (or ALL) and, for RIGHT/WRONG, the baseline's verdict (the
    baseline answers the samples it has not answered yet, with progress)."""
    positions = [i for i, s in enumerate(engine.samples) if relation in (ALL, None) or s.relation == relation]
    if verdict in (RIGHT, WRONG) and positions:
        try:
            known = engine.baseline_verdicts(positions, progress)
        except ToolkitError as err:
            return Selection((), str(err))
        positions = [i for i in positions if known[i] == (verdict == RIGHT)]
    if not positions:
        return Selection((), f"no sample matches the filters (relation: {relation}; baseline: {verdict}); change them")
    return Selection(tuple(positions))


def describe(engine: Engine, source: Optional[Source]) -> str:
    """Markdown naming the sample or upload being answered."""
    if source is None:
        return "*nothing to answer yet*"
    if isinstance(source, UploadSource):
        return f"**uploaded image** {_cell(source.name)}\n\nquestion: {_cell(source.question)}"
    sample = engine.sample(source)
    return (f"**sample {source.index}** of {len(engine.samples)} (id `{sample.id}`, relation {sample.relation})\n\n"
            f"question: {_cell(sample.question)}\n\ngold answer: **{_cell(sample.answer)}**")


def upload(path: Optional[str], question: Optional[str], *, max_bytes: int = MAX_UPLOAD_BYTES,
           max_pixels: int = MAX_UPLOAD_PIXELS) -> tuple[Optional[UploadSource], str]:
    """(the upload as a source, "") or (None, what is wrong with it)."""
    try:
        return load_upload(path, question, max_bytes=max_bytes, max_pixels=max_pixels), ""
    except ToolkitError as err:
        return None, str(err)
    except OSError as err:  # the temporary file vanished or cannot be read
        return None, f"cannot read the uploaded file ({err.strerror or err}); upload it again"


def answer_table(result: Result, layer: int) -> str:
    """Markdown: one column per outcome (baseline, method): answer, verdict, first-token confidence, the method's
    record fields (alpha, branch, ...), where the heatmap of `layer` peaks, and the time it took."""
    outcomes = figures.shown_outcomes(result)
    rows = [("answer", [f"**{_cell(o.answer)}**" for o in outcomes])]
    if result.sample.answer:
        rows.append(("verdict", [_verdict(o, result.sample.answer) for o in outcomes]))
    rows.append(("first-token confidence", [_number(o.confidence) for o in outcomes]))
    for name in dict.fromkeys(name for o in outcomes for name in o.fields):
        rows.append((f"record: {name}", [_number(o.fields.get(name, "–")) for o in outcomes]))
    rows.append((f"peak image attention, layer {layer}", [_peak(o, layer) for o in outcomes]))
    cached = (result.base_cached, result.method_cached)
    rows.append(("time", ["cached" if hit else f"{o.seconds:.2f} s" for o, hit in zip(outcomes, cached)]))
    header = "| | " + " | ".join(figures.outcome_label(o) for o in outcomes) + " |"
    lines = [header, "|---" * (len(outcomes) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def _notes(result: Result) -> str:
    notes = dict.fromkeys(note for outcome in figures.shown_outcomes(result) for note in outcome.notes)
    return "\n".join(f"note: {note}" for note in notes)


def _peak(outcome: Outcome, layer: int) -> str:
    """The largest head-mean attention of one image token at `layer`, and its cell on the image-token grid."""
    if outcome.attention is None:
        return "–"
    grid = outcome.attention.image_grid(values=image_map(outcome.attention.rows[0]))[layer]
    row, col = np.unravel_index(np.nanargmax(grid), grid.shape)
    return f"{grid[row, col]:.4f} at row {row}, column {col} of {grid.shape[0]} x {grid.shape[1]}"


def _verdict(outcome: Outcome, gold: str) -> str:
    if outcome.correct is None:
        return "–"
    said = outcome.prediction or "no option named"
    return f"{'right' if outcome.correct else 'wrong'} ({_cell(said)}; gold {_cell(gold)})"


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return _cell(str(value))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no line breaks, no HTML)."""
    return (str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " ").replace("*", "\\*").replace("_", "\\_").replace("`", "'"))
