"""Full attention in query blocks: never more than ``[batch, heads, block, seq]`` scores at once.

Qwen3.5's 6 full-attention layers, computed by transformers' eager or SDPA path and exported to
ONNX, materialise ``[batch, heads, seq, seq]`` scores (and the 4-D mask beside them): one
8,192-token row costs ~2 GiB per score tensor on the real model (8 query heads), several alive
at once. This rule computes the same softmax(q k^T * scale + mask) v, but one block of
``query_block`` queries at a time, through ``torch._higher_order_ops.scan`` (one ONNX ``Scan``
per layer, a symbolic number of blocks, like the Gated DeltaNet recurrence in
:mod:`gated_delta_export`). Peak memory per layer becomes ``batch x heads x block x seq``
(block 256: 64 MiB at 8,192 tokens, batch 1) instead of ``batch x heads x seq x seq``.

Masks are computed inside each block from positions and the 2-D padding mask (no ``[seq, seq]``
mask is ever built): key ``j`` is visible to query ``i`` iff ``j <= i`` and ``attention_mask[j]``
(causal + right padding, exactly the stock masks). Masked scores get the dtype's most negative
finite value, as transformers' eager path does, so no row is ever NaN. GQA: the 8 query heads
are grouped by their KV head (``[batch, kv_heads, groups * block, head_dim]``) and multiplied
with the 2 KV heads directly, without repeating K and V.

:class:`~opencc_cm_export.classifier_graph.MergedClassifier` routes its full-attention layers
here (transformers' ``AttentionInterface``, :func:`register`), passing the 2-D mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

ATTENTION_NAME = "opencc_blocked_causal"
DEFAULT_QUERY_BLOCK = 256


def _block_step(query_block_size: int, scaling: float, key_t, value, key_pos, key_ok):
    """The scan body for one query block; K, V and the masks are closed over (scan lifts them as
    loop-invariant inputs); the carry is a dummy step counter (scan needs one)."""

    def step(carry, xs):
        q, first = xs  # q: [B, KV, G, Q, D]; first: scalar int64, the block's first position
        b, kv, g, qn, d = q.shape
        scores = (q.reshape(b, kv, g * qn, d) @ key_t) * scaling  # [B, KV, G*Q, S]
        scores = scores.reshape(b, kv, g, qn, -1)
        q_pos = first + torch.arange(query_block_size, device=q.device)  # [Q]
        visible = (key_pos[None, :] <= q_pos[:, None])[None, None, None] & key_ok  # [B, 1, 1, Q, S]
        scores = torch.where(visible, scores, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        out = probs.reshape(b, kv, g * qn, -1) @ value  # [B, KV, G*Q, D]
        return carry + 1, out.reshape(b, kv, g, qn, d)

    return step


def blocked_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float,
                             query_block: int = DEFAULT_QUERY_BLOCK) -> torch.Tensor:
    """``query`` [B, H, S, D], ``key``/``value`` [B, KV, S, D] (H a multiple of KV), ``attention_mask``
    [B, S] (1 = real token, right padding) or None -> attention output [B, S, H, D]."""
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if attention_mask is None:
        attention_mask = torch.ones(batch, seq, dtype=torch.bool, device=query.device)
    key_ok = attention_mask.to(torch.bool)[:, None, None, None, :]  # [B, 1, 1, 1, S]
    pad = (query_block - seq % query_block) % query_block
    q = F.pad(query, (0, 0, 0, pad))  # [B, H, S', D]
    blocks = q.shape[2] // query_block
    # [B, KV, G, nb, Q, D] -> blocks first: [nb, B, KV, G, Q, D]
    q = q.reshape(batch, kv_heads, groups, blocks, query_block, dim).movedim(3, 0)
    firsts = torch.arange(blocks, device=query.device, dtype=torch.int64) * query_block
    key_pos = torch.arange(seq, device=query.device, dtype=torch.int64)
    step = _block_step(query_block, scaling, key.transpose(-1, -2), value, key_pos, key_ok)
    _, out = scan(step, torch.zeros((), dtype=torch.int64, device=query.device), (q, firsts))
    # [nb, B, KV, G, Q, D] -> [B, S', KV*G, D]
    out = out.movedim(0, 3).reshape(batch, heads, blocks * query_block, dim)[:, :, :seq]
    return out.transpose(1, 2).contiguous()


def make_attention_function(query_block: int = DEFAULT_QUERY_BLOCK):
    """An ``AttentionInterface`` function (transformers' signature) running :func:`blocked_causal_attention`."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if attention_mask is not None and attention_mask.ndim != 2:
            raise ValueError("blocked attention needs the 2-D padding mask, got a "
                             f"{attention_mask.ndim}-D mask (pass it through MergedClassifier)")
        if scaling is None:
            scaling = query.shape[-1] ** -0.5
        return blocked_causal_attention(query, key, value, attention_mask, scaling, query_block), None

    return attention


def register(query_block: int = DEFAULT_QUERY_BLOCK) -> str:
    """Register the rule with transformers' ``AttentionInterface``; return its name
    (:data:`ATTENTION_NAME` and the block size, so models with different blocks coexist)."""
    from transformers import AttentionInterface

    name = f"{ATTENTION_NAME}_{query_block}"
    AttentionInterface.register(name, make_attention_function(query_block))
    return name
