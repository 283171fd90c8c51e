"""Every transformers name the toolkit relies on that is not a stable public API, in one place.

The engine otherwise runs through public behaviour: `generate` with a cache passed in, `output_logits`,
explicit `position_ids`, the `AttentionInterface`/`AttentionMaskInterface` registries. What remains is
here, each item with a test in tests/test_compat.py, so a transformers release that renames one fails
there first. Functions that the prefix-sharing engine needs raise `TransformersChanged` when an item
is not found; the engine then falls back to the naive engine (same answers, slower) with a warning,
instead of crashing or computing something else.

Items (transformers 5.23 and 5.24 are tested; see requirements.txt):
1. the name of the cache argument and output field: `past_key_values` up to 5.23, `cache` from 5.24;
2. the attention implementation a module runs: `config._attn_implementation`;
3. the SDPA helpers the attention function wraps: `sdpa_attention_forward`, `repeat_kv`, `sdpa_mask`;
4. whether the running forward collects attention weights: `output_capturing._active_collector`;
5. cache-layer internals: `DynamicLayer` with `keys` / `values` tensors, grown by rebinding (never
   written in place), so a shallow copy of the layers is a safe fork;
6. Qwen's multimodal rotary positions: `model.model.get_rope_index(input_ids, mm_token_type_ids=...,
   image_grid_thw=..., attention_mask=...)`;
7. the logit lens inside the language model (CLVS, DoLa): its decoder layers `language_model.layers`,
   called with the residual stream as their first argument (`hidden_states`; forward pre-hooks read it,
   DoLa's layer-0 exit) and returning it (forward hooks see each layer's output, a tensor), and the final
   norm `language_model.norm` applied before `lm_head` (`get_output_embeddings()`, public);
8. (behaviour, no name) `generate(logits_processor=[p])` calls `p` at every step on float32 logits, after
   the processors its generation config creates and before the sampling warpers, and an explicit value in
   a passed `GenerationConfig` (e.g. `repetition_penalty=1.0`) is not replaced by the checkpoint's default;
   so with `repetition_penalty=1.0` the processor sees the raw logits (VCD, DoLa: `methods.engines.decoding`).
"""
from __future__ import annotations

import copy
import inspect
import logging

import torch
import transformers
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward  # item 3
from transformers.masking_utils import sdpa_mask  # item 3

from common.errors import ToolkitError

logger = logging.getLogger(__name__)

CACHE_NAMES = ("cache", "past_key_values")  # item 1: newest first
TESTED_VERSIONS = ("5.23.0", "5.24.0")

__all__ = ["Cache", "repeat_kv", "sdpa_attention_forward", "sdpa_mask", "TransformersChanged", "cache_kwarg",
           "output_cache", "attention_implementation", "attention_weights_requested", "check_cache_layers",
           "cache_key_values", "fork_cache", "mrope_position_ids", "decoder_layers", "final_norm",
           "layer_hidden_states", "layer_input"]


class TransformersChanged(ToolkitError):
    """An internal of transformers the prefix-sharing engine needs is not where it used to be."""

    def __init__(self, what: str):
        super().__init__(f"transformers {transformers.__version__} changed {what} (tested: "
                         f"{', '.join(TESTED_VERSIONS)})")


def cache_kwarg(model) -> str:
    """Item 1: the keyword under which `model.forward` / `generate` take a cache."""
    parameters = inspect.signature(type(model).forward).parameters
    for name in CACHE_NAMES:
        if name in parameters:
            return name
    raise TransformersChanged(f"the cache argument of {type(model).__name__}.forward (none of {CACHE_NAMES})")


def output_cache(output) -> Cache:
    """Item 1: the cache a forward or `generate(return_dict_in_generate=True)` returned."""
    for name in CACHE_NAMES:
        value = output.get(name) if hasattr(output, "get") else getattr(output, name, None)
        if isinstance(value, Cache):
            return value
    raise TransformersChanged(f"the cache field of {type(output).__name__} (none of {CACHE_NAMES})")


def attention_implementation(module_or_config) -> str | None:
    """Item 2: the name of the attention function a module (or model, or config) looks up at each forward."""
    config = getattr(module_or_config, "config", module_or_config)
    return getattr(config, "_attn_implementation", None)


