"""Plain eager attention, written independently of the toolkit, for the tests' reference computations:
the logits of every query row, and the rest of attention (mask, softmax in float32, @ V) after a test
has edited them."""
from __future__ import annotations

import torch


def eager_logits(query, key, value, scaling):
    """(B, H, q, k) scaled q.k logits and the values, with grouped key/value heads repeated."""
    n_rep = query.shape[1] // key.shape[1]
    k, v = key.repeat_interleave(n_rep, dim=1), value.repeat_interleave(n_rep, dim=1)
    return query @ k.transpose(-1, -2) * scaling, v


def eager_output(scores, values, attention_mask, dtype):
    """Attention output (B, q, H, d) and probabilities of the logits `scores`, with `attention_mask` added
    (a causal mask aligned to the last keys when None)."""
    q_len, kv_len = scores.shape[-2:]
    if attention_mask is None:
        causal = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
        attention_mask = torch.zeros(causal.shape).masked_fill(~causal, torch.finfo(scores.dtype).min)
    scores = torch.clamp(scores + attention_mask, min=torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(dtype)
    return (probs @ values).transpose(1, 2).contiguous(), probs
