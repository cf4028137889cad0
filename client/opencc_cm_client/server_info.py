"""What the client learns from the server instead of hard-coding it.

``deploy`` writes the keys of ``opencc_cm_contract.metadata`` into the ``parameters`` of both
ensembles' ``config.pbtxt`` (from the same bundle that the calibration model loads), so a new
checkpoint needs no client release: labels, threshold profiles, limits and the tokenizer's
fingerprint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opencc_cm_contract.bundle_format import PRECISIONS
from opencc_cm_contract.text_rules import SPECIAL
from opencc_cm_contract.metadata import (METADATA_KEYS, PARAM_CHECKPOINT, PARAM_LABELS, PARAM_LONG_INPUT_POLICY,
                                         PARAM_MAX_TOKENS, PARAM_PAD_TOKEN_ID, PARAM_PRECISION, PARAM_PROFILES,
                                         PARAM_SPECIAL_TOKENS, PARAM_TOKENIZER_SHA256, PARAM_VOCAB_SIZE)

from .errors import ClassifierError

if TYPE_CHECKING:  # local_tokenizer imports this module
    from .local_tokenizer import LocalTokenizer


class ServerContractError(RuntimeError):
    """The server's model does not publish what this client needs (or publishes nonsense)."""


@dataclass(frozen=True)
class ServerInfo:
    model_name: str
    model_version: str
    max_batch_size: int
    labels: tuple[str, ...]
    profiles: dict[str, tuple[float, ...]]
    max_tokens: int
    vocab_size: int
    pad_token_id: int
    tokenizer_sha256: str
    long_input_policy: str
    checkpoint: str
    special_tokens: str = SPECIAL  # how the server encodes special-token strings in user text
    precision: str = "fp32"  # the deployed graph's precision (bundle_format.PRECISIONS)

    @classmethod
    def from_model_config(cls, config: dict, version: str) -> ServerInfo:
        """From ``get_model_config(..., as_json=True)['config']`` of an ensemble."""
        name = config.get("name", "?")
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        missing = [k for k in METADATA_KEYS if k not in params]
        if missing:
            raise ServerContractError(f"model {name!r} does not publish {missing} in its config parameters; "
                                      "was the repository filled by opencc_cm_serving.deploy?")
        try:
            labels = tuple(json.loads(params[PARAM_LABELS]))
            profiles = {k: tuple(float(x) for x in v) for k, v in json.loads(params[PARAM_PROFILES]).items()}
            info = cls(model_name=name, model_version=str(version),
                       max_batch_size=int(config.get("max_batch_size", 0)), labels=labels, profiles=profiles,
                       max_tokens=int(params[PARAM_MAX_TOKENS]), vocab_size=int(params[PARAM_VOCAB_SIZE]),
                       pad_token_id=int(params[PARAM_PAD_TOKEN_ID]),
                       tokenizer_sha256=params[PARAM_TOKENIZER_SHA256],
                       long_input_policy=params[PARAM_LONG_INPUT_POLICY], checkpoint=params[PARAM_CHECKPOINT],
                       special_tokens=params.get(PARAM_SPECIAL_TOKENS, SPECIAL),
                       precision=params.get(PARAM_PRECISION, "fp32"))
        except (ValueError, TypeError) as exc:
            raise ServerContractError(f"model {name!r}: malformed metadata parameters: {exc}") from exc
        if info.precision not in PRECISIONS:
            raise ServerContractError(f"model {name!r}: unknown precision {info.precision!r} in its config "
                                      f"parameters; this client knows {PRECISIONS}")
        bad = [p for p, t in profiles.items() if len(t) != len(labels)]
        if not labels or bad or info.max_batch_size < 1:
            raise ServerContractError(f"model {name!r}: labels {labels}, profiles of wrong length {bad}, "
                                      f"max_batch_size {info.max_batch_size}")
        return info

    def thresholds(self, profile: str) -> tuple[float, ...]:
        try:
            return self.profiles[profile]
        except KeyError:
            raise ValueError(f"unknown threshold profile {profile!r}; the server has {sorted(self.profiles)}") from None


def accept_server_info(model: str, config: dict, meta: dict, expected_version: str | None, profile: str,
                       local_tokenizer: LocalTokenizer | None = None) -> ServerInfo:
    """Check what the server published against this client's expectations."""
    versions = meta.get("versions", [])
    if expected_version and expected_version not in versions:
        raise ClassifierError(f"{model}: server has versions {versions}, this client expects {expected_version}",
                              "VERSION_MISMATCH")
    info = ServerInfo.from_model_config(config, versions[-1] if versions else "")
    info.thresholds(profile)  # an unknown profile fails before any inference call
    if local_tokenizer is not None:
        local_tokenizer.check_matches(info)
    return info