def attention_weights_requested() -> bool:
    """Item 4: whether the running forward collects attention weights (`output_attentions=True`).

    transformers 5 asks modules for weights through a context variable instead of a kwarg. If it moves,
    callers still see the `output_attentions` kwarg (`scaling_vis_attention` checks both); this only
    warns once.
    """
    try:
        from transformers.utils import output_capturing

        collector = output_capturing._active_collector.get()
    except (ImportError, AttributeError):
        _warn_once("cannot tell whether attention weights are requested (transformers.utils.output_capturing "
                   "moved); output_attentions=True through generate may return no weights")
        return False
    return bool(collector) and "attentions" in collector


def check_cache_layers(cache) -> None:
    """Item 5: refuse caches a shallow fork would share storage with (in-place writes) or that drop keys."""
    layers = getattr(cache, "layers", None)
    if not isinstance(layers, list):
        raise TransformersChanged(f"{type(cache).__name__} (no list of layers)")
    for layer in layers:
        if type(layer) is not DynamicLayer or not isinstance(getattr(layer, "keys", None), torch.Tensor):
            raise TransformersChanged(f"the cache layers (expected DynamicLayer with keys/values tensors, got "
                                      f"{type(layer).__name__})")


def cache_key_values(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Item 5: per layer (keys, values), each (B, H_kv, positions, D)."""
    check_cache_layers(cache)
    return [(layer.keys, layer.values) for layer in cache.layers]


def fork_cache(cache, key_values: list, stop: int, rows: torch.Tensor | None):
    """Item 5: a new cache holding positions [0, stop) of batch rows `rows` (all when None; rows may
    repeat and come in any order) of `key_values`, without copying when all rows are kept or all are one row.

    Safe because `DynamicLayer.update` rebinds `keys = torch.cat(...)` and never writes in place, so
    no fork ever changes the tensors it shares (re-checked in tests/test_compat.py).
    """
    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    single = None if rows is None or not bool((rows == rows[0]).all()) else int(rows[0])
    for layer, (keys, values) in zip(fork.layers, key_values):
        keys, values = keys[:, :, :stop], values[:, :, :stop]
        if single is not None:  # one row for every alpha (a batch of one): a broadcast view, nothing copied
            keys = keys[single:single + 1].expand(len(rows), -1, -1, -1)
            values = values[single:single + 1].expand(len(rows), -1, -1, -1)
        elif rows is not None:  # index_select: a plain gather, several times faster than advanced indexing on CPU
            index = rows.to(keys.device)
            keys, values = keys.index_select(0, index), values.index_select(0, index)
        layer.keys, layer.values = keys, values
    return fork


def mrope_position_ids(model, inputs) -> torch.Tensor:
    """Item 6: Qwen's (3, B, n) multimodal rotary positions of a prepared batch."""
    inner = getattr(model, "model", None)
    get_rope_index = getattr(inner, "get_rope_index", None)
    if get_rope_index is None:
        raise TransformersChanged(f"{type(model).__name__}.model.get_rope_index (not found)")
    try:
        positions, _ = get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs.get("mm_token_type_ids"),
                                      image_grid_thw=inputs.get("image_grid_thw"),
                                      attention_mask=inputs.get("attention_mask"))
    except TypeError as error:
        raise TransformersChanged(f"the signature of get_rope_index ({error})") from None
    return positions


def decoder_layers(language_model) -> torch.nn.ModuleList:
    """Item 7: the decoder layers of a language model, in order."""
    layers = getattr(language_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise TransformersChanged(f"the decoder layers of {type(language_model).__name__} (no .layers list)")
    return layers


def final_norm(language_model) -> torch.nn.Module:
    """Item 7: the norm the language model applies to the last layer's output before `lm_head`."""
    norm = getattr(language_model, "norm", None)
    if not isinstance(norm, torch.nn.Module):
        raise TransformersChanged(f"the final norm of {type(language_model).__name__} (no .norm module)")
    return norm


def layer_hidden_states(output) -> torch.Tensor:
    """Item 7: the (B, q, hidden) states a decoder layer returns (a tensor in transformers 5; tuples, as
    older releases returned, are accepted too)."""
    hidden = output[0] if isinstance(output, tuple) else output
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise TransformersChanged(f"what a decoder layer returns (got {type(output).__name__})")
    return hidden


def layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """Item 7: the residual stream a decoder layer is called with, from a forward pre-hook's (args, kwargs)."""
    hidden = args[0] if args else kwargs.get("hidden_states")
    if not isinstance(hidden, torch.Tensor):
        raise TransformersChanged("how decoder layers are called (no hidden_states argument)")
    return hidden


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)
