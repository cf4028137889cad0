"""The Python-backend encoder models' shared body: ragged batching, length grouping, the row
scheduler and error isolation, whatever runs the graph (``python-ort``: ONNX Runtime;
``python-torch``: PyTorch).

Inputs are ``allow_ragged_batch``: one execute() gets requests of different lengths.
execute() validates each request (ids in range, mask 0/1 and right padded, no row above
max_tokens, at most max_batch_size x max_tokens elements per tensor: the ensembles' limits,
since this model is callable directly), answers bad or
cancelled ones at once and admits the others to a row scheduler
(opencc_cm_serving.scheduler) whose worker thread runs the pooled rows in length groups
(opencc_cm_serving.batching: bounded padding waste), shortest first, one group at a time,
dropping requests that were cancelled or whose timeout passed before each group, and answers
each request (response sender, one final response) as soon as its rows are done. Long rows
therefore never hold short prompts back for more than the one group already running, and
abandoned work is not computed. If a joint run fails, each request is retried on its own so
one bad request cannot sink the batch.
Folded calibration: the Python-backend encoder targets' configs also declare the
calibration outputs (``scores``, ``label_flags``, ``flagged``, ``token_count``) and optional
``text_row`` / ``window_start`` inputs, and their ensembles call this model as their last
step: ``classify_ids`` is this one step (it validates the client's ids as ``ids_preprocess``
does, same checks, same messages), ``classify_text`` is ``tokenizer`` + this step. A request
asking for any calibration output is calibrated here exactly as the ``calibration`` model
would (opencc_cm_serving.calibration: same activation, fold, ``>=`` rule, profile selection
and errors) and counted in the per-label metrics under the calibration model's name
(parameter ``calibration_model``), so each Python-backend hop saved is ~0.25 ms of server CPU
per request. ``logits`` is answered when asked for (a direct call asking for nothing gets all
outputs). The native targets keep the separate steps.
A subclass provides ``make_runner(args, config, params, spec) -> runner`` where
``runner(input_ids, attention_mask) -> FP32 logits [rows, labels]``.
Config parameters read here: ``artifact_dir`` (classifier.json), ``max_pad_fraction``,
``max_group_tokens``, ``attention_span`` (optional; a group costs rows x width x (1 + width /
attention_span) of the max_group_tokens budget), ``max_defer_s`` (a request waiting longer runs next whatever its
length: long rows cannot starve), ``solo_row_tokens`` (rows at least this long run one per
run; 0 = max_tokens / 4), ``long_row_lane`` ("1": those rows run in a second worker beside the
short ones; "0"/absent: one worker), ``queue_timeout_us`` and ``max_queue_size`` (the
scheduler's default timeout and bound; the config has no Triton queue policy: queue_settings).
A batch computed inside execute() is answered by execute()'s return; admitted requests through
their response senders.
"""
from __future__ import annotations

import json
import threading

import numpy as np

from opencc_cm_contract import (ATTENTION_MASK, DEFAULT_PROFILE, ENCODER_MODEL, FLAGGED, INPUT_IDS, LABEL_FLAGS,
                                LOGITS, SCORES, TEXT_ROW, THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT, WINDOW_START)
from opencc_cm_contract.limits import max_id_elements

from .batching import group_cost, plan_groups
from .bundle import CLASSIFIER_FILE, load_classifier
from .calibration import activate, calibration_settings, decide, fold_max, fold_plan
from .ids import validate_ids
from .metrics import ClassifierMetrics, FlushTimer
from .scheduler import CANCELLED, EXPIRED, OVERLOADED, STOPPING, UNMEETABLE, RowScheduler, SchedulerSettings
from .triton import (cancelled_response, error_response, flag_parameter, input_array, log_error, outputs_response,
                     parameters, pb, request_parameters, require, unavailable_response, version_path)

