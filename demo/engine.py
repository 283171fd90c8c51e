"""The demo's one model and dataset, shared by every visitor of the page, and the results computed with them.

* Answers come from the method registry's batch API (`methods.answer`), as the command line's do, so the page
  shows what `python main_aro.py` would record; the heatmaps come from the same greedy generation run again with
  the attention captured (`demo.attention`).
* Results are cached per (source, configuration): moving a slider back, or a second visitor asking the same, costs
  nothing. Each visitor's inputs travel with its own request, so concurrent visitors never see each other's results.
* The model is used by one request at a time (`_model_lock`): the interventions' row state is context-local, but
  switching the attention implementation is a change to the shared model object, and CPU inference gains nothing
  from interleaving.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import methods
from common.errors import ToolkitError
from dataset_zoo.base import Sample
from demo.attention import captured_generation, intervention_for, no_attention_note
from demo.sources import DatasetSource, Source, UploadSource
from intervention.capture import CapturedAttention
from intervention.lm import hf_model, lm_attention_modules
from methods import Configuration
from scoring import judge

logger = logging.getLogger(__name__)

Progress = Callable[..., None]
BASELINE = "base"


def silent(fraction: float, desc: str = "") -> None:
    """A progress callback that reports nowhere (tests, Python callers)."""


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class Outcome:
    """One configuration's answer on one source.

    fields: the record fields the method adds (alpha, branch, the alpha = 1 confidence, stop_layer, ...);
    confidence: the first-token max softmax probability of the generation whose attention is shown;
    correct / prediction: the strict judgement against the gold answer (None for uploads, which have none);
    attention: the last prompt token's captured attention (None when the method's cannot be captured);
    notes: warnings the toolkit logged while computing it, and why attention is missing.
    """

    configuration: Configuration
    answer: str
    fields: dict
    confidence: Optional[float]
    correct: Optional[bool]
    prediction: Optional[str]
    attention: Optional[CapturedAttention]
    notes: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, eq=False)
class Result:
    """The baseline and one configuration on one source; `*_cached`: taken from the cache, not computed."""

    source: Source
    sample: Sample
    boxes: tuple
    base: Outcome
    method: Outcome
    base_cached: bool
    method_cached: bool

    @property
    def cached(self) -> bool:
        return self.base_cached and self.method_cached


class Engine:
    """The loaded model (`vlm`) and the dataset's samples; answers, captures and caches (see the module docstring).

    dataset: the dataset's name (the methods' per-dataset defaults); box_source: object boxes drawn on the heatmaps
    (None: none); match: the answer-matching rule ("strict" or "paper"); cache_size: outcomes kept (LRU).
    """

    def __init__(self, vlm, samples: Sequence[Sample], *, dataset: str, max_new_tokens: int = 10,
                 match: str = "strict", box_source=None, cache_size: int = 64, batch_size: int = 8):
        self.vlm = vlm
        self.samples = list(samples)
        self.dataset = dataset
        self.max_new_tokens = max_new_tokens
        self.match = match
        self.box_source = box_source
        self.batch_size = batch_size
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._verdicts: dict[int, bool] = {}
        self.n_layers = len(set(lm_attention_modules(hf_model(vlm)).values()))

    # ---- samples ----------------------------------------------------------------------------------------
    def sample(self, source: Source) -> Sample:
        if isinstance(source, UploadSource):
            return source.sample()
        if not 0 <= source.index < len(self.samples):
            raise ToolkitError(f"sample {source.index} does not exist; the dataset has {len(self.samples)} "
                               f"(0 to {len(self.samples) - 1})")
        return self.samples[source.index]

    def relations(self) -> list[str]:
        return sorted({sample.relation for sample in self.samples if sample.relation})

    def baseline_verdicts(self, indices: Sequence[int], progress: Progress = silent) -> dict[int, bool]:
        """Whether the baseline answers each sample correctly, computed in batches for those not known yet."""
        missing = [i for i in indices if i not in self._verdicts]
        base = Configuration.of(BASELINE)
        for start in range(0, len(missing), self.batch_size):
            progress(start / len(missing), desc=f"baseline answers: {start} of {len(missing)} samples")
            chunk = [self.samples[i] for i in missing[start:start + self.batch_size]]
            images = [sample.image for sample in chunk]
            prompts = [self._prompt(sample) for sample in chunk]
            with self._model(progress):
                answers = methods.answer(self.vlm, chunk, images, prompts, [base],
                                         max_new_tokens=self.max_new_tokens)[base]
            for i, sample, answer in zip(missing[start:start + self.batch_size], chunk, answers):
                self._verdicts[i] = bool(judge(answer.text, sample, mode=self.match).correct)
        return {i: self._verdicts[i] for i in indices}

    # ---- results ----------------------------------------------------------------------------------------
    def result(self, source: Source, configuration: Configuration, progress: Progress = silent) -> Result:
        """The baseline and `configuration` on `source`, from the cache or computed."""
        configuration.entry.check_family(self.vlm.family)
        sample = self.sample(source)
        image = source.image if isinstance(source, UploadSource) else None
        base, base_cached = self._outcome(source, sample, image, Configuration.of(BASELINE), progress)
        if configuration.method == BASELINE:
            method, method_cached = base, base_cached
        else:
            method, method_cached = self._outcome(source, sample, image, configuration, progress)
        if isinstance(source, DatasetSource) and base.correct is not None:
            self._verdicts[source.index] = base.correct
        return Result(source, sample, self._boxes(sample, image), base, method, base_cached, method_cached)

    def _outcome(self, source, sample, image, configuration, progress) -> tuple[Outcome, bool]:
        key = (source.key, configuration)
        found = self._cached(key)
        if found is not None:
            return found, True
        with self._model(progress):
            found = self._cached(key)  # a concurrent request may have computed it while this one waited
            if found is not None:
                return found, True
            found = self._compute(sample, image, configuration, progress)
            self._store(key, found)
        return found, False

    def _compute(self, sample: Sample, image, configuration: Configuration, progress: Progress) -> Outcome:
        started = time.perf_counter()
        image = sample.image if image is None else image
        label = configuration.label()
        with _logged_warnings() as notes:
            progress(0.1, desc=f"{label}: answering")
            prompt = self._prompt(sample)
            inputs = self.vlm.prepare([image], [prompt])
            answer = methods.answer(self.vlm, [sample], [image], [prompt], [configuration],
                                    max_new_tokens=self.max_new_tokens, inputs=inputs)[configuration][0]
            progress(0.5, desc=f"{label}: capturing attention")
            intervention = intervention_for(self.vlm, configuration, answer.fields)
            attention, confidence = None, answer.fields.get("confidence")
            if intervention is None:
                notes.append(no_attention_note(configuration))
            else:
                attention, generation = captured_generation(self.vlm, inputs, intervention, image.size,
                                                            self.max_new_tokens)
                confidence = float(generation.confidence[0])
                if generation.texts[0] != answer.text:
                    notes.append(f"the captured generation answered {generation.texts[0]!r}, the batch API "
                                 f"{answer.text!r}: the heatmap belongs to the former")
        correct, prediction = None, None
        if sample.answer:  # uploads have no gold answer to judge against
            verdict = judge(answer.text, sample, mode=self.match)
            correct, prediction = bool(verdict.correct), verdict.prediction
        return Outcome(configuration, answer.text, dict(answer.fields), confidence, correct, prediction, attention,
                       tuple(notes), time.perf_counter() - started)

    def _prompt(self, sample: Sample) -> str:
        return self.vlm.build_prompt(sample.question, sample.paper_prompt)

    def _boxes(self, sample: Sample, image) -> tuple:
        if self.box_source is None or image is not None:
            return ()
        try:
            return tuple(named.box for named in self.box_source.boxes(sample, sample.image))
        except ToolkitError:
            return ()  # boxes are a drawing aid; a sample without them is still shown

    @contextmanager
    def _model(self, progress: Progress) -> Iterator[None]:
        if not self._model_lock.acquire(blocking=False):
            progress(0.0, desc="waiting for the model: another request is running")
            self._model_lock.acquire()
        try:
            yield
        finally:
            self._model_lock.release()

    def _cached(self, key) -> Optional[Outcome]:
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found

    def _store(self, key, outcome: Outcome) -> None:
        with self._cache_lock:
            self._cache[key] = outcome
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


class _NoteHandler(logging.Handler):
    """Collects the toolkit's warnings logged by one thread (e.g. AdaptVis with weight1 > weight2)."""

    def __init__(self, notes: list):
        super().__init__(logging.WARNING)
        self.notes = notes
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.notes.append(record.getMessage())


@contextmanager
def _logged_warnings() -> Iterator[list]:
    notes: list = []
    handler = _NoteHandler(notes)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield notes
    finally:
        root.removeHandler(handler)
