"""The attention function's extension points (intervention.rows): observers read rows exactly as the
model computes them and never change a number; editors' probability edits reach the output."""
from __future__ import annotations

import torch

from intervention import ScalingVis, rows
from intervention.attention import scaling_vis_attention
from intervention.lm import RegisteredAttention
from intervention.rows import RowEditor, RowObserver, RowPlan
from model_zoo.vlm import VLM
from tests.conftest import one_sample_inputs


class LastRowObserver(RowObserver):
    """Keeps the float32 probabilities of each layer's last query row (batch row 0)."""

    def __init__(self, model):
        self.module_layers = {id(m): m.layer_idx for m in model.model.language_model.modules()
                              if hasattr(m, "num_key_value_groups")}
        self.probs: dict[int, torch.Tensor] = {}

    def plan(self, module, batch_size, q_len, kv_len, device):
        return RowPlan(torch.tensor([0]), torch.tensor([q_len - 1]), torch.tensor([kv_len - 1]))

    def observe(self, module, logits, probs, plan):
        self.probs[self.module_layers[id(module)]] = probs[0, :, 0]


def _eager_last_rows(vlm, inputs, alpha=None):
    model = vlm.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            if alpha is None:
                return [a[0, :, -1] for a in model(**inputs, output_attentions=True).attentions]
            with ScalingVis(vlm, alpha=alpha):
                return [a[0, :, -1] for a in model(**inputs, output_attentions=True).attentions]
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})


def _observed(vlm, inputs, alpha=None):
    observer = LastRowObserver(vlm.model)
    rows.push(observer)
    try:
        with torch.no_grad(), RegisteredAttention(vlm.model):
            if alpha is None:
                logits = vlm.model(**inputs).logits
            else:
                with ScalingVis(vlm, alpha=alpha):
                    logits = vlm.model(**inputs).logits
    finally:
        rows.remove(observer)
    return observer, logits


def test_an_observer_sees_the_models_own_rows_and_changes_nothing(tiny_factory):
    for family in ("llava", "qwen2_vl"):
        vlm = VLM.from_loaded(*tiny_factory(family))
        inputs = one_sample_inputs(vlm, 0)
        with torch.no_grad():
            stock = vlm.model(**inputs).logits
            with ScalingVis(vlm, alpha=2.0):
                scaled = vlm.model(**inputs).logits
        for alpha, expected_logits in ((None, stock), (2.0, scaled)):
            observer, logits = _observed(vlm, inputs, alpha)
            assert torch.equal(logits, expected_logits)  # observing never changes a number
            reference = _eager_last_rows(vlm, inputs, alpha)
            assert sorted(observer.probs) == list(range(len(reference)))
            for layer, probs in observer.probs.items():
                assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[0]), atol=1e-5)
                assert (probs - reference[layer].float()).abs().max().item() <= 1e-5
        assert not torch.allclose(_observed(vlm, inputs)[0].probs[1], _observed(vlm, inputs, 2.0)[0].probs[1])


class OneHotEditor(RowEditor):
    """Moves all of the last row's attention onto key 0 (after the softmax)."""

    def __init__(self, module):
        self.module_layers = {id(module): 0}
        self.after_calls = 0

    def plan(self, module, batch_size, q_len, kv_len, device):
        return RowPlan(torch.arange(batch_size), torch.tensor([q_len - 1]), torch.tensor([kv_len - 1]))

    def edit_probs(self, module, probs, plan):
        edited = torch.zeros_like(probs)
        edited[..., 0] = 1.0
        return edited

    def after_rows(self, module, logits, probs, plan):
        self.after_calls += 1
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]))  # before the edit


def test_an_editors_probability_edit_reaches_the_output(tiny_factory):
    model, _ = tiny_factory("llava")
    module = model.model.language_model.layers[0].self_attn
    heads, kv_heads, dim = module.config.num_attention_heads, module.config.num_key_value_heads, module.head_dim
    torch.manual_seed(0)
    query, key, value = torch.randn(2, heads, 5, dim), torch.randn(2, kv_heads, 5, dim), torch.randn(2, kv_heads, 5, dim)
    stock, _ = scaling_vis_attention(module, query, key, value, None, scaling=dim ** -0.5)
    editor = OneHotEditor(module)
    rows.push(editor)
    try:
        out, _ = scaling_vis_attention(module, query, key, value, None, scaling=dim ** -0.5)
    finally:
        rows.remove(editor)
    assert editor.after_calls == 1
    expected_last = value[:, :, 0].repeat_interleave(heads // kv_heads, dim=1)  # (B, H, D)
    assert torch.allclose(out[:, -1], expected_last, atol=1e-6)
    assert torch.equal(out[:, :-1], stock[:, :-1])
