"""Synchronous client: text in, labeled results out, over ``tritonclient.grpc``.

    with ClassifierClient("127.0.0.1:8001", tokenizer="bundle/tokenizer.json") as client:
        results = client.classify(["how do I bake bread?"])

With a ``tokenizer`` the client tokenizes locally (checked identical to the server's) and
calls the ids ensemble; without one it sends raw text to the text ensemble. Labels,
thresholds and limits are read from the server. Which calls one ``classify`` makes is
decided by :mod:`.planner` (shared with the asyncio client); this class only sends them: in
order, at most ``max_concurrency`` of one ``classify``'s calls in flight, each retried on
UNAVAILABLE; results keep the input order. Safe to share between threads.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Sequence

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import DEFAULT_PROFILE, IDS_ENSEMBLE, TEXT_ENSEMBLE
from opencc_cm_contract.names import prefixed
from .planner import Plan, plan_ids, plan_texts, plan_tokenized, routed_as_text
from .endpoints import grpc_target
from .gate import gate_decision
from .options import ConnectionOptions
from .answers import Answer, answer_of
from .calls import PreparedCall, infer_arguments
from .errors import next_retry_delay
from .local_tokenizer import LocalTokenizer
from .results import Classification, GateDecision
from .server_info import ServerInfo, accept_server_info


class ClassifierClient:
    def __init__(self, url: str | Sequence[str] = "127.0.0.1:8001", *, tokenizer: str | Path | None = None,
                 threshold_profile: str = DEFAULT_PROFILE, expected_model_version: str | None = None,
                 max_concurrency: int = 4, options: ConnectionOptions | None = None, model_prefix: str = ""):
        self.url = url
        self.options = options or ConnectionOptions()
        self.threshold_profile = threshold_profile
        # which classifier of the server (deploy --model-prefix): "" = the default one
        self.text_ensemble, self.ids_ensemble = prefixed(TEXT_ENSEMBLE, model_prefix), prefixed(IDS_ENSEMBLE, model_prefix)
        self.expected_model_version = expected_model_version
        self.local_tokenizer = LocalTokenizer(tokenizer) if tokenizer else None
        self.max_concurrency = max(1, max_concurrency)
        self._client = grpcclient.InferenceServerClient(
            grpc_target(url), **self.options.client_kwargs(grpcclient.KeepAliveOptions))
        self._info: dict[str, ServerInfo] = {}
        self.retries = 0  # calls repeated after UNAVAILABLE, for monitoring

    # -- I/O ---------------------------------------------------------------------------------
    def _backoff(self, exc: InferenceServerException, delays) -> None:
        """Sleep before retrying ``exc``; raise its typed error when it must not be retried."""
        error, delay = next_retry_delay(exc, delays)
        if delay is None:
            raise error from None
        self.retries += 1
        time.sleep(delay)

    def _with_retries(self, fn, delays=None):
        delays = self.options.retry.delays() if delays is None else delays
        while True:
            try:
                return fn()
            except InferenceServerException as exc:
                self._backoff(exc, delays)

    def server_info(self, model: str | None = None) -> ServerInfo:
        """Labels, profiles and limits published by ``model`` (default: this classifier's ids
        ensemble), cached after the first call."""
        model = model or self.ids_ensemble
        if model not in self._info:
            def fetch():
                if not self._client.is_model_ready(model, headers=self.options.headers,
                                                   client_timeout=self.options.timeout_s):
                    raise InferenceServerException(f"model {model!r} is not ready", status="StatusCode.UNAVAILABLE")
                config = self._client.get_model_config(model, headers=self.options.headers, as_json=True,
                                                       client_timeout=self.options.timeout_s)["config"]
                meta = self._client.get_model_metadata(model, headers=self.options.headers, as_json=True,
                                                       client_timeout=self.options.timeout_s)
                return config, meta
            config, meta = self._with_retries(fetch)
            self._info[model] = accept_server_info(model, config, meta, self.expected_model_version,
                                                   self.threshold_profile, self.local_tokenizer)
        return self._info[model]

    def _arguments(self, call: PreparedCall):
        return infer_arguments(call, self.options, self.threshold_profile, grpcclient.InferInput,
                               grpcclient.InferRequestedOutput)

    def _start(self, call: PreparedCall, release) -> Future:
        """Put ``call`` on the wire now (``async_infer``); the future holds ``(result, error)``."""
        done: Future = Future()

        def finished(result, error):
            release()
            done.set_result((result, error))
        inputs, kwargs = self._arguments(call)
        try:
            self._client.async_infer(call.model, inputs, finished, **kwargs)
        except InferenceServerException as exc:
            finished(None, exc)
        return done

    def _finish(self, call: PreparedCall, done: Future) -> Answer:
        result, error = done.result()
        if error is not None:  # retried here, blocking, with what is left of the retry budget
            delays = self.options.retry.delays()
            self._backoff(error, delays)
            inputs, kwargs = self._arguments(call)
            result = self._with_retries(lambda: self._client.infer(call.model, inputs, **kwargs), delays)
        return answer_of(result)

    def _send(self, calls: Sequence[PreparedCall]) -> list[Answer]:
        """Send every call in order, at most ``max_concurrency`` of them in flight; answers in call order."""
        slots = threading.BoundedSemaphore(self.max_concurrency)
        pending = []
        for call in calls:
            slots.acquire()
            pending.append(self._start(call, slots.release))
        return [self._finish(call, done) for call, done in zip(calls, pending)]

    def _execute(self, plan: Plan) -> list[Classification]:
        return plan.results(self._send(plan.calls), self.threshold_profile)

    # -- public API ------------------------------------------------------------------------
    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """One result per text, in order. Raises a :class:`ClassifierError` subclass on failure."""
        texts = list(texts)
        if not texts:
            return []
        if self.local_tokenizer is None:
            return self._execute(plan_texts(texts, self.server_info(self.text_ensemble)))
        info = self.server_info(self.ids_ensemble)
        ids = self.local_tokenizer.encode(texts)
        text_info = self.server_info(self.text_ensemble) if routed_as_text(ids, info) else None
        return self._execute(plan_tokenized(texts, ids, info, text_info))

    def classify_ids(self, rows: Sequence[Sequence[int]]) -> list[Classification]:
        """For callers that tokenize themselves: one result per row of token ids, in order."""
        rows = [list(map(int, r)) for r in rows]
        if not rows:
            return []
        return self._execute(plan_ids(rows, self.server_info(self.ids_ensemble)))

    def gate(self, text: str) -> GateDecision:
        """Fail closed: escalate when flagged *and* whenever classification fails."""
        return gate_decision(lambda: self.classify([text])[0])

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
