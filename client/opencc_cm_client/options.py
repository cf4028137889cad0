"""Connection settings shared by the sync and asyncio clients."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .endpoints import service_config


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter, on UNAVAILABLE only (and what ``errors.from_status``
    reports as such: a model reloading, a call the stopping server cancelled). Classification is
    idempotent. Never retried: INVALID_ARGUMENT and the client mistakes Triton answers INTERNAL
    (proto/CLIENT_CONTRACT.md, "Errors"), any other INTERNAL, deadlines, overload."""

    attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def delays(self):
        delay = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield delay * (0.5 + random.random() / 2)
            delay = min(delay * self.multiplier, self.max_backoff_s)


@dataclass(frozen=True)
class ConnectionOptions:
    """gRPC settings. ``timeout_s`` is the per-call deadline. TLS: ``ssl=True`` with
    ``root_certificates`` (CA file); mTLS adds ``private_key`` and ``certificate_chain``.
    ``headers`` go with every call (e.g. auth metadata, or the key for restricted protocols).
    ``compression``: None, "gzip" or "deflate". ``load_balancing``: gRPC's policy across the
    replicas of a multi-endpoint or ``dns:///`` target (see ``endpoints``)."""

    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    headers: dict[str, str] | None = None
    compression: str | None = None
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    max_reconnect_backoff_ms: int = 1_000  # gRPC's default (120 s) would outlast every retry
    load_balancing: str = "round_robin"  # across replicas (endpoints.grpc_target); or "pick_first"

    def channel_args(self) -> list[tuple[str, int | str]]:
        return [
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            # At most 2 pings while no data flows (gRPC's default): a server with Triton's default
            # ping policy sends GOAWAY "too_many_pings" at the third, failing the calls in flight
            # (an unlimited pinger lost every call longer than 3 keepalive periods).
            ("grpc.http2.max_pings_without_data", 2),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms),
            ("grpc.service_config", service_config(self.load_balancing)),
            ("grpc.enable_retries", 0),  # the client retries itself (RetryPolicy), once per call
        ]

    def client_kwargs(self, keepalive_cls=None) -> dict:
        """Keyword arguments for ``tritonclient.grpc(.aio).InferenceServerClient``."""
        del keepalive_cls  # the channel args below carry the keepalive settings
        return dict(ssl=self.ssl, root_certificates=self.root_certificates, private_key=self.private_key,
                    certificate_chain=self.certificate_chain, channel_args=self.channel_args())
