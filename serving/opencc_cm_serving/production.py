"""A locked-down tritonserver configuration.

``ProductionConfig`` turns a few settings into tritonserver flags plus what the launcher's
readiness probe needs to pass them (TLS client settings, the admin header):

- model control off (``--model-control-mode=none``, the launcher's default): no client can
  load, unload or replace a model; Triton answers UNAVAILABLE "explicit model load / unload
  is not allowed".
- the admin protocols (``model-repository``, ``shared-memory``, ``statistics``, ``trace``,
  ``logging``) restricted behind a key: ``--grpc-restricted-protocol=<protocols>:<header>=<key>``.
  gRPC clients send the metadata ``triton-grpc-protocol-<header>: <key>``; without it Triton
  answers UNAVAILABLE "This protocol is restricted, expecting header ...". ``health``,
  ``metadata``, ``model-config`` and ``inference`` stay open: the client library reads labels,
  profiles and limits from the model config.
- TLS on gRPC (``--grpc-use-ssl``; ``mutual`` adds client certificates signed by ``ca_cert``).
- HTTP off (Triton's HTTP endpoint has no TLS; health probes use gRPC health or the canary).
  ``allow_http=True`` keeps it, with the same admin restriction (``--http-restricted-api``).
- ``--disable-auto-complete-config`` (the committed configs are complete: nothing is inferred
  from model files) and no header forwarding into request parameters.

The key reaches tritonserver on its command line (Triton has no other way to take it): run
the server where other local users cannot read ``/proc/<pid>/cmdline`` (its own container).

What the ingress must cap: :mod:`.ingress`. The canary, and this module's command line
(``python -m opencc_cm_serving.production canary``, the pods' liveness probe): :mod:`.canary`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .launch import ServerSettings

ADMIN_PROTOCOLS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
KNOWN_PROTOCOLS = ("health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                   "statistics", "trace", "logging")
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton prepends this to the restricted-protocol key on gRPC
# Both used with fullmatch ("$" would also match before a final newline).
HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # lowercase: gRPC metadata keys are lowercase
ADMIN_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,256}")  # no ':', ',', '=' or spaces: they split Triton's flag


class ProductionConfigError(ValueError):
    """A production setting that cannot be used as given."""


@dataclass(frozen=True)
class ProductionConfig:
    server_cert: Path
    server_key: Path
    admin_key: str
    ca_cert: Path | None = None        # verifies the server for the probe; with ``mutual``, signs client certs
    mutual: bool = False               # require client certificates (mTLS)
    probe_cert: Path | None = None     # the probe's client certificate under mTLS (default: the server's)
    probe_key: Path | None = None
    admin_header: str = "admin-key"
    restricted: tuple[str, ...] = ADMIN_PROTOCOLS
    allow_http: bool = False

    def __post_init__(self):
        for name in ("server_cert", "server_key"):
            if getattr(self, name) is None or not Path(getattr(self, name)).is_file():
                raise ProductionConfigError(f"{name} {getattr(self, name)} is not a file")
        if self.mutual and (self.ca_cert is None or not Path(self.ca_cert).is_file()):
            raise ProductionConfigError("mutual TLS needs ca_cert (the CA that signs client certificates)")
        if not HEADER_NAME.fullmatch(self.admin_header or ""):
            raise ProductionConfigError(f"admin header {self.admin_header!r}: lowercase letters, digits and '-'")
        if not ADMIN_KEY.fullmatch(self.admin_key or ""):
            raise ProductionConfigError("admin key: 16 to 256 characters from [A-Za-z0-9._~+/-] "
                                        "(e.g. `openssl rand -hex 32`)")
        unknown = [p for p in self.restricted if p not in KNOWN_PROTOCOLS]
        if unknown or not self.restricted:
            raise ProductionConfigError(f"restricted protocols {unknown or '()'}: choose from {KNOWN_PROTOCOLS}")
        if "inference" in self.restricted or "health" in self.restricted:
            raise ProductionConfigError("inference and health stay open (the client and the probes use them)")

    @classmethod
    def from_files(cls, *, admin_key_file: str | Path, **kwargs) -> ProductionConfig:
        """The key from a file (one line), so that it never appears on the launcher's command line."""
        try:
            key = Path(admin_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProductionConfigError(f"cannot read admin key file: {exc}") from None
        return cls(admin_key=key, **kwargs)

    @property
    def grpc_admin_headers(self) -> dict[str, str]:
        """Metadata a gRPC client sends to use the restricted protocols."""
        return {GRPC_HEADER_PREFIX + self.admin_header: self.admin_key}

    def tritonserver_args(self) -> list[str]:
        group = f"{','.join(self.restricted)}:{self.admin_header}={self.admin_key}"
        args = [
            "--disable-auto-complete-config",
            "--log-verbose=0",
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={Path(self.server_cert).resolve()}",
            f"--grpc-server-key={Path(self.server_key).resolve()}",
            f"--grpc-restricted-protocol={group}",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
        ]
        if self.mutual:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={Path(self.ca_cert).resolve()}"]
        if self.allow_http:  # whether HTTP runs at all is ServerSettings.http
            args.append(f"--http-restricted-api={group}")
        return args

    def client_kwargs(self) -> dict:
        """``tritonclient.grpc.InferenceServerClient`` settings for the launcher's own probe."""
        kwargs = dict(ssl=True, root_certificates=str(self.ca_cert) if self.ca_cert else None)
        if self.mutual:
            kwargs.update(private_key=str(self.probe_key or self.server_key),
                          certificate_chain=str(self.probe_cert or self.server_cert))
        return kwargs

    def server_settings(self, base: ServerSettings | None = None) -> ServerSettings:
        """``base`` (ports, address, log...) locked down: ``TritonServer(repo, cfg.server_settings(base))``."""
        return replace(base or ServerSettings(), model_control_mode="none", extra_args=tuple(self.tritonserver_args()),
                       client_kwargs=self.client_kwargs(), probe_headers=self.grpc_admin_headers,
                       http=self.allow_http)


def main(argv: list[str] | None = None) -> int:
    """``python -m opencc_cm_serving.production canary ...``: the canary's command line (:func:`.canary.main`)."""
    from .canary import main as canary_main

    return canary_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
