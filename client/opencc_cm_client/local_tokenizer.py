"""The model's own ``tokenizer.json`` on the client side, applied with the server's rules
(``opencc_cm_contract.text_rules``), so locally tokenized ids equal the server's."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from opencc_cm_contract.text_rules import (InputError, decode_text, encode_texts, load_tokenizer,
                                           set_special_tokens_mode, tokenizer_sha256)

from .errors import InvalidRequestError
from .server_info import ServerContractError, ServerInfo


class TokenizerFileError(ValueError):
    """The local ``tokenizer.json`` cannot be read or is not a tokenizer; names the file."""


class LocalTokenizer:
    """The model's own ``tokenizer.json``, applied with the server's rules (``text_rules``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.sha256 = tokenizer_sha256(self.path)
            self.tokenizer = load_tokenizer(self.path)
        except OSError as exc:
            raise TokenizerFileError(f"tokenizer {self.path}: cannot read: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - `tokenizers` raises bare Exception for a bad file
            raise TokenizerFileError(f"tokenizer {self.path}: not a tokenizer.json: {exc}") from None

    def check_matches(self, info: ServerInfo) -> None:
        if info.tokenizer_sha256 != self.sha256:
            raise ServerContractError(
                f"local tokenizer {self.path} (sha256 {self.sha256[:12]}) is not the server's "
                f"(sha256 {info.tokenizer_sha256[:12]}, checkpoint {info.checkpoint}); ids would differ")
        set_special_tokens_mode(self.tokenizer, info.special_tokens)  # follow the server's choice

    def encode(self, texts: Sequence[str], offset: int = 0) -> list[list[int]]:
        try:
            decoded = [decode_text(t, f"text[{offset + i}]") for i, t in enumerate(texts)]
        except InputError as exc:
            raise InvalidRequestError(str(exc), "LOCAL") from None
        return encode_texts(self.tokenizer, decoded)
