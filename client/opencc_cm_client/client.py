"""Synchronous client: text in, labeled results out, over ``tritonclient.grpc``.

    with ClassifierClient("127.0.0.1:8001", tokenizer="bundle/tokenizer.json") as client:
        results = client.classify(["how do I bake bread?"])

With a ``tokenizer`` the client tokenizes locally (checked identical to the server's) and
calls the ids ensemble; without one it sends raw text to the text ensemble. Labels,
thresholds and limits are read from the server. Large inputs are split into the server's
max batch and sent concurrently; results keep the input order.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import DEFAULT_PROFILE, IDS_ENSEMBLE, TEXT_ENSEMBLE
from .endpoints import grpc_target
from .options import ConnectionOptions
from .requests import (OUTPUTS, LocalTokenizer, PreparedCall, accept_server_info, chunks, ids_call,
                       infer_tensors, next_retry_delay, parse_outputs, request_parameters, text_call)
from .gate import gate_decision
from .results import Classification, GateDecision
from .server_info import ServerInfo


class ClassifierClient:
    def __init__(self, url: str | Sequence[str] = "127.0.0.1:8001", *, tokenizer: str | Path | None = None,
                 threshold_profile: str = DEFAULT_PROFILE, expected_model_version: str | None = None,
                 max_concurrency: int = 4, options: ConnectionOptions | None = None):
        self.url = url
        self.options = options or ConnectionOptions()
        self.threshold_profile = threshold_profile
        self.expected_model_version = expected_model_version
        self.local_tokenizer = LocalTokenizer(tokenizer) if tokenizer else None
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency))
        self._client = grpcclient.InferenceServerClient(
            grpc_target(url), **self.options.client_kwargs(grpcclient.KeepAliveOptions))
        self._info: dict[str, ServerInfo] = {}
        self.retries = 0  # calls repeated after UNAVAILABLE, for monitoring

    # -- plumbing --------------------------------------------------------------------------
    def _with_retries(self, fn):
        delays = self.options.retry.delays()
        while True:
            try:
                return fn()
            except InferenceServerException as exc:
                error, delay = next_retry_delay(exc, delays)
            if delay is None:
                raise error
            self.retries += 1
            time.sleep(delay)

    def server_info(self, model: str = IDS_ENSEMBLE) -> ServerInfo:
        """Labels, profiles and limits published by ``model`` (cached after the first call)."""
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

    def _infer(self, call: PreparedCall, info: ServerInfo) -> list[Classification]:
        inputs, outputs = infer_tensors(call, grpcclient.InferInput, grpcclient.InferRequestedOutput)

        def once():
            return self._client.infer(call.model, inputs, outputs=outputs, headers=self.options.headers,
                                      parameters=request_parameters(self.threshold_profile),
                                      client_timeout=self.options.timeout_s,
                                      compression_algorithm=self.options.compression)
        result = self._with_retries(once)
        version = result.get_response().model_version
        return parse_outputs({n: result.as_numpy(n) for n in OUTPUTS}, info, self.threshold_profile,
                             call.model, version, call.rows)

    # -- public API ------------------------------------------------------------------------
    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """One result per text, in order. Raises a :class:`ClassifierError` subclass on failure."""
        texts = list(texts)
        if not texts:
            return []
        if self.local_tokenizer is None:
            info = self.server_info(TEXT_ENSEMBLE)
            calls = [text_call(texts[a:b]) for a, b in chunks(len(texts), info.max_batch_size)]
            return self._run(calls, info)
        info = self.server_info(IDS_ENSEMBLE)
        ids = self.local_tokenizer.encode(texts)
        if info.long_input_policy == "windows" and any(len(r) > info.max_tokens for r in ids):
            # Only the server's tokenizer model windows long input: send those texts as text.
            return self._mixed(texts, ids, info)
        return self.classify_ids(ids)

    def classify_ids(self, rows: Sequence[Sequence[int]]) -> list[Classification]:
        """For callers that tokenize themselves: one result per row of token ids, in order."""
        rows = [list(map(int, r)) for r in rows]
        if not rows:
            return []
        info = self.server_info(IDS_ENSEMBLE)
        calls = [ids_call(rows[a:b], info, a) for a, b in chunks(len(rows), info.max_batch_size)]
        return self._run(calls, info)

    def _mixed(self, texts, ids, info) -> list[Classification]:
        long_rows = [i for i, r in enumerate(ids) if len(r) > info.max_tokens]
        short_rows = [i for i in range(len(texts)) if i not in set(long_rows)]
        out: list[Classification | None] = [None] * len(texts)
        for i, res in zip(short_rows, self.classify_ids([ids[i] for i in short_rows]) if short_rows else []):
            out[i] = res
        text_info = self.server_info(TEXT_ENSEMBLE)
        calls = [text_call([texts[i] for i in long_rows[a:b]]) for a, b in chunks(len(long_rows), text_info.max_batch_size)]
        for i, res in zip(long_rows, self._run(calls, text_info)):
            out[i] = res
        return out  # type: ignore[return-value]

    def _run(self, calls: list[PreparedCall], info: ServerInfo) -> list[Classification]:
        if len(calls) == 1:
            return self._infer(calls[0], info)
        results: list[Classification] = []
        for part in self._pool.map(lambda c: self._infer(c, info), calls):
            results.extend(part)
        return results

    def gate(self, text: str) -> GateDecision:
        """Fail closed: escalate when flagged *and* whenever classification fails."""
        return gate_decision(lambda: self.classify([text])[0])

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

