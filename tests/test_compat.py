"""One test per item of intervention.compat: the transformers internals the toolkit relies on, checked on
the installed version so a release that moves one fails here first (CI runs this file on the oldest and
the newest supported transformers)."""
from __future__ import annotations

import functools

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface, DynamicCache
from transformers.cache_utils import DynamicSlidingWindowLayer

from intervention import compat
from intervention.compat import TransformersChanged
from tests.conftest import two_sample_inputs


def _prompt_cache(vlm, inputs):
    out = vlm.generate_ids(inputs, 1, return_dict_in_generate=True)
    return compat.output_cache(out)


def test_item1_cache_keyword_and_output_field(tiny_vlm):
    """The keyword is a forward parameter, generate continues from a cache passed under it, and the cache
    is found in both a forward output and a generate output."""
    model, inputs = tiny_vlm.model, two_sample_inputs(tiny_vlm)
    name = compat.cache_kwarg(model)
    assert name in compat.CACHE_NAMES
    with torch.no_grad():
        forward_cache = compat.output_cache(model(**inputs, use_cache=True))
    n = inputs["input_ids"].shape[1]
    assert forward_cache.get_seq_length() == n
    cache = _prompt_cache(tiny_vlm, inputs)
    out = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         **{name: compat.fork_cache(cache, compat.cache_key_values(cache), n - 1, None)},
                         generation_config=tiny_vlm.generation_config(2, return_dict_in_generate=True))
    assert compat.output_cache(out).get_seq_length() == n - 1 + 2
    with pytest.raises(TransformersChanged, match="cache field"):
        compat.output_cache({"kv": object()})


def test_item1_a_forward_without_a_known_cache_keyword_is_reported():
    class Model:
        def forward(self, input_ids, kv_cache=None):
            return input_ids

    with pytest.raises(TransformersChanged, match="cache argument"):
        compat.cache_kwarg(Model())


def test_item2_attention_implementation_per_module(tiny_vlm):
    """set_attn_implementation({"text_config": ...}) reaches every language-model attention module (what
    ScalingVis checks on entering) and leaves the vision tower alone."""
    model = tiny_vlm.model
    before = compat.attention_implementation(model.config.get_text_config())
    lm = model.model.language_model
    vision = getattr(model.model, "vision_tower", None) or model.model.visual
    vision_before = {compat.attention_implementation(m) for m in vision.modules() if hasattr(m, "config")}
    try:
        model.set_attn_implementation({"text_config": "eager"})
        assert {compat.attention_implementation(m) for m in lm.modules() if hasattr(m, "num_key_value_groups")} \
            == {"eager"}
        assert {compat.attention_implementation(m) for m in vision.modules() if hasattr(m, "config")} \
            == vision_before
    finally:
        model.set_attn_implementation({"text_config": before})


def test_item3_sdpa_helpers_compute_plain_attention():
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 2, True, False
    out, _ = compat.sdpa_attention_forward(module, query, key, value, None, scaling=8 ** -0.5)
    keys, values = compat.repeat_kv(key, 2), compat.repeat_kv(value, 2)
    assert keys.shape == (1, 4, 5, 8) and torch.equal(keys[:, 1], key[:, 0])
    logits = query @ keys.transpose(-1, -2) * 8 ** -0.5
    logits = logits.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    expected = (torch.softmax(logits, -1) @ values).transpose(1, 2)
    assert out.shape == (1, 5, 4, 8) and (out - expected).abs().max() < 1e-5
    mask = compat.sdpa_mask(batch_size=1, q_length=3, kv_length=5, q_offset=2, kv_offset=0,
                            attention_mask=torch.tensor([[0, 1, 1, 1, 1]]).bool(), allow_is_causal_skip=False)
    assert mask.dtype == torch.bool
    assert mask[0, 0].tolist() == [[False, True, True, False, False], [False, True, True, True, False],
                                   [False, True, True, True, True]]  # padding and causality, True = attend


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_item4_attention_weight_requests_are_visible_to_the_attention_function(tiny_vlm):
    seen = []

    def spy(module, query, key, value, attention_mask, **kwargs):
        seen.append(compat.attention_weights_requested() or bool(kwargs.get("output_attentions")))
        return compat.sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("test_compat_spy", spy)
    AttentionMaskInterface.register("test_compat_spy", compat.sdpa_mask)
    model, inputs = tiny_vlm.model, two_sample_inputs(tiny_vlm)
    before = compat.attention_implementation(model.config.get_text_config())
    try:
        model.set_attn_implementation({"text_config": "test_compat_spy"})
        with torch.no_grad():
            model(**inputs)
            assert seen and not any(seen)
            seen.clear()
            try:
                model(**inputs, output_attentions=True)
            except Exception:
                pass  # the spy returns no weights; only what it saw matters
    finally:
        model.set_attn_implementation({"text_config": before})
    assert seen and all(seen)


def test_item5_cache_layers_are_dynamic_and_grow_by_rebinding(tiny_vlm):
    """The property forks rely on: update() rebinds keys/values
    instead of writing in place, so a fork never changes the tensors it shares."""
    inputs = two_sample_inputs(tiny_vlm)
    cache = _prompt_cache(tiny_vlm, inputs)
    key_values = compat.cache_key_values(cache)
    n = inputs["input_ids"].shape[1]
    fork = compat.fork_cache(cache, key_values, n - 1, None)
    layer = fork.layers[0]
    keys = layer.keys
    assert keys.data_ptr() == key_values[0][0].data_ptr()  # a view: nothing copied
    new_keys, _ = layer.update(torch.zeros_like(keys[:, :, :1]), torch.zeros_like(keys[:, :, :1]))
    assert layer.keys is new_keys and new_keys is not keys
    assert new_keys.shape[2] == n and torch.equal(new_keys[:, :, :-1], keys)
    assert key_values[0][0].shape[2] == n and cache.layers[0].keys is key_values[0][0]
    gathered = compat.fork_cache(cache, key_values, n - 1, torch.tensor([1, 0, 1]))
    assert torch.equal(gathered.layers[0].keys, key_values[0][0][[1, 0, 1], :, :n - 1])
    single = compat.fork_cache(cache, key_values, n - 1, torch.tensor([1, 1, 1]))
    assert single.layers[0].keys.stride(0) == 0  # one row for every alpha: a broadcast view, nothing copied
    assert torch.equal(single.layers[0].keys, key_values[0][0][[1, 1, 1], :, :n - 1])


