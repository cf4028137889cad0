"""The served computation as one module: merged backbone -> last real token -> fp32 head -> logits.

The vocabulary projection (``lm_head``, 248,320 x 1024 for the real model) is dropped: the
classifier only needs the final-norm hidden state at the last real token. Sigmoid and
thresholds are not part of the graph; the server's calibration stage applies them.
"""
from __future__ import annotations

import copy

import torch

from .reference import ReferenceClassifier, last_token_pool


class MergedClassifier(torch.nn.Module):
    """``(input_ids, attention_mask) -> logits``, right padding, LoRA merged into the weights."""

    def __init__(self, text_model: torch.nn.Module, head: torch.nn.Linear):
        super().__init__()
        self.text_model = text_model
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                 use_cache=False).last_hidden_state
        pooled = last_token_pool(hidden, attention_mask)
        return self.head(pooled.float())


def build_merged_classifier(reference: ReferenceClassifier, *, keep_reference: bool = True,
                            dtype: torch.dtype | None = None) -> MergedClassifier:
    """Merge the LoRA into the base weights (``merge_and_unload``) and attach the fp32 head.

    With ``keep_reference`` the reference stays usable (the merge works on a copy).
    ``dtype`` casts the backbone (fp16/bf16 for GPU); the head always stays fp32.
    """
    backbone = copy.deepcopy(reference.backbone) if keep_reference else reference.backbone
    causal_lm = backbone.merge_and_unload()
    text_model = causal_lm.model
    if dtype is not None:
        text_model = text_model.to(dtype)
    head = copy.deepcopy(reference.head).float()
    return MergedClassifier(text_model, head).eval()
