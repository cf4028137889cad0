"""``opencc-cm serve-http``: OpenCC's HTTP API in front of a Triton server (or several replicas).

    opencc-cm serve-http --url 127.0.0.1:8001 --config config.local.yaml --host 127.0.0.1 --port 8000

Before it listens it reads the YAML strictly and asks Triton for each configured classifier:
a bad file, an unknown threshold profile, a ready server that does not serve a configured
classifier or one that publishes no usable metadata exits 2 with one line on stderr. A Triton
that is not reachable yet is only a warning: the service starts, ``/health`` answers 503 and
every request fails closed until Triton is ready.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from opencc_cm_client.cli import EXIT_ERROR, _Formatter, _Parser, positive_float, positive_int, readable_file
from opencc_cm_client.endpoints import EndpointError, grpc_target
from opencc_cm_client.errors import InvalidRequestError, UnavailableError
from opencc_cm_client.options import ConnectionOptions
from opencc_cm_client.server_info import ServerContractError

from .app import DEFAULT_DEADLINE_S, DEFAULT_MAX_IN_FLIGHT, HEALTH_TIMEOUT_S, create_app
from .config import ConfigError, ServiceConfig, load_config

PROG = "opencc-cm serve-http"


def endpoints(text: str) -> str | list[str]:
    """``HOST:PORT``, ``dns:///NAME:PORT``, or several ``IP:PORT`` separated by commas (replicas)."""
    url: str | list[str] = text
    if "," in text and not text.startswith(("ipv4:", "ipv6:")):
        url = [part.strip() for part in text.split(",") if part.strip()]
    try:
        grpc_target(url)
    except EndpointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return url


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} must be <= 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    p.add_argument("--url", type=endpoints, default="127.0.0.1:8001",
                   help="Triton gRPC endpoint HOST:PORT, several IP:PORT separated by commas (replicas, balanced), "
                        "or dns:///NAME:PORT")
    p.add_argument("--config", required=True, help="OpenCC pipeline YAML (config.cm-only.yaml, config.local.yaml, ...)")
    p.add_argument("--host", help="address to listen on (default: the YAML's host, else 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port to listen on (default: the YAML's port, else 8000)")
    p.add_argument("--max-in-flight", type=positive_int, default=DEFAULT_MAX_IN_FLIGHT,
                   help="classifications at once; beyond, 503")
    p.add_argument("--deadline", type=positive_float, default=DEFAULT_DEADLINE_S,
                   help="seconds per request for all its stages; past it, fail closed")
    p.add_argument("--ssl", action="store_true", help="TLS to Triton")
    p.add_argument("--root-certificates", type=readable_file, help="TLS: CA certificate file (PEM)")
    p.add_argument("--private-key", type=readable_file, help="mutual TLS: client private key (PEM)")
    p.add_argument("--certificate-chain", type=readable_file, help="mutual TLS: client certificate (PEM)")
    p.add_argument("--access-log", action="store_true", help="log every request (off: it costs time per request)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's and the service's log level")
    return p


async def check_stages(config: ServiceConfig, url, options: ConnectionOptions) -> list[str]:
    """Ask Triton for each stage's classifier. A wrong profile or unusable metadata raises
    :class:`ConfigError`; a server that cannot be reached is returned as a warning."""
    from opencc_cm_client.aio import AsyncClassifierClient

    warnings = []
    for stage in config.stages:
        async with AsyncClassifierClient(url, threshold_profile=stage.threshold_profile, options=options,
                                         model_prefix=stage.model_prefix) as client:
            try:
                await asyncio.wait_for(client.server_info(client.text_ensemble), HEALTH_TIMEOUT_S * 5)
            except (ServerContractError, InvalidRequestError, ValueError) as exc:
                raise ConfigError(f"{stage.stage} ({client.text_ensemble}): {exc}") from None
            except (UnavailableError, asyncio.TimeoutError, TimeoutError) as exc:
                if await client.is_ready(""):  # the server is up and has loaded all it will: a wrong name
                    raise ConfigError(f"{stage.stage}: Triton is ready but does not serve {client.text_ensemble} "
                                      f"(model_prefix {stage.model_prefix!r})") from None
                warnings.append(f"{stage.stage} ({client.text_ensemble}): Triton not ready ({exc or 'timed out'}); "
                                "/health answers 503 and requests fail closed until it is")
    return warnings


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        options = ConnectionOptions(timeout_s=args.deadline, ssl=args.ssl, root_certificates=args.root_certificates,
                                    private_key=args.private_key, certificate_chain=args.certificate_chain)
        for warning in asyncio.run(check_stages(config, args.url, options)):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    except (ConfigError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(config, args.url, options=options, max_in_flight=args.max_in_flight, deadline_s=args.deadline)
    host, port = args.host or config.host, args.port or config.port
    print(f"{PROG}: OpenCC API on http://{host}:{port} -> Triton {args.url}", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, access_log=args.access_log, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
