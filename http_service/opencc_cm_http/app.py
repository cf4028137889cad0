"""The OpenCC-compatible HTTP service (FastAPI, async) in front of Triton.

- ``POST /check`` ``{"text": str, "mode": "block"|"annotate"|null}`` -> OpenCC's
  ``{decision, reason, output_text, rephrased, trace}``. A body that is not JSON is a 400; a
  missing or non-string ``text``, an unknown field or a body that is not an object a 422; an
  invalid ``mode`` a 400; a body over ``max_body_bytes`` a 413: each ``{"detail": ..., "field": ...}``
  naming what was wrong. Every answer is JSON.
- At most ``max_in_flight`` classifications at once; one more is answered at once with a 503
  that still carries a fail-closed decision (the action, never ``allow``) and ``Retry-After``.
- Each request has ``deadline_s`` for all its stages; the gRPC calls carry the same deadline,
  so Triton drops a request that waited past it.
- ``GET /health``: 200 ``{"status": "ok"}`` while Triton serves every configured classifier,
  else 503 naming what is not ready; ``GET /live``: 200 while the process answers (liveness).
  ``GET /config``: OpenCC's view of the stages.
  ``GET /metrics``: Prometheus text.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from opencc_cm_client.options import ConnectionOptions
from opencc_cm_contract import DEFAULT_MAX_TEXT_BYTES

from .config import ACTIONS, ServiceConfig
from .pipeline import Pipeline, terminal

log = logging.getLogger("opencc_cm_http")

DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_DEADLINE_S = 10.0
# A text may be DEFAULT_MAX_TEXT_BYTES of UTF-8; JSON escapes can make its encoding up to 6x longer.
DEFAULT_MAX_BODY_BYTES = 6 * DEFAULT_MAX_TEXT_BYTES + 4096
HEALTH_TIMEOUT_S = 2.0
REQUEST_FIELDS = ("text", "mode")
CHECK_PATH = "/check"


class BadRequest(Exception):
    def __init__(self, status: int, field: str | None, detail: str):
        super().__init__(detail)
        self.status, self.field, self.detail = status, field, detail


def parse_check_request(body: bytes) -> tuple[str, str | None]:
    """``(text, mode)`` from a ``/check`` body, or :class:`BadRequest` naming the field."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, None, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(422, None, f"request body must be a JSON object with a field 'text', got {type(data).__name__}")
    for key in data:
        if key not in REQUEST_FIELDS:
            raise BadRequest(422, key, f"unknown field {key!r} (accepted: {', '.join(REQUEST_FIELDS)})")
    if "text" not in data:
        raise BadRequest(422, "text", "field 'text' is required")
    text = data["text"]
    if not isinstance(text, str):
        raise BadRequest(422, "text", f"field 'text' must be a string, got {type(text).__name__}")
    mode = data.get("mode")
    if mode is not None and mode not in ACTIONS:
        raise BadRequest(400, "mode", f"field 'mode': invalid mode {mode!r}; use 'block' or 'annotate' (or null)")
    return text, mode


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("opencc_http_requests", "POST /check answers by outcome (allow, block, annotate, "
                                "invalid, overloaded)", ["outcome"], registry=self.registry)
        self.latency = Histogram("opencc_http_check_seconds", "POST /check time in the service, classified requests",
                                 registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge("opencc_http_in_flight", "classifications in progress", registry=self.registry)
        self.failures = Counter("opencc_http_stage_failures", "stages that failed (answered fail closed)", ["stage"],
                                registry=self.registry)
        self.tokens = Counter("opencc_http_input_tokens", "input tokens classified, per stage", ["stage"],
                              registry=self.registry)

    def record(self, answer: dict) -> None:
        self.requests.labels(answer["decision"]).inc()
        for entry in answer["trace"]:
            if entry["outcome"] == "error":
                self.failures.labels(entry["stage"]).inc()
            if entry.get("input_tokens"):
                self.tokens.labels(entry["stage"]).inc(entry["input_tokens"])


async def _read_body(scope, receive, limit: int) -> bytes | None:
    """The request body (None: the client disconnected first); :class:`BadRequest` 413 over ``limit``."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BadRequest(413, None, f"request body of {value.decode()} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, None, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send, status: int, content: dict, headers: tuple = ()) -> None:
    """``content`` as JSON, encoded as Starlette's JSONResponse encodes it."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class OpenCCService:
    """The service's ASGI app: ``POST /check`` answered here directly (every classified request
    takes this path, so it skips the web framework's middleware, routing and request objects);
    everything else (/health, /live, /config, /metrics, lifespan, 404s) by the FastAPI app ``api``."""

    def __init__(self, api: FastAPI, check):
        self.api, self.state, self._check = api, api.state, check

    @property
    def paths(self) -> set[str]:
        """Every path the service answers (the probes and the fleet's manifests name some)."""
        return {CHECK_PATH} | {route.path for route in self.api.routes}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == CHECK_PATH:
            if scope["method"] != "POST":
                await _send_json(send, 405, {"detail": "Method Not Allowed"}, ((b"allow", b"POST"),))
                return
            started = False

            async def tracked(message):
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                await self._check(scope, receive, tracked)
            except Exception as exc:  # noqa: BLE001 - a bug outside the pipeline still answers JSON
                log.exception("POST /check failed")
                if started:
                    raise
                await _send_json(send, 500, {"detail": f"internal error: {type(exc).__name__}"})
            return
        await self.api(scope, receive, send)


def create_app(config: ServiceConfig, url: str | Sequence[str], *, options: ConnectionOptions | None = None,
               max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, deadline_s: float = DEFAULT_DEADLINE_S,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> OpenCCService:
    """The app; its gRPC clients (one per configured classifier) live from startup to shutdown."""
    from opencc_cm_client.aio import AsyncClassifierClient

    if max_in_flight < 1 or deadline_s <= 0:
        raise ValueError(f"max_in_flight must be >= 1 and deadline_s > 0, got {max_in_flight}, {deadline_s}")
    options = options or ConnectionOptions(timeout_s=deadline_s)
    metrics = Metrics()
    state = {"in_flight": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clients = {s.stage: AsyncClassifierClient(url, threshold_profile=s.threshold_profile, options=options,
                                                  model_prefix=s.model_prefix, max_concurrency=max_in_flight)
                   for s in config.stages}

        def classifier(client):
            async def classify(text: str):
                return (await client.classify([text]))[0]
            return classify

        app.state.clients = clients
        app.state.pipeline = Pipeline(config, {stage: classifier(c) for stage, c in clients.items()})
        for stage, client in clients.items():  # learn labels and thresholds now, not on the first request
            try:
                await asyncio.wait_for(client.server_info(client.text_ensemble), HEALTH_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - not ready yet: /health says so, requests fail closed
                log.warning("%s: Triton not ready yet (%s); /health answers 503 until it is", stage, exc)
        try:
            yield
        finally:
            for client in clients.values():
                await client.close()

    app = FastAPI(title="opencc-cm OpenCC-compatible service", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.metrics = metrics

    async def check(scope, receive, send):
        try:
            body = await _read_body(scope, receive, max_body_bytes)
            if body is None:
                return
            text, mode = parse_check_request(body)
        except BadRequest as exc:
            metrics.requests.labels("invalid").inc()
            await _send_json(send, exc.status, {"detail": exc.detail, "field": exc.field})
            return
        action = mode or config.default_action
        if state["in_flight"] >= max_in_flight:
            metrics.requests.labels("overloaded").inc()
            answer = terminal(action, text, f"overloaded: {max_in_flight} requests are already being classified "
                                            "(fail closed; retry later)", [])
            await _send_json(send, 503, {**answer, "detail": answer["reason"]}, ((b"retry-after", b"1"),))
            return
        state["in_flight"] += 1
        metrics.in_flight.inc()
        started = time.perf_counter()
        status = 200
        try:
            deadline = asyncio.get_running_loop().time() + deadline_s
            answer = await app.state.pipeline.check(text, mode, deadline)
        except Exception as exc:  # noqa: BLE001 - a bug here must still answer JSON, and never allow
            log.exception("check failed")
            metrics.requests.labels(action).inc()
            answer = terminal(action, text, f"internal error, so the input is treated as flagged (fail closed): "
                                            f"{type(exc).__name__}: {exc}", [])
            status = 500
        finally:
            state["in_flight"] -= 1
            metrics.in_flight.dec()
        if status == 200:
            metrics.latency.observe(time.perf_counter() - started)
            metrics.record(answer)
        await _send_json(send, status, answer)

    @app.get("/health")
    async def health(request: Request):
        clients = request.app.state.clients

        async def ready(client) -> bool:
            try:
                return await asyncio.wait_for(client.is_ready(), HEALTH_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a timeout or any failure is "not ready"
                return False

        answers = await asyncio.gather(*(ready(c) for c in clients.values()))
        missing = [f"{stage} ({c.text_ensemble})" for (stage, c), ok in zip(clients.items(), answers) if not ok]
        if missing:
            return JSONResponse({"status": "unavailable", "detail": f"Triton does not serve: {', '.join(missing)}"},
                                status_code=503)
        return {"status": "ok"}

    @app.get("/live")
    async def live():
        """The process answers (a liveness probe: unlike /health, it does not depend on Triton)."""
        return {"status": "ok"}

    @app.get("/config")
    async def get_config():
        return config.opencc_view()

    @app.get("/metrics")
    async def get_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return OpenCCService(app, check)
