"""Triton model ``tokenizer``: ``text`` BYTES [batch, 1] -> ``input_ids``, ``attention_mask``
INT64 [rows, seq], right padded within the request (to a length bucket when configured), and
``text_row`` INT64 [rows, 1] (the text each row came from) and ``window_start`` INT64 [rows, 1]
(offset of the row's first token in that text; 0 unless windowed).

``long_input_policy=reject``: rows == batch, a text above max_tokens is INVALID_ARG.
``long_input_policy=windows``: a long text becomes overlapping windows of max_tokens tokens
(``window_overlap`` shared), so rows >= batch (at most max_batch_size, else INVALID_ARG);
calibration folds them back to one row per text (max score per label).
Config parameters: ``artifact_dir`` (holds tokenizer.json, classifier.json),
``long_input_policy``, ``window_overlap``, ``max_text_bytes``, ``length_buckets`` (``""`` = none),
``special_tokens_in_text`` (``special``: special-token strings in the text are special tokens,
as in the reference; ``plain``: ordinary text; see serving/README.md, threat model).
Bad text -> INVALID_ARG naming the row and the problem (see opencc_cm_serving.text); so is a
request parameter outside the contract (opencc_cm_serving.triton.request_parameters).
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import json  # noqa: E402

import numpy as np  # noqa: E402

from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, TEXT, TEXT_ROW, TOKENIZER_MODEL, WINDOW_START  # noqa: E402
from opencc_cm_contract.text_rules import SPECIAL_TOKEN_MODES, pad_right  # noqa: E402
from opencc_cm_serving.bundle import CLASSIFIER_FILE, TOKENIZER_FILE, load_classifier  # noqa: E402
from opencc_cm_serving.errors import ConfigError, InputError  # noqa: E402
from opencc_cm_serving.ids import padded_width, parse_buckets  # noqa: E402
from opencc_cm_serving.text import POLICIES, decode_text, encode_texts, load_tokenizer, texts_to_rows  # noqa: E402
from opencc_cm_serving.triton import (  # noqa: E402
    input_array, parameters, request_parameters, require, respond_each, version_path,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", TOKENIZER_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        special = params.get("special_tokens_in_text", "special")
        if special not in SPECIAL_TOKEN_MODES:
            raise ConfigError(f"{TOKENIZER_MODEL}: special_tokens_in_text {special!r} is not one of {SPECIAL_TOKEN_MODES}")
        self.tokenizer = load_tokenizer(artifacts / TOKENIZER_FILE, special)
        self.policy = require(params, "long_input_policy", TOKENIZER_MODEL)
        if self.policy not in POLICIES:
            raise ConfigError(f"{TOKENIZER_MODEL}: long_input_policy {self.policy!r} is not one of {POLICIES}")
        self.overlap = int(require(params, "window_overlap", TOKENIZER_MODEL))
        if not 0 <= self.overlap < self.spec.max_tokens:
            raise ConfigError(f"{TOKENIZER_MODEL}: window_overlap {self.overlap} not in [0, {self.spec.max_tokens})")
        self.max_rows = int(config["max_batch_size"])
        self.max_text_bytes = int(require(params, "max_text_bytes", TOKENIZER_MODEL))
        self.buckets = parse_buckets(require(params, "length_buckets", TOKENIZER_MODEL), self.spec.max_tokens)
        encode_texts(self.tokenizer, ["warm up the tokenizer"])  # warmup: first call builds caches

    def execute(self, requests):
        return respond_each(requests, self._tokenize, TOKENIZER_MODEL)

    def _tokenize(self, request):
        request_parameters(request)  # first step of classify_text: refuse unknown parameters before any work
        raw = input_array(request, TEXT)
        if raw.ndim != 2 or raw.shape[1] != 1:
            raise InputError(f"{TEXT}: expected shape [batch, 1], got {list(raw.shape)}")
        texts = [decode_text(x, f"{TEXT}[{i}]", self.max_text_bytes) for i, x in enumerate(raw[:, 0])]
        rows, text_row, starts = texts_to_rows(encode_texts(self.tokenizer, texts), self.policy, self.spec.max_tokens,
                                       self.overlap, self.max_rows, TEXT)
        width = padded_width(max(len(r) for r in rows), self.buckets)
        ids, mask = pad_right(rows, self.spec.pad_token_id, width)
        return {INPUT_IDS: ids, ATTENTION_MASK: mask, TEXT_ROW: np.asarray(text_row, dtype=np.int64)[:, None],
                WINDOW_START: np.asarray(starts, dtype=np.int64)[:, None]}