def test_item5_other_cache_layers_are_refused():
    cache = DynamicCache()
    cache.layers = [DynamicSlidingWindowLayer(sliding_window=4)]
    with pytest.raises(TransformersChanged, match="DynamicSlidingWindowLayer"):
        compat.check_cache_layers(cache)
    with pytest.raises(TransformersChanged, match="no list of layers"):
        compat.check_cache_layers(object())


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_item6_qwen_rotary_positions(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm, sizes=((56, 56), (30, 60)))  # row 0: a 2 x 2 merged grid
    positions = compat.mrope_position_ids(tiny_vlm.model, inputs)
    batch, n = inputs["input_ids"].shape
    assert positions.shape == (3, batch, n)
    image = inputs["input_ids"][0] == tiny_vlm.image_token_id
    cells = positions[1:, 0, image].T.tolist()
    start = cells[0]
    assert cells == [[start[0] + h, start[1] + w] for h in range(2) for w in range(2)]  # (height, width)


def test_item6_a_model_without_get_rope_index_is_reported(tiny_factory):
    model, _ = tiny_factory("llava")
    with pytest.raises(TransformersChanged, match="get_rope_index"):
        compat.mrope_position_ids(model, {"input_ids": torch.zeros(1, 3, dtype=torch.long)})


def test_item7_logit_lens_inside_the_language_model(tiny_vlm):
    """Forward hooks on the decoder layers see each layer's output, and the final norm then lm_head on the
    last layer's output are the model's own logits: the logit lens CLVS applies to intermediate layers."""
    from intervention.lm import language_model

    model, inputs = tiny_vlm.model, two_sample_inputs(tiny_vlm)
    lm = language_model(model)
    layers = compat.decoder_layers(lm)
    assert len(layers) == model.config.get_text_config().num_hidden_layers
    outputs = []
    hooks = [layer.register_forward_hook(lambda m, a, out: outputs.append(compat.layer_hidden_states(out)))
             for layer in layers]
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
            lens = model.get_output_embeddings()(compat.final_norm(lm)(outputs[-1]))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(outputs) == len(layers)
    assert (lens - logits).abs().max().item() <= 1e-5


def test_item7_a_language_model_without_layers_or_norm_is_reported():
    with pytest.raises(TransformersChanged, match="decoder layers"):
        compat.decoder_layers(torch.nn.Linear(1, 1))
    with pytest.raises(TransformersChanged, match="final norm"):
        compat.final_norm(torch.nn.Linear(1, 1))
    with pytest.raises(TransformersChanged, match="what a decoder layer returns"):
        compat.layer_hidden_states((None,))


def test_item7_hooks_on_decoder_layers_read_the_residual_stream(tiny_vlm):
    """A pre-hook on the first decoder layer and a hook after layer j see what output_hidden_states reports
    as hidden_states[0] (the embeddings) and hidden_states[j + 1] (before the final norm)."""
    from intervention.lm import language_model

    model, inputs = tiny_vlm.model, two_sample_inputs(tiny_vlm)
    layers = compat.decoder_layers(language_model(model))
    seen = {}

    def before_first(module, args, kwargs):
        seen[0] = compat.layer_input(args, kwargs)

    def after(j, module, args, output):
        seen[j + 1] = compat.layer_hidden_states(output)

    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(functools.partial(after, j)) for j, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    assert len(out.hidden_states) == len(layers) + 1
    for j in range(len(layers)):
        assert torch.equal(seen[j], out.hidden_states[j])
    final_norm = model.model.language_model.norm
    assert torch.allclose(final_norm(seen[len(layers)]), out.hidden_states[-1], atol=1e-6)


def test_item7_a_decoder_layer_called_without_hidden_states_is_reported():
    with pytest.raises(TransformersChanged, match="hidden_states"):
        compat.layer_input((), {})


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_item8_a_custom_logits_processor_sees_the_raw_logits(tiny_vlm):
    """With repetition_penalty=1.0 passed explicitly, the checkpoint's penalty is not applied before a custom
    processor, which is called at every step on float32 logits equal to output_logits."""
    from methods.engines.decoding import ScoreProcessor, generate_scored

    class Recorder(ScoreProcessor):
        def __init__(self):
            super().__init__()
            self.seen = []

        def scores(self, input_ids, logits):
            self.seen.append(logits.clone())
            return logits

    model, inputs = tiny_vlm.model, two_sample_inputs(tiny_vlm)
    before = model.generation_config.repetition_penalty
    model.generation_config.repetition_penalty = 1.3
    try:
        recorder = Recorder()
        out = generate_scored(tiny_vlm, inputs, recorder, 3, output_logits=True, return_dict_in_generate=True)
    finally:
        model.generation_config.repetition_penalty = before
    assert len(recorder.seen) == len(out.logits) == 3
    for seen, raw in zip(recorder.seen, out.logits):
        assert seen.dtype == torch.float32 and torch.equal(seen, raw.float())
