"""Training sequences in the evaluator's exact chat format, with labels on the answer tokens only.

One example = the prompt `VLM.build_prompt` makes for the question (what `main_aro.py` feeds the model),
then the gold answer word, then the end-of-turn token (the token generation stops at, the first id of the
model's generation `eos_token_id`: `</s>` for LLaVA, `<|im_end|>` for Qwen). The answer follows the prompt
the way a model continues it: directly after a prompt ending in whitespace (Qwen's "assistant\\n"), after one
space otherwise (LLaVA's "ASSISTANT:").

Label masking, and the bug it avoids (README, Fine-tuning: Labels): the peer masked the prompt with a length taken
from a text-only tokenisation, which holds one image placeholder where the processor puts N image tokens, so
N - 1 prompt tokens (image tokens and question) became targets. Here the processor encodes the whole
sequence (placeholders expanded) and the targets are the last k real tokens of each row of *that* encoding,
where k, the number of answer + end-of-turn tokens, is the difference between the tokenised full text and
the tokenised prompt (the image expansion happens inside the prompt, so it does not change k). The encoder
checks that the prompt's tokens are a prefix of the full text's and that the expanded row ends with exactly
the answer tokens. Real positions come from the attention mask, so left and right padding are both handled.
"""
from __future__ import annotations

from typing import Sequence

import torch
from transformers import BatchFeature

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from training.config import PADDING_SIDES

IGNORE_INDEX = -100


def end_of_turn_id(vlm) -> int:
    """The token generation stops at: the (first) eos id of the model's generation config."""
    eos = vlm.model.generation_config.eos_token_id
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if eos is None:
        eos = vlm.processor.tokenizer.eos_token_id
    if eos is None:
        raise ToolkitError(f"{vlm.model_id} defines no end-of-sequence token (generation_config.eos_token_id); "
                           f"set one in its generation_config.json")
    return int(eos)


def answer_suffix(prompt: str, answer: str, end_of_turn: str) -> str:
    """What follows the prompt in a training sequence: the answer, then the end-of-turn token."""
    separator = "" if prompt[-1:].isspace() else " "
    return f"{separator}{answer}{end_of_turn}"


class ExampleEncoder:
    """`encoder(samples)` -> model inputs plus `labels` (IGNORE_INDEX everywhere but the answer tokens).

    Usable as a DataLoader `collate_fn`. `padding_side` only affects where the padding goes.
    """

    def __init__(self, vlm, padding_side: str = "left"):
        if padding_side not in PADDING_SIDES:
            raise ToolkitError(f"unknown padding side {padding_side!r}; use left or right")
        self.vlm = vlm
        self.padding_side = padding_side
        self.eot_id = end_of_turn_id(vlm)
        self.eot_text = vlm.processor.tokenizer.convert_ids_to_tokens(self.eot_id)

    def texts(self, sample: Sample) -> tuple[str, str]:
        """(prompt, full text) of one sample."""
        prompt = self.vlm.build_prompt(sample.question, sample.paper_prompt)
        return prompt, prompt + answer_suffix(prompt, sample.answer, self.eot_text)

    def target_ids(self, sample: Sample) -> list[int]:
        """The token ids the loss is computed on for `sample`: its answer and the end-of-turn token."""
        prompt, full = self.texts(sample)
        tokenizer = self.vlm.processor.tokenizer
        prompt_ids, full_ids = tokenizer(prompt)["input_ids"], tokenizer(full)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids or len(full_ids) == len(prompt_ids):
            raise ToolkitError(f"the tokenizer of {self.vlm.model_id} merges the end of the prompt with the "
                               f"answer {sample.answer!r} (sample {sample.id}); answer tokens cannot be "
                               f"separated from the prompt")
        targets = full_ids[len(prompt_ids):]
        if targets[-1] != self.eot_id:
            raise ToolkitError(f"the tokenizer of {self.vlm.model_id} does not read {self.eot_text!r} as the "
                               f"end-of-turn token {self.eot_id}; check its special tokens")
        return targets

    def count_targets(self, samples: Sequence[Sample]) -> int:
        """How many label tokens `samples` contribute (text only, no image work)."""
        return sum(len(self.target_ids(sample)) for sample in samples)

    def __call__(self, samples: Sequence[Sample]) -> BatchFeature:
        images = [sample.image for sample in samples]
        inputs = self.vlm.processor(images=images, text=[self.texts(s)[1] for s in samples], padding=True,
                                    padding_side=self.padding_side, return_tensors="pt")
        inputs["labels"] = self.labels(inputs["input_ids"], inputs["attention_mask"], samples)
        return inputs

    def labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               samples: Sequence[Sample]) -> torch.Tensor:
        """IGNORE_INDEX except at the last len(targets) real positions of each row, which hold the targets."""
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, sample in enumerate(samples):
            targets = torch.tensor(self.target_ids(sample))
            positions = attention_mask[row].nonzero().flatten()[-len(targets):]
            if not torch.equal(input_ids[row, positions], targets):
                raise ToolkitError(f"the processed sequence of sample {sample.id} does not end with its answer "
                                   f"tokens; the processor of {self.vlm.model_id} changes the text after the "
                                   f"image placeholder")
            labels[row, positions] = targets
        return labels


def answer_loss_sum(model, batch: BatchFeature) -> torch.Tensor:
    """Summed cross-entropy over the label tokens of `batch` (divide by the token count for a mean).

    Only the logits that predict a label are computed (`logits_to_keep`): with left padding these are the
    last few positions of every row, so the full-vocabulary logits of the image and question tokens, most of
    the memory of a naive loss, are never materialised.
    """
    labels = batch["labels"]
    length = labels.shape[1]
    first_target = int((labels != IGNORE_INDEX).any(dim=0).nonzero().min())
    keep = length - first_target + 1
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits[:, :-1]
    targets = labels[:, length - keep + 1:]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