CALIBRATED = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)


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
        self.max_elements = max_id_elements(self.max_rows, self.spec.max_tokens)
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
        # Every message to the server (response sends, is_cancelled(), metric increments) goes
        # under this lock: with two scheduler lanes, Triton 2.51's Python backend crashed the
        # server (SIGSEGV in libtriton_python.so) when the stub's threads sent at the same time.
        self._ipc = threading.Lock()
        self.outputs = {o["name"] for o in config.get("output", [])}
        self.calibrating = set(CALIBRATED) <= self.outputs
        self.class_metrics = None
        if self.calibrating:
            self.profiles, self.window_step = calibration_settings(args, params, self.spec, ENCODER_MODEL)
            if hasattr(pb(), "MetricFamily"):
                self.class_metrics = ClassifierMetrics(pb(), require(params, "calibration_model", ENCODER_MODEL),
                                                       self.spec.labels, ipc_lock=self._ipc)
        # The queue bounds are this model's own (the scheduler's), not a Triton queue policy: see
        # queue_settings.
        timeout_us, max_pending = queue_settings(params)
        settings = SchedulerSettings(
            pad_id=self.spec.pad_token_id, max_pad_fraction=self.max_pad_fraction, max_rows=self.max_rows,
            max_group_tokens=self.max_group_tokens, max_pending=max_pending,
            default_timeout_s=timeout_us / 1e6 or None, max_defer_s=float(params.get("max_defer_s", "2.0")),
            solo_tokens=self._solo_tokens(params),
            cancel_check_tokens=int(params.get("cancel_check_tokens", "0")) or self._solo_tokens(params),
            cancel_check_wait_s=float(params.get("cancel_check_wait_s", "0.01")),
            long_lane=self._long_row_lane(params))
        self.scheduler = RowScheduler(self._encode, self._respond, self._is_cancelled, settings, plan=self._plan,
                                      cost=lambda rows, width: group_cost(rows, width, self.attention_span or None)).start()
        self.metrics = _Metrics(args.get("model_name", ENCODER_MODEL), self._ipc)

    def _is_cancelled(self, entry) -> bool:
        with self._ipc:
            return entry[0].is_cancelled()

    @staticmethod
    def _long_row_lane(params) -> bool:
        """``long_row_lane`` "1": long rows in their own worker, beside the short ones (the
        python-ort default); "0" or absent: one worker (python-torch: CUDA graphs share one memory
        pool, so two runs must never overlap)."""
        return flag_parameter(params, "long_row_lane", ENCODER_MODEL)

    def _solo_tokens(self, params):
        return int(params.get("solo_row_tokens", "0")) or max(1, self.spec.max_tokens // 4)

    def execute(self, requests):
        """Validate every request, then either compute the batch here (RowScheduler.run_now:
        short rows, nothing pending in their lane) and return every request's response, or
        admit the valid requests to the row scheduler, whose workers answer each through its
        response sender (bad ones are answered through theirs at once).

        The batch computed here costs no is_cancelled() round trip, no scheduler hand-off and
        one message to the server for all its responses. Returning them is safe from stalls
        only because this model has no Triton queue policy (see queue_settings)."""
        # No is_cancelled() here: it is a round trip to the server per request (~0.2 ms); the
        # scheduler asks before computing queued work where that can pay (RowScheduler._check_cancelled).
        self.metrics.flush_if_due()  # buffered counters go out from this thread, between batches
        if self.class_metrics is not None:
            self.class_metrics.flush_if_due()
        checked = [self._check(request) for request in requests]
        valid = [c for c in checked if not isinstance(c[1], BaseException)]
        results = self.scheduler.run_now([rows for _, rows, _ in valid], run=self._encode_here) if valid else []
        if results is not None:
            done, answers = iter(results), []
            for request, rows, plan in checked:
                entry = [request, None, plan]
                result = rows if isinstance(rows, BaseException) else next(done)
                if isinstance(result, BaseException):
                    response = self._response(entry, outcome="failed", error=result)
                else:
                    response = self._response(entry, logits=result)
                answers.append(response)
            return answers
        for request, rows, plan in checked:
            entry = [request, request.get_response_sender(), plan]
            if isinstance(rows, BaseException):
                self._respond(entry, outcome="failed", error=rows)
            else:
                self.scheduler.admit(entry, rows, timeout_s=_timeout_s(request))
        return None

    def _check(self, request):
        """(request, its unpadded rows or the exception refusing it, calibration plan or None)."""
        calibrate = self.calibrating and self._wants_calibration(request)
        try:
            params = request_parameters(request)  # an unknown parameter is refused before any work
            ids = input_array(request, INPUT_IDS, self.max_elements)
            mask = input_array(request, ATTENTION_MASK, self.max_elements)
            lengths = validate_ids(ids, mask, self.spec.vocab_size, self.spec.max_tokens)
        except Exception as exc:  # noqa: BLE001
            return request, exc, None
        plan = None
        if calibrate:
            try:
                plan = self._calibration_plan(request, params, lengths)
            except Exception as exc:  # noqa: BLE001 - counted as the calibration model counts it
                if LOGITS not in self._asked(request):
                    self._count_failure(exc)
                return request, exc, None
        return request, [ids[r, :n] for r, n in enumerate(lengths)], plan

    def finalize(self):
        self.scheduler.stop()
        self.metrics.close()
        if self.class_metrics is not None:
            self.class_metrics.close()  # send the per-label counts not yet flushed

    def _asked(self, request) -> set:
        """The outputs the request asked for (an ensemble step: its output_map; a direct call asking
        for none: every output)."""
        return set(request.requested_output_names()) or set(self.outputs)

    def _wants_calibration(self, request):
        return bool(self._asked(request) & set(CALIBRATED))

    def _calibration_plan(self, request, params, lengths):
        """(profile name, thresholds, first row of each text, token counts), checked before any compute."""
        profile = params.get(THRESHOLD_PROFILE_PARAMETER)
        thresholds = self.profiles.select(profile)
        text_row = pb().get_input_tensor_by_name(request, TEXT_ROW)
        window_start = pb().get_input_tensor_by_name(request, WINDOW_START)
        if text_row is None and window_start is None:  # client ids: one text per row, nothing folds
            first, tokens = None, lengths[:, None]
        else:
            first, tokens = fold_plan(lengths, input_array(request, TEXT_ROW), input_array(request, WINDOW_START),
                                      self.spec.max_tokens, self.window_step)
        asked = self._asked(request)
        # counted like the calibration model's requests; a direct call that also asks for logits
        # (model warmup asks for every output) is the encoder's and is never counted
        record = LOGITS not in asked
        return profile or DEFAULT_PROFILE, thresholds, first, tokens, record, LOGITS in asked

    def _calibrated(self, plan, logits):
        profile, thresholds, first, tokens, record, _ = plan
        scores = activate(logits, self.spec.objective)
        if first is not None:
            scores = fold_max(scores, first)
        flags, flagged = decide(scores, thresholds)
        if record and self.class_metrics is not None:
            self.class_metrics.record(profile, flags, tokens)
        return {SCORES: scores, LABEL_FLAGS: flags, FLAGGED: flagged, TOKEN_COUNT: tokens}

    def _plan(self, lengths):
        return plan_groups(lengths, self.max_pad_fraction, self.max_rows, self.max_group_tokens,
                           attention_span=self.attention_span or None)

    def _encode(self, ids, mask):
        """A worker's run: the rows counter is sent at once (before the answers go out)."""
        self.metrics.add("rows", ids.shape[0])
        return self._finite(ids, self.encoder(ids, mask))

    def _encode_here(self, ids, mask):
        """A run inside execute(): the rows counter is sent later (``_Metrics.defer``), so the
        batch costs no message to the server beyond its responses."""
        self.metrics.defer("rows", ids.shape[0])
        return self._finite(ids, self.encoder(ids, mask))

    @staticmethod
    def _finite(ids, logits):
        if not np.isfinite(logits).all():  # a model fault, not the caller's: INTERNAL, never a decision
            raise FloatingPointError(f"encoder produced non-finite logits for a batch of {ids.shape[0]} rows")
        return logits

    def _respond(self, entry, logits=None, outcome=None, error=None):
        """Answer a request admitted to the scheduler (or refused before it) through its sender."""
        self._send(entry[1], self._response(entry, logits, outcome, error))

    def _send(self, sender, response):
        """Send a request's final response. One that cannot be sent (its sender closed) is logged:
        the thread sending it (execute(), a scheduler lane) goes on answering the others."""
        try:
            with self._ipc:
                sender.send(response, flags=pb().TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001
            log_error(ENCODER_MODEL, "a response could not be sent", exc)

    def _response(self, entry, logits=None, outcome=None, error=None):
        """The response of a request: its outputs from ``logits``, or the error of ``outcome``."""
        if logits is not None:
            try:
                outputs = {LOGITS: logits} if entry[2] is None else self._logits_and_calibrated(entry, logits)
                response = outputs_response(outputs)
            except Exception as exc:  # noqa: BLE001 - e.g. non-finite scores: refused, never a decision
                if entry[2] is not None and entry[2][4]:
                    self._count_failure(exc)
                response = error_response(exc, ENCODER_MODEL)
        elif outcome == CANCELLED:
            response = cancelled_response(ENCODER_MODEL)
        elif outcome == UNMEETABLE:  # the scheduler's estimate says the deadline cannot be met
            response = unavailable_response(ENCODER_MODEL, str(error))
        elif outcome in (EXPIRED, OVERLOADED, STOPPING):
            response = unavailable_response(ENCODER_MODEL, {EXPIRED: "Request timeout expired",
                                                            OVERLOADED: "Exceeds maximum queue size",
                                                            STOPPING: "model is stopping"}[outcome])
        else:
            response = error_response(error, ENCODER_MODEL)
        if outcome in (CANCELLED, EXPIRED, OVERLOADED, UNMEETABLE):
            self.metrics.add(outcome)
        return response

    def _count_failure(self, exc):
        if self.class_metrics is not None:
            self.class_metrics.failure(exc)

    def _logits_and_calibrated(self, entry, logits):
        outputs = self._calibrated(entry[2], logits)
        if entry[2][5]:
            outputs[LOGITS] = logits
        return outputs


class _Metrics:
    """Counters on Triton's metrics endpoint (``:8002/metrics``), label ``model``: rows the
    encoder ran, and requests it answered without computing them (cancelled, expired, overloaded,
    unmeetable: long rows that could not finish before the request's deadline).

    Each increment is a message to the server. ``add`` sends at once; ``defer`` (the runs inside
    ``execute()``, the common path) only counts, and what was deferred is sent before the next
    ``add`` (so a counter read after a worker's answer holds every earlier run) or when
    ``flush_if_due`` / the idle thread of :class:`opencc_cm_serving.metrics.FlushTimer` says so."""

    ROWS = "opencc_cm_encoder_rows_computed_total"
    DROPPED = "opencc_cm_encoder_requests_dropped_total"

    def __init__(self, model, ipc_lock, flush_interval_s: float = 1.0):
        utils = pb()
        self.metrics, self._ipc = {}, ipc_lock
        self._deferred: dict[str, int] = {}
        self._lock = threading.Lock()
        self.timer = FlushTimer(flush_interval_s)
        if not hasattr(utils, "MetricFamily"):  # the test stub of triton_python_backend_utils
            return
        rows = utils.MetricFamily(self.ROWS, "Encoder rows run through the graph", utils.MetricFamily.COUNTER)
        dropped = utils.MetricFamily(self.DROPPED, "Encoder requests answered without being computed, by reason",
                                     utils.MetricFamily.COUNTER)
        self.families = (rows, dropped)  # keep the families alive as long as their metrics
        self.metrics["rows"] = rows.Metric(labels={"model": model})
        for reason in (CANCELLED, EXPIRED, OVERLOADED, UNMEETABLE):
            self.metrics[reason] = dropped.Metric(labels={"model": model, "reason": reason})
        self.timer.start(self.flush, f"{model}-encoder-metrics")

    def add(self, name, value=1):
        self.flush()
        metric = self.metrics.get(name)
        if metric is not None:
            with self._ipc:
                metric.increment(value)

    def defer(self, name, value=1):
        if name in self.metrics:
            with self._lock:
                self._deferred[name] = self._deferred.get(name, 0) + value

    def flush(self):
        with self._lock:
            deferred, self._deferred = self._deferred, {}
        for name, value in deferred.items():
            with self._ipc:
                self.metrics[name].increment(value)

    def flush_if_due(self):
        if self.timer.due():
            self.flush()

    def close(self):
        self.timer.stop()
        self.flush()


def queue_settings(params: dict[str, str]) -> tuple[int, int]:
    """(default timeout in microseconds, 0 = none; most requests admitted and not yet answered)
    from the config parameters ``queue_timeout_us`` and ``max_queue_size``.

    Why parameters and not Triton's ``default_queue_policy``: in Triton 2.51 a model with a queue
    policy (a timeout, timeout overrides or a queue size) cannot prefetch, and its dynamic batcher
    then waits for a free instance on a condition whose wake-up is lost when the instance frees
    between the batcher's check and its wait (``WaitForPayloadSlotAvailable`` waits on a mutex
    of its own): the queued request waits out the batcher's default 500 ms. That happened
    whenever a response reached its client before the instance was marked free, i.e. under any
    concurrency and at one client once responses are returned from ``execute()``. Without a
    policy the batcher prefetches and never takes that wait.

    The cost: Triton's queue in front of ``execute()`` is unbounded. Both bounds hold for the
    requests admitted to the row scheduler (long rows, and any batch that arrives while work is
    pending in its lane), with Triton's messages ("Request timeout expired", "Exceeds maximum
    queue size"), counted from admission. A batch of short rows computed at once inside
    ``execute()`` is neither counted nor timed: under an overload of short prompts they wait in
    Triton's queue, bounded by the callers' concurrency, instead of being refused.
    BENCHMARKS.md, "Serving path under concurrency", has the measurements."""
    timeout_us = int(require(params, "queue_timeout_us", ENCODER_MODEL))
    max_queue = int(require(params, "max_queue_size", ENCODER_MODEL))
    if timeout_us < 0 or max_queue < 1:
        raise ValueError(f"{ENCODER_MODEL}: need queue_timeout_us >= 0 and max_queue_size >= 1, got {timeout_us} and "
                         f"{max_queue}")
    return timeout_us, max_queue


def _timeout_s(request):
    """The request's own timeout (client's ``timeout`` parameter, also carried by ensembles), seconds."""
    try:
        return (request.timeout() or 0) / 1e6 or None
    except AttributeError:
        return None
