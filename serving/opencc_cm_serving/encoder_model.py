"""The Python-backend encoder models' shared body, whatever runs the graph (``python-ort``:
ONNX Runtime, model.py; ``python-torch``: PyTorch, model_torch.py).

Inputs are ``allow_ragged_batch``: one execute() gets requests of different lengths.
execute() validates each request (ids in range, mask 0/1 and right padded, no row above
max_tokens: the ensembles' limits, since this model is callable directly), answers bad or
cancelled ones at once and admits the others to a row scheduler
(opencc_cm_serving.scheduler) whose worker thread runs the pooled rows in length groups,
shortest first, one group at a time, dropping requests that were cancelled or whose timeout
passed before each group, and answers each request (response sender, one final response)
as soon as its rows are done. Long rows therefore never hold short prompts back for more
than the one group already running, and abandoned work is not computed.
A subclass provides ``make_runner(args, config, params, spec) -> runner`` with
``runner(input_ids, attention_mask) -> FP32 logits [rows, labels]`` (kept as ``self.encoder``).
Config parameters: ``artifact_dir`` (classifier.json), ``max_pad_fraction``,
``max_group_tokens``, ``attention_span`` (optional; a group costs rows x width x (1 + width /
attention_span) of the max_group_tokens budget), ``max_defer_s`` (a request waiting longer runs next whatever its length:
long rows cannot starve), ``solo_row_tokens`` (rows at least this long run one per run; 0 =
max_tokens / 4), plus the runner's own. The queue policy's ``max_queue_size`` and
``default_timeout_microseconds`` also bound the scheduler.
"""
from __future__ import annotations

import json

import numpy as np

from opencc_cm_contract import ATTENTION_MASK, ENCODER_MODEL, INPUT_IDS, LOGITS

from .batching import plan_groups
from .bundle import CLASSIFIER_FILE, load_classifier
from .errors import InputError
from .ids import right_padded_lengths
from .scheduler import CANCELLED, EXPIRED, OVERLOADED, STOPPING, RowScheduler
from .triton import (cancelled_response, error_response, input_array, outputs_response, parameters, pb,
                     request_parameters, require, version_path)


