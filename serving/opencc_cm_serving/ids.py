"""Token-id batches: validation of client ids and the padded width (``text_rules.pad_right`` pads).

An ``[rows, seq]`` id matrix travels with an ``attention_mask`` of the same shape, 1 for a
real token and 0 for padding, right padded only (``1...1 0...0``), at least one real token
per row. Padding positions carry ``pad_token_id``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from opencc_cm_contract import buckets

from .errors import InputError


def right_padded_lengths(mask: np.ndarray, name: str = "attention_mask") -> np.ndarray:
    """Real length of each row; InputError unless the mask is 0/1, right padded, non-empty."""
    if mask.ndim != 2:
        raise InputError(f"{name}: expected rank 2 [batch, seq], got shape {list(mask.shape)}")
    bad = np.argwhere((mask != 0) & (mask != 1))
    if bad.size:
        r, c = bad[0]
        raise InputError(f"{name}: values must be 0 or 1, found {mask[r, c]} at row {r}, column {c}")
    lengths = mask.sum(axis=1, dtype=np.int64)
    expected = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    wrong = np.flatnonzero((mask.astype(bool) != expected).any(axis=1))
    if wrong.size:
        raise InputError(f"{name}: row {wrong[0]} is not right padded (expected 1...1 then 0...0)")
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise InputError(f"{name}: row {empty[0]} has no real token")
    return lengths


def validate_ids(ids: np.ndarray, mask: np.ndarray, vocab_size: int, max_tokens: int) -> np.ndarray:
    """Check a client's ``input_ids``/``attention_mask`` pair; return the real row lengths.

    Every id (padding included) must lie in ``[0, vocab_size)``: the encoder never sees an
    out-of-range id."""
    if ids.ndim != 2:
        raise InputError(f"input_ids: expected rank 2 [batch, seq], got shape {list(ids.shape)}")
    if mask.shape != ids.shape:
        raise InputError(f"attention_mask shape {list(mask.shape)} differs from input_ids shape {list(ids.shape)}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InputError(f"input_ids: empty batch or sequence (shape {list(ids.shape)})")
    out = np.argwhere((ids < 0) | (ids >= vocab_size))
    if out.size:
        r, c = out[0]
        raise InputError(f"input_ids: id {ids[r, c]} at row {r}, column {c} is outside [0, {vocab_size})")
    lengths = right_padded_lengths(mask)
    long = np.flatnonzero(lengths > max_tokens)
    if long.size:
        r = long[0]
        raise InputError(f"input_ids: row {r} has {lengths[r]} real tokens, above max_tokens {max_tokens}")
    return lengths


def parse_buckets(text: str, max_tokens: int) -> tuple[int, ...]:
    """A model's ``length_buckets`` parameter, always ending with ``max_tokens`` (contract rule)."""
    return buckets.parse_buckets(text, cap=max_tokens)


def padded_width(longest: int, widths: Sequence[int]) -> int:
    """The width a request is padded to: its longest row, rounded up to a bucket if any."""
    return buckets.bucket_for(widths, longest)
