"""Padding buckets: the comma lists ``deploy`` writes into the configs (``length_buckets``,
``batch_buckets``) and the one rule every model reading them applies: pad up to the smallest
bucket that holds the value, or to the value itself above the largest."""
from __future__ import annotations

import bisect
from typing import Sequence


def parse_buckets(text: str | Sequence[int], cap: int | None = None) -> tuple[int, ...]:
    """``"16,32,64"`` (or a sequence) -> sorted distinct positive sizes; ``""`` -> none. With
    ``cap`` (e.g. max_tokens) sizes at or above it are dropped and ``cap`` ends the list, so no
    row is ever padded past the limit. ValueError for a size that is not a positive integer."""
    items = [x for x in text.replace(" ", "").split(",") if x] if isinstance(text, str) else list(text)
    try:
        sizes = sorted({int(x) for x in items})
    except ValueError:
        raise ValueError(f"buckets must be positive integers, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise ValueError(f"buckets must be positive integers, got {text!r}")
    if cap is None:
        return tuple(sizes)
    sizes = [s for s in sizes if s < cap]
    return tuple(sizes + [cap]) if sizes else ()


def bucket_for(buckets: Sequence[int], n: int) -> int:
    """The smallest bucket >= ``n``; ``n`` itself above the largest (or without buckets)."""
    i = bisect.bisect_left(buckets, n)
    return buckets[i] if i < len(buckets) else n


def powers_of_two(smallest: int, largest: int) -> list[int]:
    """``smallest``, twice that, ... below ``largest``, then ``largest``: the default buckets."""
    out, size = [], smallest
    while size < largest:
        out.append(size)
        size *= 2
    return out + [largest]


def bucket_list(sizes: Sequence[int]) -> str:
    """Sizes as the comma list a config parameter holds."""
    return ",".join(str(s) for s in sizes)
