"""Raw text -> token ids: the one set of rules shared by the server's ``tokenizer`` model and
the client's local tokenization, so both produce the same ids and reject the same inputs.

UTF-8 text, encoded with the bundle's ``tokenizer.json`` exactly as the reference's
``AutoTokenizer`` call does (its post-processor decides special tokens; Qwen3.5 adds none), no
truncation, no padding, no chat template. Rejected (:class:`InputError`): empty, whitespace
only, invalid UTF-8, a NUL byte, more than ``max_text_bytes`` bytes, 0 tokens, and more than
``max_tokens`` tokens unless the caller windows long input. Nothing is silently truncated.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .limits import DEFAULT_MAX_TEXT_BYTES


class InputError(ValueError):
    """Input the caller must fix; the message names the row and the problem."""


def decode_text(raw: object, where: str, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    """Validate one text (UTF-8 bytes, or str) and return it as ``str``."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates cannot travel as UTF-8
            raise InputError(f"{where}: not encodable as UTF-8 at character {exc.start} ({exc.reason})") from None
    if not isinstance(raw, (bytes, bytearray)):
        raise InputError(f"{where}: expected UTF-8 bytes, got {type(raw).__name__}")
    if len(raw) == 0:
        raise InputError(f"{where}: empty string")
    if len(raw) > max_text_bytes:
        raise InputError(f"{where}: text is {len(raw)} bytes, above max_text_bytes {max_text_bytes}")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{where}: NUL byte at byte offset {nul}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: invalid UTF-8 at byte offset {exc.start} ({exc.reason})") from None
    if not text.strip():
        raise InputError(f"{where}: whitespace-only text")
    return text


SPECIAL, PLAIN = "special", "plain"  # special_tokens_in_text (set_special_tokens_mode)
SPECIAL_TOKEN_MODES = (SPECIAL, PLAIN)


def set_special_tokens_mode(tokenizer, mode: str) -> None:
    """``special`` (the reference's behaviour): a special-token string in the text, such as
    ``<|im_start|>``, is that special token; ``plain``: it is encoded as ordinary text."""
    if mode not in SPECIAL_TOKEN_MODES:
        raise ValueError(f"special tokens mode {mode!r} is not one of {SPECIAL_TOKEN_MODES}")
    tokenizer.encode_special_tokens = mode == PLAIN


def load_tokenizer(path: str | Path, special_tokens: str = SPECIAL):
    """Load ``tokenizer.json`` with truncation and padding switched off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    set_special_tokens_mode(tokenizer, special_tokens)
    return tokenizer


def tokenizer_sha256(path: str | Path) -> str:
    """Fingerprint of a tokenizer file; the server publishes its own so clients can compare."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, as ``AutoTokenizer(texts)`` gives them (add_special_tokens=True)."""
    return [enc.ids for enc in tokenizer.encode_batch(list(texts), add_special_tokens=True)]


def check_token_count(ids: Sequence[int], where: str, max_tokens: int) -> None:
    """Reject an empty encoding or one above ``max_tokens``."""
    if not ids:
        raise InputError(f"{where}: text encodes to 0 tokens")
    if len(ids) > max_tokens:
        raise InputError(f"{where}: {len(ids)} tokens, above max_tokens {max_tokens} (long_input_policy=reject)")


def pad_right(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token rows into INT64 ``(input_ids, attention_mask)`` of ``width`` columns
    (default: the longest row); mask 1 = real token. The only padding the model accepts."""
    width = max(len(r) for r in rows) if width is None else width
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
