"""Default limits, each stated once; deploy and export flags override them per deployment."""
from __future__ import annotations

DEFAULT_MAX_TOKENS = 8192          # longest row the exported graph and the server accept
DEFAULT_MAX_TEXT_BYTES = 1 << 20   # 1 MiB of UTF-8 per text, checked before tokenizing (client side)
DEFAULT_MAX_BATCH_SIZE = 64        # rows per request and per encoder execute(), same in every model
REJECT, WINDOWS = "reject", "windows"  # long_input_policy: refuse texts above max_tokens, or window them
LONG_INPUT_POLICIES = (REJECT, WINDOWS)
DEFAULT_LONG_INPUT_POLICY = REJECT


def max_id_elements(max_batch_size: int, max_tokens: int) -> int:
    """Most elements of one ``input_ids`` / ``attention_mask`` tensor any model accepts:
    ``max_batch_size`` rows of ``max_tokens`` (Python ints: no overflow). The ingress cap the
    launcher prints counts two such INT64 tensors."""
    return int(max_batch_size) * int(max_tokens)
