"""What the server publishes about itself, for clients, in both ensembles' config parameters.

``deploy`` writes these keys into the ``parameters`` of both ensembles' ``config.pbtxt`` (string
values; JSON where structured); ``opencc_cm_client.server_info`` reads them, so a new
checkpoint needs no client release.
"""
from __future__ import annotations

PARAM_LABELS = "labels"                    # JSON list, column order
PARAM_PROFILES = "threshold_profiles"      # JSON {profile: [threshold per label]}
PARAM_MAX_TOKENS = "max_tokens"            # int
PARAM_VOCAB_SIZE = "vocab_size"            # int
PARAM_PAD_TOKEN_ID = "pad_token_id"        # int
PARAM_TOKENIZER_SHA256 = "tokenizer_sha256"
PARAM_LONG_INPUT_POLICY = "long_input_policy"  # reject | windows
PARAM_CHECKPOINT = "checkpoint"
# "special" (default; absent on older servers = "special"): special-token strings in user text,
# e.g. "<|im_start|>", become the special tokens, as in the reference; "plain": they are encoded
# as ordinary text. Clients that tokenize locally must do the same (text_rules.load_tokenizer).
PARAM_SPECIAL_TOKENS = "special_tokens_in_text"
# the deployed graph's precision, one of bundle_format.PRECISIONS (absent on older servers = "fp32")
PARAM_PRECISION = "precision"
METADATA_KEYS = (PARAM_LABELS, PARAM_PROFILES, PARAM_MAX_TOKENS, PARAM_VOCAB_SIZE, PARAM_PAD_TOKEN_ID,
                 PARAM_TOKENIZER_SHA256, PARAM_LONG_INPUT_POLICY, PARAM_CHECKPOINT)
