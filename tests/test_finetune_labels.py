"""The training label mask covers exactly the answer and end-of-turn tokens of the processor's expanded
sequence (image placeholders expanded), for every family and both padding sides."""
from __future__ import annotations

import pytest
import torch

from dataset_zoo.base import Sample
from model_zoo.vlm import VLM
from tests.conftest import QUESTION, noise_image
from training.encode import IGNORE_INDEX, ExampleEncoder, answer_loss_sum, answer_suffix


def make_samples(tmp_path, sizes=((80, 30), (56, 56), (30, 60))):
    """Samples with different question lengths, image sizes and answers, images on disk."""
    questions = ["Where is the mug?", QUESTION, "Is the cat on the table? Answer with yes or no."]
    answers = ["left", "under", "yes"]
    samples = []
    for i, ((width, height), question, answer) in enumerate(zip(sizes, questions, answers)):
        path = tmp_path / f"image{i}.png"
        noise_image(width, height, seed=i).save(path)
        samples.append(Sample(id=f"s{i}", index=i, image_path=path, question=question,
                              options=("left", "right", "on", "under", "yes", "no"), answer=answer, relation=answer))
    return samples


def expanded_ids(vlm, sample, text):
    return vlm.processor(images=[sample.image], text=[text], return_tensors="pt")["input_ids"][0]


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_labels_cover_exactly_the_answer_tokens_of_the_expanded_sequence(tiny, tmp_path, padding_side):
    vlm = VLM.from_loaded(*tiny)
    encoder = ExampleEncoder(vlm, padding_side)
    samples = make_samples(tmp_path)
    batch = encoder(samples)
    assert (batch["input_ids"] == vlm.image_token_id).sum() > len(samples), "placeholders must be expanded"
    for row, sample in enumerate(samples):
        prompt, full = encoder.texts(sample)
        prompt_ids, full_ids = expanded_ids(vlm, sample, prompt), expanded_ids(vlm, sample, full)
        assert torch.equal(full_ids[:len(prompt_ids)], prompt_ids)
        real = batch["attention_mask"][row].bool()
        assert torch.equal(batch["input_ids"][row][real], full_ids)
        labels = batch["labels"][row]
        expected = torch.full_like(full_ids, IGNORE_INDEX)
        expected[len(prompt_ids):] = full_ids[len(prompt_ids):]
        assert torch.equal(labels[real], expected)
        assert (labels[~real] == IGNORE_INDEX).all()
        targets = vlm.processor.tokenizer.convert_ids_to_tokens(labels[labels != IGNORE_INDEX].tolist())
        assert targets == [sample.answer, encoder.eot_text]
    pads = ~batch["attention_mask"].bool()
    assert pads.any(), "the batch must contain padding"
    padded_row = pads.any(dim=1).nonzero()[0].item()
    assert pads[padded_row, 0 if padding_side == "left" else -1]


def test_the_end_of_turn_token_is_the_token_generation_stops_at(tiny):
    vlm = VLM.from_loaded(*tiny)
    encoder = ExampleEncoder(vlm)
    expected = "</s>" if vlm.family.startswith("llava") else "<|im_end|>"
    assert encoder.eot_text == expected and encoder.eot_id == vlm.model.generation_config.eos_token_id


def test_the_answer_follows_the_prompt_as_generation_would():
    assert answer_suffix("USER: <image>\nq ASSISTANT:", "left", "</s>") == " left</s>"
    assert answer_suffix("<|im_start|>assistant\n", "left", "<|im_end|>") == "left<|im_end|>"


def test_the_loss_counts_only_label_tokens(tiny_factory, tmp_path):
    vlm = VLM.from_loaded(*tiny_factory("qwen2_vl"))
    batch = ExampleEncoder(vlm, "right")(make_samples(tmp_path))
    labels = batch["labels"]
    with torch.no_grad():
        logits = vlm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                      labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                                      reduction="sum")
        assert torch.allclose(answer_loss_sum(vlm.model, batch), reference, rtol=1e-5)
