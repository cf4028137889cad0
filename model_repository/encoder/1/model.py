"""Triton model ``encoder`` (target ``python-ort``): ``input_ids``, ``attention_mask`` INT64
[batch, seq] -> ``logits`` FP32 [batch, num_labels], on ONNX Runtime.

Inputs are ``allow_ragged_batch``: one execute() gets requests of different lengths. Their
rows are pooled, grouped by real length with bounded padding waste
(opencc_cm_serving.batching), right padded per group, run, and split back per request in
order. A request with a bad mask or out-of-range id gets INVALID_ARG alone; if a joint run
fails, each request is retried on its own so one bad request cannot sink the batch.
Config parameters: ``artifact_dir`` (classifier.json), ``onnx_file``, ``providers``,
``intra_op_threads``, ``max_pad_fraction``, ``max_group_tokens``, ``attention_span``
(a run costs rows x width x (1 + width / attention_span) of the max_group_tokens budget),
``memory`` (``shrink``: ONNX Runtime returns what a long run took; opencc_cm_serving.onnx_runner).
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import json  # noqa: E402

from opencc_cm_contract import ATTENTION_MASK, ENCODER_MODEL, INPUT_IDS, LOGITS  # noqa: E402
from opencc_cm_serving.batching import plan_groups, run_grouped  # noqa: E402
from opencc_cm_serving.bundle import CLASSIFIER_FILE, load_classifier  # noqa: E402
from opencc_cm_serving.errors import InputError  # noqa: E402
from opencc_cm_serving.ids import right_padded_lengths  # noqa: E402
from opencc_cm_serving.onnx_runner import OnnxEncoder  # noqa: E402
from opencc_cm_serving.triton import (  # noqa: E402
    cancelled_response, error_response, input_array, outputs_response, parameters, pb, request_parameters, require,
    version_path,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", ENCODER_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        self.encoder = OnnxEncoder(
            version_path(args, require(params, "onnx_file", ENCODER_MODEL)),
            self.spec.num_labels,
            providers=require(params, "providers", ENCODER_MODEL),
            intra_op_threads=int(require(params, "intra_op_threads", ENCODER_MODEL)),
            memory=require(params, "memory", ENCODER_MODEL),
        )
        self.max_rows = max(1, int(config.get("max_batch_size", 0)))
        self.max_pad_fraction = float(require(params, "max_pad_fraction", ENCODER_MODEL))
        self.max_group_tokens = int(require(params, "max_group_tokens", ENCODER_MODEL))
        self.attention_span = float(require(params, "attention_span", ENCODER_MODEL))
        if not 0.0 <= self.max_pad_fraction < 1.0 or self.max_group_tokens < 1 or not self.attention_span >= 0:
            raise ValueError(f"{ENCODER_MODEL}: need 0 <= max_pad_fraction < 1, max_group_tokens >= 1 and "
                             f"attention_span >= 0, got {self.max_pad_fraction}, {self.max_group_tokens} and "
                             f"{self.attention_span}")
        pb().Logger.log_info(f"{ENCODER_MODEL}: onnxruntime providers {self.encoder.providers}")

    def execute(self, requests):
        responses = [None] * len(requests)
        rows, spans = [], {}
        for i, request in enumerate(requests):
            if request.is_cancelled():
                responses[i] = cancelled_response(ENCODER_MODEL)
                continue
            try:
                start = len(rows)
                rows.extend(self._rows(request))
                spans[i] = (start, len(rows))
            except Exception as exc:  # noqa: BLE001
                responses[i] = error_response(exc, ENCODER_MODEL)
        if spans:
            try:
                logits = self._run(rows)
                for i, (start, end) in spans.items():
                    responses[i] = outputs_response({LOGITS: logits[start:end]})
            except Exception:  # noqa: BLE001 - isolate the failing request(s)
                for i, (start, end) in spans.items():
                    try:
                        responses[i] = outputs_response({LOGITS: self._run(rows[start:end])})
                    except Exception as exc:  # noqa: BLE001
                        responses[i] = error_response(exc, ENCODER_MODEL)
        return responses

    def _rows(self, request):
        request_parameters(request)  # none is ours to use here, but an unknown one is still refused
        ids = input_array(request, INPUT_IDS)
        mask = input_array(request, ATTENTION_MASK)
        if ids.shape != mask.shape:
            raise InputError(f"{ATTENTION_MASK} shape {list(mask.shape)} differs from "
                             f"{INPUT_IDS} shape {list(ids.shape)}")
        lengths = right_padded_lengths(mask)
        if ids.size and (ids.min() < 0 or ids.max() >= self.spec.vocab_size):
            raise InputError(f"{INPUT_IDS}: ids must lie in [0, {self.spec.vocab_size})")
        return [ids[r, :n] for r, n in enumerate(lengths)]

    def _run(self, rows):
        groups = plan_groups([len(r) for r in rows], self.max_pad_fraction, self.max_rows, self.max_group_tokens,
                             attention_span=self.attention_span or None)
        return run_grouped(rows, self.spec.pad_token_id, groups, self.encoder)
