"""The served computation as one module: merged backbone -> last real token -> fp32 head -> logits.

The vocabulary projection (``lm_head``, 248,320 x 1024 for the real model) is dropped: the
classifier only needs the final-norm hidden state at the last real token. Sigmoid and
thresholds are not part of the graph; the server's calibration stage applies them.

Full attention runs in query blocks (:mod:`blocked_attention`, default) so that memory grows
linearly with the sequence, not with its square; ``query_block=None`` keeps transformers' own
attention, which holds [batch, heads, seq, seq] scores (for side-by-side memory benchmarks only).
"""
from __future__ import annotations

import copy

import torch

from . import blocked_attention
from .reference import ReferenceClassifier, last_token_pool


class MergedClassifier(torch.nn.Module):
    """``(input_ids, attention_mask) -> logits``, right padding, LoRA merged into the weights."""

    def __init__(self, text_model: torch.nn.Module, head: torch.nn.Linear,
                 query_block: int | None = blocked_attention.DEFAULT_QUERY_BLOCK):
        super().__init__()
        self.text_model = text_model
        self.head = head
        self.query_block = query_block
        if query_block is not None:
            if query_block < 1:
                raise ValueError(f"query_block must be >= 1, got {query_block}")
            text_model.config._attn_implementation = blocked_attention.register(query_block)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        masks = attention_mask
        if self.query_block is not None:
            # The 2-D padding mask for both layer kinds: the blocked attention derives the causal
            # part itself, so transformers never builds a [batch, 1, seq, seq] mask.
            masks = {"full_attention": attention_mask, "linear_attention": attention_mask}
        hidden = self.text_model(input_ids=input_ids, attention_mask=masks,
                                 use_cache=False).last_hidden_state
        pooled = last_token_pool(hidden, attention_mask)
        return self.head(pooled.float())


def build_merged_classifier(reference: ReferenceClassifier, *, keep_reference: bool = True,
                            dtype: torch.dtype | None = None,
                            query_block: int | None = blocked_attention.DEFAULT_QUERY_BLOCK
                            ) -> MergedClassifier:
    """Merge the LoRA into the base weights (``merge_and_unload``) and attach the fp32 head.

    With ``keep_reference`` the reference stays usable (the merge works on a copy).
    ``dtype`` casts the backbone (fp16/bf16 for GPU); the head always stays fp32.
    ``query_block``: queries per block of the full attention (None: transformers' attention,
    which holds [batch, heads, seq, seq] scores).
    """
    backbone = copy.deepcopy(reference.backbone) if keep_reference else reference.backbone
    causal_lm = backbone.merge_and_unload()
    text_model = causal_lm.model
    if dtype is not None:
        text_model = text_model.to(dtype)
    head = copy.deepcopy(reference.head).float()
    return MergedClassifier(text_model, head, query_block=query_block).eval()
