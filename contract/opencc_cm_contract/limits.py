"""Default limits, each stated once; deploy and export flags override them per deployment."""
from __future__ import annotations

DEFAULT_MAX_TOKENS = 8192          # longest row the exported graph and the server accept
DEFAULT_MAX_TEXT_BYTES = 1 << 20   # 1 MiB of UTF-8 per text, checked before tokenizing (client side)
DEFAULT_MAX_BATCH_SIZE = 64        # rows per request and per encoder execute(), same in every model
LONG_INPUT_POLICIES = ("reject", "windows")
DEFAULT_LONG_INPUT_POLICY = "reject"
