"""Stock `generate` with a logits processor that computes the next-token scores: how VCD and DoLa decode.

Both methods score the next token from something `generate` does not compute (a second branch's logits;
early-exit logits) and leave everything else to `generate`: the greedy choice or sampling, padding of
finished rows, stopping at the end token. So each is a `ScoreProcessor` passed to the public
`generate(logits_processor=...)`, and the clean branch is the stock model run by stock code: with a
neutral setting the answers are the baseline's token for token.

Order of operations. Both methods apply the repetition penalty to their own scores, after the contrast
(VCD's `vcd_sample.py` runs `logits_processor` on the contrasted logits; DoLa's official code and
HF's `_dola_decoding` run it on `log q_N - log q_M`). `generate` runs a custom processor after the
processors its generation config creates (compat item 8), so the config here sets
`repetition_penalty=1.0` (the only such processor the supported checkpoints configure; an explicit value
is not replaced by the checkpoint's default) and the processor applies the penalty itself. The processor
therefore receives the raw float32 logits of the step.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from transformers import BatchFeature, LogitsProcessor, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from intervention.compat import TransformersChanged
from intervention.session import first_token_confidence

# VCD's evaluation scripts sample with temperature 1, top-p 1 and no top-k (experiments/eval/*.py flags).
SAMPLING = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


class ScoreProcessor(LogitsProcessor):
    """Replaces the raw logits of every step by `scores(input_ids, logits)`, then applies the repetition
    penalty (1 = none). Keeps the first step's raw logits (the answer's confidence) and counts steps."""

    def __init__(self, repetition_penalty: float = 1.0):
        self.penalty = None if repetition_penalty == 1.0 else RepetitionPenaltyLogitsProcessor(repetition_penalty)
        self.steps = 0
        self.first_logits: torch.Tensor | None = None

    def scores(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float()
        if self.steps == 0:
            self.first_logits = logits.clone()
        new = self.scores(input_ids, logits)
        self.steps += 1
        return new if self.penalty is None else self.penalty(input_ids, new)

    @property
    def confidence(self) -> torch.Tensor:
        """(B,) max softmax probability of the first step's raw logits (the baseline's confidence)."""
        return first_token_confidence(self.first_logits)


def generate_scored(vlm, inputs: BatchFeature, processor: ScoreProcessor, max_new_tokens: int, *,
                    sample: bool = False, seed: int = 0, **extra) -> torch.Tensor:
    """The new tokens (B, T) of stock `generate` with `processor` scoring every step.

    Greedy unless `sample` (then VCD's sampling settings, from torch's generator seeded with `seed`).
    `extra` goes into the generation config (e.g. return_dict_in_generate); with it the output is returned
    as generate gives it. Raises TransformersChanged if generate did not call the processor at every step.
    """
    config = vlm.generation_config(max_new_tokens, repetition_penalty=1.0, **extra)
    if sample:
        for name, value in SAMPLING.items():
            setattr(config, name, value)
    with _seeded(seed, vlm.device) if sample else nullcontext(), torch.inference_mode():
        out = vlm.model.generate(**inputs, generation_config=config,
                                 logits_processor=LogitsProcessorList([processor]))
    sequences = out.sequences if extra.get("return_dict_in_generate") else out
    new_tokens = sequences[:, inputs["input_ids"].shape[1]:]
    if processor.steps != new_tokens.shape[1]:
        raise TransformersChanged(f"how generate runs logits processors (called {processor.steps} times for "
                                  f"{new_tokens.shape[1]} new tokens)")
    return out if extra.get("return_dict_in_generate") else new_tokens


@contextmanager
def _seeded(seed: int, device: torch.device):
    """torch's global generators seeded with `seed` inside, restored after (sampling in generate draws from them)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def answer_lengths(new_tokens: torch.Tensor, vlm) -> list[int]:
    """Per row, the steps that produced its answer: up to and including its first end token."""
    eos = vlm.model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    ended = torch.isin(new_tokens, torch.tensor(eos, dtype=new_tokens.dtype, device=new_tokens.device))
    last = torch.where(ended.any(-1), ended.int().argmax(-1), new_tokens.shape[1] - 1)
    return (last + 1).tolist()
