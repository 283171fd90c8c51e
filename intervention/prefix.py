"""Prefix sharing: run the prompt once, then only its last token again for each other alpha.

ScalingVis changes only the attention row of the last prompt position n-1. By causality, no position
before n-1 attends to it, so the hidden states and key/values of positions [0, n-1) are the same for
every alpha (tests/test_prefix_sharing.py: the branches equal stock `generate` token for token). The
engine therefore:

1. runs stock `generate` for one token at alpha = 1 (`run_prefix`): the vision encoder and the whole
   prompt [0, n), once per batch. Its raw logits give the confidence, its first token starts the
   alpha = 1 answers, and its cache holds the key/values every branch forks from;
2. answers at alpha = 1 by continuing that generate from its cache (`Branch.at_alpha_one`);
3. answers each set of other per-row alphas with a `Branch`: stock `generate` from a fork of positions
   [0, n-1) restricted to (possibly repeated) batch rows, with the prompt's explicit position ids and
   ScalingVis pinned to position n-1 of those rows. `generate` feeds only the uncached token n-1, then
   decodes with its own processors and stopping rules, so answers are token for token those of
   `generate` under the same alphas (and the same padded batch).

Everything goes through public `generate` arguments (`past_key_values`/`cache`, `position_ids`,
`output_logits`); the version-sensitive rest (the cache keyword, cache-layer internals, Qwen's
rotary positions) is in `intervention.compat`. After every call the engine checks that generate
continued from the given cache and that ScalingVis rescaled rows; if not, it raises
`TransformersChanged`, and the session answers the batch with the naive engine instead.

Forks are views of (or, for a row selection, gathered copies of) the prompt's key/value tensors in
shallow copies of the cache object, safe because cache layers grow by rebinding (compat item 5).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import BatchFeature

from common.errors import ToolkitError
from intervention import compat
from intervention.compat import TransformersChanged
from intervention.scaling_vis import ScalingVis


class PrefixUnsupported(ToolkitError):
    """This batch needs something the prefix engine does not do (the naive engine can)."""


@dataclass
class Prefix:
    """A batch after its prompt ran once through stock `generate` (one token, alpha = 1).

    input_ids / attention_mask: (B, n) left-padded; position_ids: (B, n), or (4, B, n) for M-RoPE
    models (a text row, then Qwen's three rotary rows), as generate builds them (with explicit positions
    and the image already in the cache, a branch needs no other model input); first_logits: (B, V)
    raw float32 logits of the first answer token; first_tokens: (B,) the token generate chose from them;
    cache: the prompt's n positions; image_mask: (B, n) input_ids == image_token_id.
    """

    vlm: object
    max_new_tokens: int
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    first_logits: torch.Tensor
    first_tokens: torch.Tensor
    cache: object
    key_values: list
    image_mask: torch.Tensor

    @property
    def length(self) -> int:
        """n, the prompt length (padded)."""
        return self.input_ids.shape[1]

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def fork(self, rows: torch.Tensor | None = None, *, with_last: bool = False):
        """A new cache holding positions [0, n-1) (or [0, n) `with_last`) of batch rows `rows` (all rows
        when None; rows may repeat and come in any order)."""
        stop = self.length if with_last else self.length - 1
        if rows is not None and _is_identity(rows, self.batch_size):
            rows = None
        return compat.fork_cache(self.cache, self.key_values, stop, rows)


def run_prefix(vlm, inputs: BatchFeature, max_new_tokens: int) -> Prefix:
    """The vision encoder and the whole prompt, once for the batch (stock generate of one token)."""
    input_ids = inputs["input_ids"]
    n = input_ids.shape[1]
    if n < 2:
        raise PrefixUnsupported("the prompt has a single token; prefix sharing needs at least two")
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    out = vlm.generate_ids(inputs, 1, output_logits=True, return_dict_in_generate=True)
    cache = compat.output_cache(out)
    key_values = compat.cache_key_values(cache)
    if cache.get_seq_length() != n:
        raise TransformersChanged(f"the cache generate returns (it holds {cache.get_seq_length()} positions after "
                                  f"a {n}-token prompt and one new token, expected {n})")
    # On the ids' device, like generate: with a device_map the head may sit on another device.
    first_logits = out.logits[0].to(dtype=torch.float32, device=input_ids.device)
    return Prefix(vlm, max_new_tokens, input_ids, attention_mask, prompt_position_ids(vlm, inputs, attention_mask),
                  first_logits, out.sequences[:, n], cache, key_values, input_ids == vlm.image_token_id)


def prompt_position_ids(vlm, inputs: BatchFeature, attention_mask: torch.Tensor) -> torch.Tensor:
    """The prompt's position ids as generate builds them: `cumsum(mask) - 1` (0 on padding), and for
    M-RoPE models that text row stacked on Qwen's three rotary rows."""
    text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    if vlm.spec.rope != "mrope":
        return text
    rotary = compat.mrope_position_ids(vlm.model, inputs).to(text.device)
    return torch.cat([text[None], rotary], dim=0)


