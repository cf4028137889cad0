"""Raw text -> encoder rows, as the ``tokenizer`` model does it.

The per-text rules (validation, encoding exactly as the reference's ``AutoTokenizer`` call,
token limits) live in ``opencc_cm_contract.text_rules`` so that the client's local
tokenization and this server produce identical ids; this module adds the long-input policy:
``reject`` (default) or overlapping ``windows``. Nothing is ever silently truncated.
"""
from __future__ import annotations

from typing import Sequence

from opencc_cm_contract.limits import LONG_INPUT_POLICIES
from opencc_cm_contract.text_rules import check_token_count, decode_text, encode_texts, load_tokenizer

from .errors import InputError

__all__ = ["POLICIES", "check_token_count", "decode_text", "encode_texts", "load_tokenizer", "split_windows",
           "texts_to_rows"]

POLICIES = LONG_INPUT_POLICIES


def split_windows(ids: Sequence[int], max_tokens: int, overlap: int) -> list[list[int]]:
    """Windows of ``max_tokens`` tokens covering ``ids``; neighbours share at least
    ``overlap`` tokens and the last window ends with the text. Short texts: one window."""
    n = len(ids)
    if n <= max_tokens:
        return [list(ids)]
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"window overlap {overlap} must lie in [0, {max_tokens})")
    starts = list(range(0, n - max_tokens, max_tokens - overlap)) + [n - max_tokens]
    return [list(ids[s : s + max_tokens]) for s in starts]


def texts_to_rows(
    encoded: Sequence[Sequence[int]], policy: str, max_tokens: int, overlap: int, max_rows: int, name: str = "text"
) -> tuple[list[list[int]], list[int]]:
    """Encoder rows for a request's texts and, per row, the index of its text."""
    if not encoded:
        raise InputError(f"{name}: empty batch")
    rows: list[list[int]] = []
    text_row: list[int] = []
    for i, ids in enumerate(encoded):
        where = f"{name}[{i}]"
        if policy == "reject" or not ids:
            check_token_count(ids, where, max_tokens)
            windows = [list(ids)]
        else:
            windows = split_windows(ids, max_tokens, overlap)
        rows += windows
        text_row += [i] * len(windows)
    if len(rows) > max_rows:
        raise InputError(f"{name}: {len(encoded)} texts make {len(rows)} windows of up to {max_tokens} tokens, "
                         f"above max_batch_size {max_rows}; send fewer or shorter texts")
    return rows, text_row
