"""asyncio client over ``tritonclient.grpc.aio``: the same API as :class:`ClassifierClient`, as coroutines."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Sequence

import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from .gate import decision_for, escalation_for
from opencc_cm_contract import DEFAULT_PROFILE, IDS_ENSEMBLE, TEXT_ENSEMBLE
from .endpoints import grpc_target
from .options import ConnectionOptions
from .requests import (OUTPUTS, LocalTokenizer, PreparedCall, accept_server_info, chunks, ids_call,
                       infer_tensors, next_retry_delay, parse_outputs, request_parameters, text_call)
from .results import Classification, GateDecision
from .server_info import ServerInfo


class AsyncClassifierClient:
    def __init__(self, url: str | Sequence[str] = "127.0.0.1:8001", *, tokenizer: str | Path | None = None,
                 threshold_profile: str = DEFAULT_PROFILE, expected_model_version: str | None = None,
                 max_concurrency: int = 16, options: ConnectionOptions | None = None):
        self.options = options or ConnectionOptions()
        self.threshold_profile = threshold_profile
        self.expected_model_version = expected_model_version
        self.local_tokenizer = LocalTokenizer(tokenizer) if tokenizer else None
        self._limit = asyncio.Semaphore(max(1, max_concurrency))
        self._client = aioclient.InferenceServerClient(grpc_target(url),
                                                      **self.options.client_kwargs(grpcclient.KeepAliveOptions))
        self._info: dict[str, ServerInfo] = {}
        self.retries = 0  # calls repeated after UNAVAILABLE, for monitoring

    async def _with_retries(self, fn):
        delays = self.options.retry.delays()
        while True:
            try:
                return await fn()
            except InferenceServerException as exc:
                error, delay = next_retry_delay(exc, delays)
            if delay is None:
                raise error
            self.retries += 1
            await asyncio.sleep(delay)

    async def server_info(self, model: str = IDS_ENSEMBLE) -> ServerInfo:
        if model not in self._info:
            async def fetch():
                kw = dict(headers=self.options.headers, client_timeout=self.options.timeout_s)
                if not await self._client.is_model_ready(model, **kw):
                    raise InferenceServerException(f"model {model!r} is not ready", status="StatusCode.UNAVAILABLE")
                config = (await self._client.get_model_config(model, as_json=True, **kw))["config"]
                meta = await self._client.get_model_metadata(model, as_json=True, **kw)
                return config, meta
            config, meta = await self._with_retries(fetch)
            self._info[model] = accept_server_info(model, config, meta, self.expected_model_version,
                                                   self.threshold_profile, self.local_tokenizer)
        return self._info[model]

    async def _infer(self, call: PreparedCall, info: ServerInfo) -> list[Classification]:
        inputs, outputs = infer_tensors(call, grpcclient.InferInput, grpcclient.InferRequestedOutput)

        async def once():
            return await self._client.infer(call.model, inputs, outputs=outputs, headers=self.options.headers,
                                            parameters=request_parameters(self.threshold_profile),
                                            client_timeout=self.options.timeout_s,
                                            compression_algorithm=self.options.compression)
        async with self._limit:
            result = await self._with_retries(once)
        version = result.get_response().model_version
        return parse_outputs({n: result.as_numpy(n) for n in OUTPUTS}, info, self.threshold_profile,
                             call.model, version, call.rows)

    async def _run(self, calls, info) -> list[Classification]:
        parts = await asyncio.gather(*(self._infer(c, info) for c in calls))
        return [r for part in parts for r in part]

    async def classify(self, texts: Sequence[str]) -> list[Classification]:
        texts = list(texts)
        if not texts:
            return []
        if self.local_tokenizer is None:
            info = await self.server_info(TEXT_ENSEMBLE)
            return await self._run([text_call(texts[a:b]) for a, b in chunks(len(texts), info.max_batch_size)], info)
        info = await self.server_info(IDS_ENSEMBLE)
        ids = self.local_tokenizer.encode(texts)
        if info.long_input_policy == "windows" and any(len(r) > info.max_tokens for r in ids):
            text_info = await self.server_info(TEXT_ENSEMBLE)
            out = []
            for text, row in zip(texts, ids):  # rare path: keep it simple and ordered
                out.extend(await (self._run([text_call([text])], text_info) if len(row) > info.max_tokens
                                  else self.classify_ids([row])))
            return out
        return await self.classify_ids(ids)

    async def classify_ids(self, rows: Sequence[Sequence[int]]) -> list[Classification]:
        rows = [list(map(int, r)) for r in rows]
        if not rows:
            return []
        info = await self.server_info(IDS_ENSEMBLE)
        return await self._run([ids_call(rows[a:b], info, a) for a, b in chunks(len(rows), info.max_batch_size)], info)

    async def gate(self, text: str) -> GateDecision:
        """Fail closed: escalate when flagged *and* whenever classification fails."""
        try:
            result = (await self.classify([text]))[0]
        except Exception as exc:  # noqa: BLE001 - a gate must not let any failure through
            return escalation_for(exc)
        return decision_for(result)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