class Branch:
    """Greedy answers of some batch rows at per-row alphas, decoded by `generate` from the shared prefix.

    rows: (k,) batch rows, may repeat; alphas: (k,) their alphas. `run()` returns the new tokens (k, T)
    with pad after a row's end, as generate's output. `first_logits` keeps the raw float32 logits of the
    first answer token; with `record_logits` every step's are kept in `logits`.
    """

    def __init__(self, prefix: Prefix, rows: torch.Tensor, alphas: torch.Tensor, scope: str = "prefill",
                 layers: tuple | None = None, record_logits: bool = False):
        self.prefix, self.scope, self.layers = prefix, scope, layers
        self.rows = rows.to(prefix.input_ids.device)
        self.alphas = alphas.to(torch.float32)
        self.record_logits = record_logits
        self.first_logits: torch.Tensor | None = None
        self.logits: list[torch.Tensor] = []

    @classmethod
    def at_alpha_one(cls, prefix: Prefix, scope: str = "prefill", layers: tuple | None = None,
                     record_logits: bool = False) -> "AlphaOneBranch":
        """All rows at alpha = 1, continuing the prompt's generate (its first token already chosen)."""
        return AlphaOneBranch(prefix, torch.arange(prefix.batch_size), torch.ones(prefix.batch_size), scope,
                              layers, record_logits)

    def run(self) -> torch.Tensor:
        """Decode until every row stopped; returns the new tokens (k, T)."""
        prefix, rows = self.prefix, self.rows
        scaled = not bool((self.alphas == 1.0).all())
        intervention = ScalingVis(prefix.vlm, alpha=self.alphas, scope=self.scope, layers=self.layers,
                                  prompt=(prefix.length, prefix.image_mask[rows.to(prefix.image_mask.device)]))
        with intervention if scaled else nullcontext():
            tokens = self._generate(prefix.input_ids[rows], prefix.attention_mask[rows],
                                    _rows(prefix.position_ids, rows), prefix.fork(rows), prefix.max_new_tokens)
        if scaled and intervention.scaled_calls == 0:
            raise TransformersChanged("how generate runs a prompt continued from a cache (ScalingVis never reached "
                                      "the last prompt position)")
        return tokens

    def _generate(self, input_ids, attention_mask, position_ids, cache, max_new_tokens: int) -> torch.Tensor:
        """Stock generate continuing `input_ids` from `cache`; checks the cache was really used."""
        vlm, cached = self.prefix.vlm, cache.get_seq_length()
        with torch.inference_mode():
            out = vlm.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                **{compat.cache_kwarg(vlm.model): cache},
                generation_config=vlm.generation_config(max_new_tokens, output_logits=True,
                                                        return_dict_in_generate=True))
        new_tokens = out.sequences[:, input_ids.shape[1]:]
        if compat.output_cache(out) is not cache or cache.get_seq_length() != cached + new_tokens.shape[1]:
            raise TransformersChanged(f"how generate continues from a cache (it did not extend the given "
                                      f"{cached}-position cache by one position per new token)")
        logits = [step.to(dtype=torch.float32, device=input_ids.device) for step in out.logits]
        self._keep_logits(logits)
        return new_tokens

    def _keep_logits(self, logits: list[torch.Tensor]) -> None:
        if self.first_logits is None:
            self.first_logits = logits[0]
        if self.record_logits:
            self.logits.extend(logits)


class AlphaOneBranch(Branch):
    """The alpha = 1 answers: the prompt's first token, then generate continued from the full prompt cache."""

    def run(self) -> torch.Tensor:
        prefix = self.prefix
        first = prefix.first_tokens[:, None]
        self._keep_logits([prefix.first_logits])
        finished = _is_end(first[:, 0], prefix.vlm)
        if prefix.max_new_tokens == 1 or bool(finished.all()):
            return first
        input_ids = torch.cat([prefix.input_ids, first], dim=-1)
        attention_mask = torch.cat([prefix.attention_mask, torch.ones_like(first)], dim=-1)
        positions = torch.cat([prefix.position_ids, prefix.position_ids[..., -1:] + 1], dim=-1)
        rest = self._generate(input_ids, attention_mask, positions, prefix.fork(with_last=True),
                              prefix.max_new_tokens - 1)
        # Rows that ended at their first token: stock generate emits pad for them from there on, and stops
        # once every row has ended.
        rest = torch.where(finished[:, None], torch.full_like(rest, _pad_token_id(prefix.vlm)), rest)
        tokens = torch.cat([first, rest], dim=-1)
        return tokens[:, :_steps_until_all_ended(tokens, prefix.vlm)]


def _is_end(tokens: torch.Tensor, vlm) -> torch.Tensor:
    eos = vlm.model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return torch.isin(tokens, torch.tensor(eos, dtype=tokens.dtype, device=tokens.device))


def _steps_until_all_ended(tokens: torch.Tensor, vlm) -> int:
    """The number of steps stock generate runs for these answers: up to the last row's end token."""
    ended = _is_end(tokens, vlm)
    last = torch.where(ended.any(dim=-1), ended.int().argmax(dim=-1), tokens.shape[1] - 1)
    return int(last.max()) + 1


def _pad_token_id(vlm) -> int:
    pad = vlm.processor.tokenizer.pad_token_id
    if pad is None:
        eos = vlm.model.generation_config.eos_token_id
        pad = eos if isinstance(eos, int) else eos[0]
    return int(pad)


def _is_identity(rows: torch.Tensor, batch_size: int) -> bool:
    return len(rows) == batch_size and bool((rows.cpu() == torch.arange(batch_size)).all())


def _rows(position_ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Select batch rows of (B, n) or (R, B, n) position ids."""
    return position_ids[rows] if position_ids.dim() == 2 else position_ids[:, rows]