class RaggedEncoderModel:
    """``TritonPythonModel`` base for the encoder targets that run inside the Python backend."""

    def make_runner(self, args, config: dict, params: dict[str, str], spec):  # pragma: no cover - abstract
        raise NotImplementedError

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", ENCODER_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        self.max_rows = max(1, int(config.get("max_batch_size", 0)))
        self.max_pad_fraction = float(require(params, "max_pad_fraction", ENCODER_MODEL))
        self.max_group_tokens = int(require(params, "max_group_tokens", ENCODER_MODEL))
        # Optional (python-ort has it; 0 = count rows x width only): a group costs
        # rows x width x (1 + width / attention_span) of max_group_tokens (batching.group_cost).
        self.attention_span = float(params.get("attention_span", "0"))
        if not 0.0 <= self.max_pad_fraction < 1.0 or self.max_group_tokens < 1 or not self.attention_span >= 0:
            raise ValueError(f"{ENCODER_MODEL}: need 0 <= max_pad_fraction < 1, max_group_tokens >= 1 and "
                             f"attention_span >= 0, got {self.max_pad_fraction}, {self.max_group_tokens} and "
                             f"{self.attention_span}")
        self.encoder = self.make_runner(args, config, params, self.spec)  # before the worker thread starts
        policy = (config.get("dynamic_batching") or {}).get("default_queue_policy") or {}
        timeout_us = int(policy.get("default_timeout_microseconds", 0) or 0)
        self.scheduler = RowScheduler(
            self._encode, self._respond, lambda entry: entry[0].is_cancelled(), self.spec.pad_token_id,
            max_pad_fraction=self.max_pad_fraction, max_rows=self.max_rows, max_group_tokens=self.max_group_tokens,
            max_pending=int(policy.get("max_queue_size", 0) or 1024), default_timeout_s=timeout_us / 1e6 or None,
            max_defer_s=float(params.get("max_defer_s", "2.0")), plan=self._plan,
            solo_tokens=int(params.get("solo_row_tokens", "0")) or max(1, self.spec.max_tokens // 4),
        ).start()
        self.metrics = _Metrics(args.get("model_name", ENCODER_MODEL))

    def execute(self, requests):
        for request in requests:
            entry = (request, request.get_response_sender())
            if request.is_cancelled():
                self._respond(entry, outcome=CANCELLED)
                continue
            try:
                rows = self._rows(request)
            except Exception as exc:  # noqa: BLE001
                self._respond(entry, outcome="failed", error=exc)
                continue
            self.scheduler.admit(entry, rows, timeout_s=_timeout_s(request))
        return None

    def finalize(self):
        self.scheduler.stop()

    def _rows(self, request):
        request_parameters(request)  # none is ours to use here, but an unknown one is still refused
        ids = input_array(request, INPUT_IDS)
        mask = input_array(request, ATTENTION_MASK)
        if ids.shape != mask.shape:
            raise InputError(f"{ATTENTION_MASK} shape {list(mask.shape)} differs from "
                             f"{INPUT_IDS} shape {list(ids.shape)}")
        lengths = right_padded_lengths(mask)
        long = np.flatnonzero(lengths > self.spec.max_tokens)
        if long.size:
            raise InputError(f"{INPUT_IDS}: row {long[0]} has {lengths[long[0]]} real tokens, "
                             f"above max_tokens {self.spec.max_tokens}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.spec.vocab_size):
            raise InputError(f"{INPUT_IDS}: ids must lie in [0, {self.spec.vocab_size})")
        return [ids[r, :n] for r, n in enumerate(lengths)]

    def _plan(self, lengths):
        return plan_groups(lengths, self.max_pad_fraction, self.max_rows, self.max_group_tokens,
                           attention_span=self.attention_span or None)

    def _encode(self, ids, mask):
        self.metrics.add("rows", ids.shape[0])
        logits = self.encoder(ids, mask)
        if not np.isfinite(logits).all():  # a model fault, not the caller's: INTERNAL, never a decision
            raise FloatingPointError(f"encoder produced non-finite logits for a batch of {ids.shape[0]} rows")
        return logits

    def _respond(self, entry, logits=None, outcome=None, error=None):
        utils = pb()
        if logits is not None:
            response = outputs_response({LOGITS: logits})
        elif outcome == CANCELLED:
            response = cancelled_response(ENCODER_MODEL)
        elif outcome in (EXPIRED, OVERLOADED, STOPPING):
            why = {EXPIRED: "Request timeout expired", OVERLOADED: "Exceeds maximum queue size",
                   STOPPING: "model is stopping"}[outcome]
            response = utils.InferenceResponse(
                output_tensors=[], error=utils.TritonError(f"{ENCODER_MODEL}: {why}", utils.TritonError.UNAVAILABLE))
        else:
            response = error_response(error, ENCODER_MODEL)
        if outcome in (CANCELLED, EXPIRED, OVERLOADED):
            self.metrics.add(outcome)
        entry[1].send(response, flags=utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class _Metrics:
    """Counters on Triton's metrics endpoint (``:8002/metrics``), label ``model``: rows the
    encoder ran, and requests it answered without computing them (cancelled, expired, overloaded)."""

    ROWS = "opencc_cm_encoder_rows_computed_total"
    DROPPED = "opencc_cm_encoder_requests_dropped_total"

    def __init__(self, model):
        utils = pb()
        self.metrics = {}
        if not hasattr(utils, "MetricFamily"):  # the test stub of triton_python_backend_utils
            return
        rows = utils.MetricFamily(self.ROWS, "Encoder rows run through the graph", utils.MetricFamily.COUNTER)
        dropped = utils.MetricFamily(self.DROPPED, "Encoder requests answered without being computed, by reason",
                                     utils.MetricFamily.COUNTER)
        self.families = (rows, dropped)  # keep the families alive as long as their metrics
        self.metrics["rows"] = rows.Metric(labels={"model": model})
        for reason in (CANCELLED, EXPIRED, OVERLOADED):
            self.metrics[reason] = dropped.Metric(labels={"model": model, "reason": reason})

    def add(self, name, value=1):
        metric = self.metrics.get(name)
        if metric is not None:
            metric.increment(value)


def _timeout_s(request):
    """The request's own timeout (client's ``timeout`` parameter, also carried by ensembles), seconds."""
    try:
        return (request.timeout() or 0) / 1e6 or None
    except AttributeError:
        return None
