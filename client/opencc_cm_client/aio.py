"""asyncio client over ``tritonclient.grpc.aio``: the same API as :class:`ClassifierClient`, as coroutines.

The calls come from :mod:`.planner`, as for the sync client; this class only sends them (in order,
at most ``max_concurrency`` in flight, each retried on UNAVAILABLE)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Sequence

import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from .gate import decision_for, escalation_for
from opencc_cm_contract import DEFAULT_PROFILE, IDS_ENSEMBLE, TEXT_ENSEMBLE
from opencc_cm_contract.names import prefixed
from .endpoints import grpc_target
from .options import ConnectionOptions
from .planner import Plan, plan_ids, plan_texts, plan_tokenized, routed_as_text
from .answers import Answer, answer_of
from .calls import PreparedCall, infer_arguments
from .errors import next_retry_delay
from .local_tokenizer import LocalTokenizer
from .results import Classification, GateDecision
from .server_info import ServerInfo, accept_server_info


class AsyncClassifierClient:
    def __init__(self, url: str | Sequence[str] = "127.0.0.1:8001", *, tokenizer: str | Path | None = None,
                 threshold_profile: str = DEFAULT_PROFILE, expected_model_version: str | None = None,
                 max_concurrency: int = 16, options: ConnectionOptions | None = None, model_prefix: str = ""):
        self.options = options or ConnectionOptions()
        self.threshold_profile = threshold_profile
        # which classifier of the server (deploy --model-prefix): "" = the default one
        self.text_ensemble, self.ids_ensemble = prefixed(TEXT_ENSEMBLE, model_prefix), prefixed(IDS_ENSEMBLE, model_prefix)
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

    async def server_info(self, model: str | None = None) -> ServerInfo:
        model = model or self.ids_ensemble
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

    async def is_ready(self, model: str | None = None) -> bool:
        """Whether the server is ready and serves ``model`` (default: this classifier's text
        ensemble); ``model=""`` asks about the server alone. One try, no retry."""
        kw = dict(headers=self.options.headers, client_timeout=self.options.timeout_s)
        model = self.text_ensemble if model is None else model
        try:
            return bool(await self._client.is_server_ready(**kw) and (not model or await self._client.is_model_ready(model, **kw)))
        except InferenceServerException:
            return False

    async def _send_one(self, call: PreparedCall) -> Answer:
        inputs, kwargs = infer_arguments(call, self.options, self.threshold_profile, grpcclient.InferInput,
                                         grpcclient.InferRequestedOutput)
        async with self._limit:
            result = await self._with_retries(lambda: self._client.infer(call.model, inputs, **kwargs))
        return answer_of(result)

    async def _send(self, calls: Sequence[PreparedCall]) -> list[Answer]:
        """Send every call in order, at most ``max_concurrency`` in flight; answers in call order."""
        return list(await asyncio.gather(*(self._send_one(c) for c in calls)))

    async def _execute(self, plan: Plan) -> list[Classification]:
        return plan.results(await self._send(plan.calls), self.threshold_profile)

    async def classify(self, texts: Sequence[str]) -> list[Classification]:
        """One result per text, in order (the same calls as :meth:`ClassifierClient.classify`)."""
        texts = list(texts)
        if not texts:
            return []
        if self.local_tokenizer is None:
            return await self._execute(plan_texts(texts, await self.server_info(self.text_ensemble)))
        info = await self.server_info(self.ids_ensemble)
        ids = self.local_tokenizer.encode(texts)
        text_info = await self.server_info(self.text_ensemble) if routed_as_text(ids, info) else None
        return await self._execute(plan_tokenized(texts, ids, info, text_info))

    async def classify_ids(self, rows: Sequence[Sequence[int]]) -> list[Classification]:
        rows = [list(map(int, r)) for r in rows]
        if not rows:
            return []
        return await self._execute(plan_ids(rows, await self.server_info(self.ids_ensemble)))

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
