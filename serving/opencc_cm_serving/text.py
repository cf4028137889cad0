"""Raw text -> encoder rows, as the ``tokenizer`` model does it.

The per-text rules (validation, encoding exactly as the reference's ``AutoTokenizer`` call,
token limits) live in ``opencc_cm_contract.text_rules`` so that the client's local
tokenization and this server produce identical ids; this module adds the long-input policy:
``reject`` (default) or overlapping ``windows``. Nothing is ever silently truncated.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from opencc_cm_contract.limits import LONG_INPUT_POLICIES, REJECT
from opencc_cm_contract.text_rules import check_token_count, decode_text, encode_texts, load_tokenizer

from .errors import InputError

__all__ = ["POLICIES", "check_token_count", "decode_text", "encode_texts", "load_tokenizer", "split_windows",
           "texts_to_rows", "window_starts"]

POLICIES = LONG_INPUT_POLICIES


def window_starts(n: int, max_tokens: int, overlap: int) -> list[int]:
    """Offsets of the windows covering ``n`` tokens (see :func:`split_windows`)."""
    if n <= max_tokens:
        return [0]
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"window overlap {overlap} must lie in [0, {max_tokens})")
    return list(range(0, n - max_tokens, max_tokens - overlap)) + [n - max_tokens]


def split_windows(ids: Sequence[int], max_tokens: int, overlap: int) -> list[list[int]]:
    """Windows of ``max_tokens`` tokens covering ``ids``; neighbours share at least
    ``overlap`` tokens and the last window ends with the text. Short texts: one window."""
    return [list(ids[s : s + max_tokens]) for s in window_starts(len(ids), max_tokens, overlap)]


def texts_to_rows(
    encoded: Iterable[Sequence[int]], policy: str, max_tokens: int, overlap: int, max_rows: int, name: str = "text"
) -> tuple[list[list[int]], list[int], list[int]]:
    """Encoder rows for a request's texts and, per row, the index of its text and the offset
    of the row's first token in that text (``window_start``; 0 unless windowed). Calibration
    uses both to report each text's own token count (overlaps counted once).

    ``encoded`` may be lazy (a generator encoding one text at a time): the texts are taken in
    order and the request is refused at the first text that breaks a limit (above max_tokens
    under ``reject``, or its windows taking the rows past ``max_rows``), so the texts after it
    are never encoded."""
    rows: list[list[int]] = []
    text_row: list[int] = []
    starts: list[int] = []
    for i, ids in enumerate(encoded):
        where = f"{name}[{i}]"
        if policy == REJECT or not ids:
            check_token_count(ids, where, max_tokens)
            offsets = [0]
        else:
            offsets = window_starts(len(ids), max_tokens, overlap)
        if len(rows) + len(offsets) > max_rows:  # before copying the windows of a huge text
            upto = f"{name}[0]" if i == 0 else f"{name}[0] to {where}"
            raise InputError(f"{name}: {upto} alone make {len(rows) + len(offsets)} windows of up to {max_tokens} "
                             f"tokens, above max_batch_size {max_rows}; send fewer or shorter texts")
        rows += [list(ids[s : s + max_tokens]) for s in offsets]
        text_row += [i] * len(offsets)
        starts += offsets
    if not rows:
        raise InputError(f"{name}: empty batch")
    return rows, text_row, starts
