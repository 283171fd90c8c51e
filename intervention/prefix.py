"""Prefix sharing: run the prompt once, then only its last token again for each other alpha.

ScalingVis changes only the attention row of the last prompt position n-1. By causality, no position
before n-1 attends to it, so the hidden states and key/values of positions [0, n-1) are the same for
every alpha (transformers_attention.md §5.1, verified bit-identical). The engine therefore:

1. prepares the batch exactly as stock `generate` would (`prepare_generation`): vision features,
   position ids (LLaMA-style `cumsum(mask) - 1`; Qwen's 4-row text + M-RoPE ids from `get_rope_index`,
   with `model.model.rope_deltas` set), the attention mask (dropped when nothing is padded), and the
   logits processors / stopping criteria of the effective generation config (which includes the
   checkpoint's defaults, e.g. a repetition penalty);
2. runs the whole prompt once at alpha = 1 (`run_prefix`): that forward is both the shared prefix
   [0, n-1) and the alpha = 1 step of token n-1, whose logits give the confidence and whose cache
   continues into the alpha = 1 answers (`Branch.at_alpha_one`). Prefilling n-1 positions and then
   stepping token n-1 separately would cost one more forward of one token for the same numbers;
3. runs each set of other per-row alphas as a `Branch`: a fork of positions [0, n-1) restricted to
   (possibly repeated) batch rows, token n-1 again with ScalingVis at the branch's alphas, then greedy
   decoding with generate's own processors and stopping rules, so answers are token for token those
   of `generate` under the same alphas (and the same padded batch).

Forks are views of (or, for a row selection, indexed copies of) the prompt's key/value tensors inside
shallow copies of the cache object. That is safe because `DynamicLayer.update` rebinds
`self.keys = torch.cat(...)` and never writes in place (`check_cache_layers` refuses other layer
types; a test re-checks the rebinding), so the shared tensors are never mutated, however many
branches grow from them.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers import BatchFeature
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from common.errors import ToolkitError
from intervention.scaling_vis import ScalingVis

# Per-token model inputs (sliced like input_ids) and how generate extends them for each new token:
# token_type_ids repeat their last value, mm_token_type_ids get 0 (= text).
_PER_TOKEN_EXTENSION = {"token_type_ids": "repeat_last", "mm_token_type_ids": "zeros"}
# Logits processors that act row by row (no per-batch state), so a branch may run any subset of rows.
ROW_WISE_PROCESSORS = frozenset({
    "RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor", "NoBadWordsLogitsProcessor", "SequenceBiasLogitsProcessor",
    "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor", "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "ExponentialDecayLengthPenalty",
})


class PrefixUnsupported(ToolkitError):
    """This model or batch needs something the prefix engine does not do (the naive engine can)."""


@dataclass
class GenerationSetup:
    """What stock `generate` prepared for one batch, captured right before its decoding loop."""

    input_ids: torch.Tensor                      # (B, n), left-padded
    attention_mask: torch.Tensor | None          # (B, n); None when no row is padded (as generate does)
    position_ids: torch.Tensor                   # (B, n) or (4, B, n) for Qwen (text row + M-RoPE rows)
    per_token: dict[str, torch.Tensor]           # e.g. mm_token_type_ids (B, n)
    prefill_only: dict                           # e.g. mm_encoder_outputs: only the prefix forward needs them
    cache: object                                # the empty cache generate created
    processors: list
    stopping: list
    pad_token: torch.Tensor | None
    rope_deltas: torch.Tensor | None             # (B, 1) for M-RoPE models


def prepare_generation(vlm, inputs: BatchFeature, max_new_tokens: int) -> GenerationSetup:
    """Run `generate`'s input preparation (and vision encoder) through its public `custom_generate` hook,
    stopping before the first forward, so every later step sees exactly what generate would pass."""
    captured: dict = {}

    def capture(model, input_ids, logits_processor=None, stopping_criteria=None, generation_config=None,
                **model_kwargs):
        captured.update(input_ids=input_ids, processors=logits_processor, stopping=stopping_criteria,
                        pad_token=generation_config._pad_token_tensor, model_kwargs=model_kwargs)
        return input_ids

    model = vlm.model
    with torch.inference_mode():
        model.generate(**inputs, generation_config=vlm.generation_config(max_new_tokens), custom_generate=capture)
    kwargs = dict(captured["model_kwargs"])
    input_ids = captured["input_ids"]
    unknown = [type(p).__name__ for p in captured["processors"] if type(p).__name__ not in ROW_WISE_PROCESSORS]
    if unknown:
        raise PrefixUnsupported(f"the prefix-sharing engine cannot apply the logits processors {unknown} of this "
                                f"model's generation config")
    per_token = {k: kwargs.pop(k) for k in list(kwargs) if k in _PER_TOKEN_EXTENSION}
    prefill_only = {k: kwargs.pop(k) for k in ("mm_encoder_outputs",) if k in kwargs}
    for k, v in kwargs.items():
        if k not in ("attention_mask", "position_ids", "past_key_values", "use_cache", "logits_to_keep"):
            prefill_only[k] = v  # anything else generate would forward only with the prompt
    inner = getattr(model, "model", None)
    rope_deltas = getattr(inner, "rope_deltas", None) if vlm.spec.rope == "mrope" else None
    return GenerationSetup(input_ids, kwargs.get("attention_mask"), kwargs["position_ids"], per_token, prefill_only,
                           kwargs["past_key_values"], list(captured["processors"]), captured["stopping"],
                           captured["pad_token"], rope_deltas)


@dataclass
class Prefix:
    """The batch's prompt after one stock forward: the key/values every branch forks from.

    The forward runs the whole prompt [0, n) at alpha = 1, which is at once the shared prefix
    [0, n-1) (alpha-independent by causality) and the alpha = 1 step of the last token: its logits
    are the first answer token's (the confidence), and its full cache continues into the alpha = 1
    answers. A branch at other alphas forks the first n-1 positions and re-runs token n-1.
    """

    vlm: object
    setup: GenerationSetup
    key_values: list                             # per layer (keys, values) of the n prompt positions
    first_logits: torch.Tensor                   # (B, vocab) float32 raw logits at the last prompt position
    image_mask: torch.Tensor                     # (B, n): input_ids == image_token_id

    @property
    def length(self) -> int:
        """n, the prompt length (padded)."""
        return self.setup.input_ids.shape[1]

    @property
    def batch_size(self) -> int:
        return self.setup.input_ids.shape[0]

    def fork(self, rows: torch.Tensor | None = None, *, with_last: bool = False):
        """A new cache holding positions [0, n-1) (or [0, n) `with_last`) of batch rows `rows` (all rows
        when None; rows may repeat and come in any order).

        The layers are views of (or, for a row selection, indexed copies of) `key_values`; the cache
        grows by rebinding, so nothing ever writes into the shared tensors.
        """
        stop = self.length if with_last else self.length - 1
        template = self.setup.cache
        fork = copy.copy(template)
        fork.layers = [copy.copy(layer) for layer in template.layers]
        select = rows is not None and not _is_identity(rows, self.batch_size)
        for layer, (keys, values) in zip(fork.layers, self.key_values):
            keys, values = keys[:, :, :stop], values[:, :, :stop]
            if select:  # index_select: a plain gather, several times faster than advanced indexing on CPU
                index = rows.to(keys.device)
                keys, values = keys.index_select(0, index), values.index_select(0, index)
            layer.keys, layer.values = keys, values
        return fork


def run_prefix(vlm, inputs: BatchFeature, max_new_tokens: int) -> Prefix:
    """The vision encoder and the whole prompt, once for the batch (at alpha = 1, stock attention)."""
    setup = prepare_generation(vlm, inputs, max_new_tokens)
    if setup.input_ids.shape[1] < 2:
        raise PrefixUnsupported("the prompt has a single token; prefix sharing needs at least two")
    with torch.inference_mode():
        out = vlm.model(input_ids=setup.input_ids, attention_mask=setup.attention_mask,
                        position_ids=setup.position_ids, past_key_values=setup.cache, use_cache=True,
                        logits_to_keep=1, **setup.per_token, **setup.prefill_only)
    setup.prefill_only = {}  # the vision features are in the cache now; free them
    check_cache_layers(out.past_key_values)
    key_values = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    # On the ids' device, like generate: with a device_map the head may sit on another device.
    first_logits = out.logits[:, -1].to(copy=True, dtype=torch.float32, device=setup.input_ids.device)
    return Prefix(vlm, setup, key_values, first_logits, setup.input_ids == vlm.image_token_id)


def check_cache_layers(cache) -> None:
    """Refuse cache layers a shallow fork would share storage with (in-place writes) or that drop keys."""
    for layer in getattr(cache, "layers", []):
        if type(layer) is not DynamicLayer or isinstance(layer, DynamicSlidingWindowLayer):
            raise PrefixUnsupported(f"prefix sharing needs plain dynamic cache layers, got {type(layer).__name__}")


class Branch:
    """Greedy decoding of some batch rows at per-row alphas, grown from a fork of the shared prefix.

    rows: (k,) batch rows, may repeat; alphas: (k,) their alphas. `step()` runs one forward (the last
    prompt token first, then one generated token per call) and applies generate's processors, greedy
    choice, padding of finished rows and stopping criteria. `first_logits` keeps the raw float32
    logits of the first generated token; with `record_logits` every step's are kept in `logits`.
    """

    def __init__(self, prefix: Prefix, rows: torch.Tensor, alphas: torch.Tensor, scope: str = "prefill",
                 layers: tuple | None = None, record_logits: bool = False):
        setup, n = prefix.setup, prefix.length
        self.prefix, self.scope, self.layers = prefix, scope, layers
        self.rows = rows.to(setup.input_ids.device)
        self.alphas = alphas.to(torch.float32)
        self.record_logits = record_logits
        self.first_logits: torch.Tensor | None = None
        self.logits: list[torch.Tensor] = []
        self._state = {
            "cache": prefix.fork(self.rows),
            "sequences": setup.input_ids[self.rows],
            "mask": None if setup.attention_mask is None else setup.attention_mask[self.rows],
            "positions": _rows(setup.position_ids, self.rows)[..., n - 1:],
            "next_ids": setup.input_ids[self.rows, n - 1:],
            "per_token": {k: v[self.rows, n - 1:] for k, v in setup.per_token.items()},
            "unfinished": torch.ones(len(self.rows), dtype=torch.long, device=setup.input_ids.device),
        }

    @classmethod
    def at_alpha_one(cls, prefix: Prefix, scope: str = "prefill", layers: tuple | None = None,
                     record_logits: bool = False) -> "Branch":
        """All rows at alpha = 1, continuing from the prompt forward (its first token already chosen)."""
        rows = torch.arange(prefix.batch_size)
        branch = cls(prefix, rows, torch.ones(prefix.batch_size), scope, layers, record_logits)
        branch._choose(prefix.first_logits, prefix.fork(with_last=True))
        return branch

    @property
    def finished(self) -> bool:
        return not bool(self._state["unfinished"].any())

    @property
    def new_tokens(self) -> torch.Tensor:
        """(k, generated so far), pad after a row's EOS, as in generate's output."""
        return self._state["sequences"][:, self.prefix.length:]

    def run(self) -> torch.Tensor:
        """Decode until every row stopped; returns `new_tokens`."""
        if self.first_logits is None:
            self.step()
        with self._intervention():
            while not self.finished:
                self._step()
        return self.new_tokens

    def step(self) -> torch.Tensor:
        """One forward; returns its raw float32 logits (k, vocab)."""
        with self._intervention():
            return self._step()

    def _intervention(self):
        """ScalingVis at the branch's alphas for the next forward, when it can change anything: the last
        prompt token, and with scope "all" also every generated token."""
        decoding = self.first_logits is not None
        if bool((self.alphas == 1.0).all()) or (decoding and self.scope == "prefill"):
            return nullcontext()
        scaling = ScalingVis(self.prefix.vlm, alpha=self.alphas, scope=self.scope, layers=self.layers)
        return _pinned(scaling, self.prefix.length, self.prefix.image_mask[self.rows.to(self.prefix.image_mask.device)])

    def _step(self) -> torch.Tensor:
        s = self._state
        self._sync_rope_deltas()
        with torch.inference_mode():
            out = self.prefix.vlm.model(input_ids=s["next_ids"], attention_mask=s["mask"], position_ids=s["positions"],
                                        past_key_values=s["cache"], use_cache=True, logits_to_keep=1,
                                        **s["per_token"])
            logits = out.logits[:, -1].to(copy=True, dtype=torch.float32, device=s["sequences"].device)
        self._choose(logits, out.past_key_values)
        return logits

    def _choose(self, logits: torch.Tensor, cache) -> None:
        """generate's greedy step on raw logits: processors, argmax, pad finished rows, stopping criteria."""
        s, setup = self._state, self.prefix.setup
        with torch.inference_mode():
            scores = logits
            for processor in setup.processors:
                scores = processor(s["sequences"], scores)
            tokens = torch.argmax(scores, dim=-1)
            if setup.pad_token is not None:
                tokens = tokens * s["unfinished"] + setup.pad_token.to(tokens.device) * (1 - s["unfinished"])
            s["sequences"] = torch.cat([s["sequences"], tokens[:, None]], dim=-1)
            s["unfinished"] = s["unfinished"] & ~setup.stopping(s["sequences"], scores)
        if self.first_logits is None:
            self.first_logits = logits
        if self.record_logits:
            self.logits.append(logits)
        self._advance_inputs(tokens, cache)

    def _advance_inputs(self, tokens: torch.Tensor, cache) -> None:
        """Inputs of the next step, extended as generate's `_update_model_kwargs_for_generation` does."""
        s = self._state
        s["cache"] = cache
        s["next_ids"] = tokens[:, None]
        s["positions"] = s["positions"][..., -1:] + 1
        if s["mask"] is not None:
            s["mask"] = torch.cat([s["mask"], s["mask"].new_ones((s["mask"].shape[0], 1))], dim=-1)
        for key, values in s["per_token"].items():
            last = values[:, -1:]
            s["per_token"][key] = last if _PER_TOKEN_EXTENSION[key] == "repeat_last" else torch.zeros_like(last)

    def _sync_rope_deltas(self) -> None:
        # Positions are always passed explicitly; keeping the model's cached M-RoPE offsets in step with the
        # rows being decoded means a forward without positions (e.g. a later generate continuation) agrees.
        deltas = self.prefix.setup.rope_deltas
        if deltas is not None:
            self.prefix.vlm.model.model.rope_deltas = deltas[self.rows.to(deltas.device)]


@contextmanager
def _pinned(scaling: ScalingVis, prompt_length: int, image_mask: torch.Tensor):
    """ScalingVis entered with the prompt pinned (the prompt and the steps are fed in pieces)."""
    with scaling:
        scaling.pin(prompt_length, image_mask)
        yield scaling


def _is_identity(rows: torch.Tensor, batch_size: int) -> bool:
    return len(rows) == batch_size and bool((rows.cpu() == torch.arange(batch_size)).all())


def _rows(position_ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Select batch rows of (B, n) or (R, B, n) position ids."""
    return position_ids[rows] if position_ids.dim() == 2 else position_ids[:, rows]
