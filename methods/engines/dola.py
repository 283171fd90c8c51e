"""DoLa, Decoding by Contrasting Layers (Chuang et al., ICLR 2024): contrast the final layer's next-token
distribution with an early exit's, at every decoding step.

    from methods.dola import DoLa
    answers = DoLa(layers="high", relative_top=0.1, repetition_penalty=1.2).run(vlm, inputs, max_new_tokens=10)
    answers[0].text, answers[0].confidence, answers[0].premature_layers

Our own implementation: transformers 5 moved DoLa out of `generate` into the hub repo
transformers-community/dola, which needs trust_remote_code. At each step (the paper's method section; HF
`_dola_decoding`, official `dola_greedy_decode`):

    q_j = softmax(lm_head(h_j)) at the last position, h_j the residual stream after j decoder layers
          (j = 0: the embeddings), WITHOUT the final norm, as the official and HF code do; q_N is the
          model's normal output (final norm, lm_head)
    M   = argmax_{j in J} D(q_N, q_j), over the candidate layers J (`layers`; one candidate = DoLa-static)
    F(y) = log q_N(y) - log q_M(y) if q_N(y) >= relative_top * max q_N, else -inf
    then the repetition penalty on F (HF's RepetitionPenaltyLogitsProcessor, prompt included), then greedy.

D is the official code's "JSD": 0.5 (KL(m||q_N) + KL(m||q_j)) / |V| with m = (q_N + q_j) / 2. Its
`F.kl_div(log q, m)` computes KL(m||q), the reverse of the textbook JSD's KL(q||m); we keep the code's,
which produced the published numbers (tests/test_dola.py pins the formula).

Candidate buckets follow HF's rules (`candidate_layers`): N decoder layers; start = 0 without tied
embeddings, else 2 (N > 2) or 1 (N = 2); "low" = range(start, N//2, 2) and "high" = range(N//2, N, 2)
for N <= 40, else range(start, 20, 2) and range(N-20, N, 2). An explicit set of indices must lie in
0..N-1: the final layer N as its own premature layer (F = 0 on every plausible token) is refused with an
error, where HF silently drops it. The neutral setting is relative_top = 1: only the final layer's top
token stays plausible, so DoLa answers as the baseline.

Mechanism: stock `generate` with `DoLaProcessor` (methods.decoding), which reads the early exits from
forward hooks on the decoder layers (`EarlyExits`, compat item 7) and applies `lm_head` to them: one
forward per token plus |J| lm_head rows per row. The premature layer is chosen per batch row; HF averaged
the divergence over the batch (one layer for all rows), which makes an answer depend on its batch; the
official code ran one sample at a time, which per-row choice reproduces.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn.functional as F
from transformers import BatchFeature

from intervention import compat
from intervention.lm import language_model
from methods.dola import DOLA_LAYERS, DOLA_REPETITION_PENALTY, RELATIVE_TOP, candidate_layers
from methods.engines.decoding import ScoreProcessor, answer_lengths, generate_scored

@dataclass(frozen=True)
class DoLaAnswer:
    """One sample's DoLa outcome: the text, the final layer's first-token confidence (the baseline's), and
    the premature layer chosen at each step of the answer."""

    text: str
    confidence: float
    premature_layers: list

    def to_dict(self) -> dict:
        return asdict(self)


def layer_divergence(final: torch.Tensor, premature: torch.Tensor) -> torch.Tensor:
    """(L, B) the official code's JSD between q_N (final: (B, V) logits) and each q_j (premature: (L, B, V))."""
    log_final = F.log_softmax(final, dim=-1)[None]
    log_premature = F.log_softmax(premature, dim=-1)
    mixture = 0.5 * (log_final.exp() + log_premature.exp())
    return 0.5 * (F.kl_div(log_final, mixture, reduction="none").mean(-1)
                  + F.kl_div(log_premature, mixture, reduction="none").mean(-1))


def dola_scores(final: torch.Tensor, premature: torch.Tensor, relative_top: float) -> torch.Tensor:
    """F = log q_N - log q_M where q_N >= relative_top * max q_N, -inf elsewhere (HF _relative_top_filter)."""
    log_final, log_premature = F.log_softmax(final, dim=-1), F.log_softmax(premature, dim=-1)
    floor = math.log(relative_top) if relative_top > 0 else -math.inf
    keep = log_final >= log_final.max(dim=-1, keepdim=True).values + floor
    return (log_final - log_premature).masked_fill(~keep, -math.inf)


class EarlyExits:
    """Context manager: forward hooks keeping the residual stream at the last position after j decoder
    layers, for each j of `layers` (0 = the input of the first layer, i.e. the embeddings)."""

    def __init__(self, model, layers: list[int]):
        self.decoder_layers = compat.decoder_layers(language_model(model))
        self.layers = layers
        self.states: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "EarlyExits":
        for j in self.layers:
            if j == 0:
                hook = self.decoder_layers[0].register_forward_pre_hook(self._before_first, with_kwargs=True)
            else:
                hook = self.decoder_layers[j - 1].register_forward_hook(partial(self._after, j))
            self._handles.append(hook)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _before_first(self, module, args, kwargs) -> None:
        self._keep(0, compat.layer_input(args, kwargs))

    def _after(self, j: int, module, args, output) -> None:
        self._keep(j, compat.layer_hidden_states(output))

    def _keep(self, j: int, hidden: torch.Tensor) -> None:
        self.states[j] = hidden[:, -1].clone()  # a copy: a view would keep the whole prompt's states alive


class DoLaProcessor(ScoreProcessor):
    """DoLa scores for generate, from the early exits of the forward that produced the step's logits."""

    def __init__(self, lm_head, exits: EarlyExits, candidates: list[int], relative_top: float,
                 repetition_penalty: float):
        super().__init__(repetition_penalty)
        self.lm_head, self.exits, self.candidates = lm_head, exits, candidates
        self.relative_top = relative_top
        self.chosen: list[list[int]] = []  # per step, the premature layer of each row

    def scores(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        device = self.lm_head.weight.device  # with a device map the head may sit elsewhere
        premature = torch.stack([self.lm_head(self.exits.states[j].to(device)).float().to(logits.device)
                                 for j in self.candidates])
        if len(self.candidates) == 1:
            index = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        else:
            index = layer_divergence(logits, premature).argmax(dim=0)
        self.chosen.append([self.candidates[i] for i in index.tolist()])
        base = premature[index, torch.arange(logits.shape[0], device=logits.device)]
        return dola_scores(logits, base, self.relative_top)

    def layers_of_row(self, row: int, steps: int) -> list[int]:
        return [step[row] for step in self.chosen[:steps]]


class DoLa:
    """DoLa(layers="high", relative_top=0.1, repetition_penalty=1.2); `run(vlm, inputs, max_new_tokens)`.

    `layers`: "low", "high", or layer indices (a list or "0,2,4"). The repetition penalty replaces the
    checkpoint's own (as generate(dola_layers=..., repetition_penalty=1.2) did).
    """

    name = "dola"

    def __init__(self, layers="high", relative_top: float = RELATIVE_TOP.default,
                 repetition_penalty: float = DOLA_REPETITION_PENALTY.default):
        self.layers = DOLA_LAYERS.check(layers)
        self.relative_top = RELATIVE_TOP.check(relative_top)
        self.repetition_penalty = DOLA_REPETITION_PENALTY.check(repetition_penalty)

    @classmethod
    def of(cls, values: dict) -> "DoLa":
        return cls(values["dola_layers"], values["relative_top"], values["dola_repetition_penalty"])

    def to_dict(self) -> dict:
        return {"method": self.name, "dola_layers": self.layers, "relative_top": self.relative_top,
                "dola_repetition_penalty": self.repetition_penalty}

    def __repr__(self) -> str:
        return (f"DoLa(layers={self.layers!r}, relative_top={self.relative_top}, "
                f"repetition_penalty={self.repetition_penalty})")

    def candidates(self, vlm) -> list[int]:
        """The candidate premature layers for this model."""
        model = vlm.model
        output, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
        tied = output.weight.data_ptr() == embeddings.weight.data_ptr()
        return candidate_layers(self.layers, len(compat.decoder_layers(language_model(model))), tied)

    def run(self, vlm, inputs: BatchFeature, max_new_tokens: int) -> list[DoLaAnswer]:
        candidates = self.candidates(vlm)
        with EarlyExits(vlm.model, candidates) as exits:
            processor = DoLaProcessor(vlm.model.get_output_embeddings(), exits, candidates, self.relative_top,
                                      self.repetition_penalty)
            new_tokens = generate_scored(vlm, inputs, processor, max_new_tokens)
        texts = vlm.decode_new_tokens(new_tokens, 0)
        return [DoLaAnswer(text, float(confidence), processor.layers_of_row(row, steps))
                for row, (text, confidence, steps)
                in enumerate(zip(texts, processor.confidence, answer_lengths(new_tokens, vlm)))]
