"""Triton model ``ids_preprocess``: client-tokenized ``input_ids``/``attention_mask`` INT64
[batch, seq] -> the same, validated, trailing all-padding columns dropped and padding ids
replaced by ``pad_token_id`` (then re-padded to a length bucket when configured), plus
``text_row`` INT64 [batch, 1] = 0..batch-1 (one encoder row per request row; no windows here)
and ``window_start`` INT64 [batch, 1] = 0.

Rejected with INVALID_ARG naming the problem: ids outside [0, vocab_size), mask shape not
equal to ids, mask values other than 0/1, padding not on the right, a row without a real
token, a row above max_tokens, a tensor of more than max_batch_size x max_tokens elements, a
request parameter outside the contract. The encoder never
receives an out-of-range id.
Config parameters: ``artifact_dir`` (holds classifier.json), ``length_buckets``.
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import json  # noqa: E402

import numpy as np  # noqa: E402

from opencc_cm_contract import ATTENTION_MASK, IDS_PREPROCESS_MODEL, INPUT_IDS, TEXT_ROW, WINDOW_START  # noqa: E402
from opencc_cm_serving.bundle import CLASSIFIER_FILE, load_classifier  # noqa: E402
from opencc_cm_contract.limits import max_id_elements  # noqa: E402
from opencc_cm_contract.text_rules import pad_right  # noqa: E402
from opencc_cm_serving.ids import padded_width, parse_buckets, validate_ids  # noqa: E402
from opencc_cm_serving.triton import (  # noqa: E402
    input_array, parameters, request_parameters, require, respond_each, version_path,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", IDS_PREPROCESS_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        self.max_elements = max_id_elements(config["max_batch_size"], self.spec.max_tokens)
        self.buckets = parse_buckets(require(params, "length_buckets", IDS_PREPROCESS_MODEL), self.spec.max_tokens)
        warm = np.ones((1, 2), dtype=np.int64)
        validate_ids(warm * self.spec.pad_token_id, warm, self.spec.vocab_size, self.spec.max_tokens)

    def execute(self, requests):
        return respond_each(requests, self._preprocess, IDS_PREPROCESS_MODEL)

    def _preprocess(self, request):
        request_parameters(request)  # first step of classify_ids: refuse unknown parameters before any work
        ids = input_array(request, INPUT_IDS, self.max_elements)
        mask = input_array(request, ATTENTION_MASK, self.max_elements)
        lengths = validate_ids(ids, mask, self.spec.vocab_size, self.spec.max_tokens)
        rows = [ids[i, :n] for i, n in enumerate(lengths)]
        width = padded_width(int(lengths.max()), self.buckets)
        out_ids, out_mask = pad_right(rows, self.spec.pad_token_id, width)
        return {INPUT_IDS: out_ids, ATTENTION_MASK: out_mask, TEXT_ROW: np.arange(len(rows), dtype=np.int64)[:, None],
                WINDOW_START: np.zeros((len(rows), 1), dtype=np.int64)}
