"""A locked-down tritonserver configuration, and a canary that checks the service really answers.

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

Request size: Triton 2.51 offers no limit on received messages (no flag, no config field: its
gRPC server accepts messages up to 2 GiB, and gzip/deflate-compressed ones are inflated up to
that size before any model sees them; its HTTP server has no body limit either). So the
limit cannot be set on the server; ``max_request_bytes`` computes it from the deployed
repository (``max_batch_size x (max_text_bytes + 4)`` for texts, ``2 x max_batch_size x
max_tokens x 8`` for ids, plus 64 KiB of names and parameters) and the launcher prints it:
the ingress must refuse larger requests, counted after decompression (or refuse compressed
requests). See serving/README.md, "Threat model".

``canary(url, prefixes=...)``: one short text through ``<prefix>classify_text`` of each
classifier; readiness alone is not enough (a dead Python-backend stub leaves the server and
every model READY, see serving/README.md, "Failure modes"). ``python -m
opencc_cm_serving.launch --canary-interval S`` runs it every S seconds for every classifier
in the repository and stops the server (exit code 3) after ``--canary-failures`` failures in a
row, so that a supervisor restarts it (it also exits 3 at once when a stub process dies).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from opencc_cm_contract import FLAGGED, SCORES, TEXT, TEXT_ENSEMBLE
from opencc_cm_contract.limits import max_id_elements

ADMIN_PROTOCOLS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
KNOWN_PROTOCOLS = ("health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                   "statistics", "trace", "logging")
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton prepends this to the restricted-protocol key on gRPC
# Both used with fullmatch ("$" would also match before a final newline).
HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # lowercase: gRPC metadata keys are lowercase
ADMIN_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,256}")  # no ':', ',', '=' or spaces: they split Triton's flag
CANARY_TEXT = "canary: is the classifier answering?"


REQUEST_OVERHEAD_BYTES = 64 * 1024  # tensor names, shapes, parameters, protobuf framing


def max_request_bytes(max_batch_size: int, max_text_bytes: int, max_tokens: int) -> int:
    """Size of the largest inference request the models can accept (decompressed): what the
    ingress must cap, since Triton 2.51 has no received-message-size limit."""
    text = max_batch_size * (max_text_bytes + 4)      # BYTES elements carry a 4-byte length prefix
    ids = 2 * max_id_elements(max_batch_size, max_tokens) * 8  # input_ids + attention_mask, INT64
    return max(text, ids) + REQUEST_OVERHEAD_BYTES


def repository_classifiers(repository: str | Path) -> list[str]:
    """The model prefixes of the classifiers deployed in ``repository`` ("" = the unprefixed one):
    every folder ``<prefix>classify_text`` or ``<prefix>classify_ids`` holding a generated
    ``config.pbtxt``, ``<prefix>`` a valid model prefix (``deploy --model-prefix``)."""
    from opencc_cm_contract import ENSEMBLES
    from opencc_cm_contract.names import MODEL_PREFIX

    found = set()
    for config in Path(repository).glob("*/config.pbtxt"):
        folder = config.parent.name
        for ensemble in ENSEMBLES:
            prefix = folder[:-len(ensemble)]
            if folder.endswith(ensemble) and MODEL_PREFIX.fullmatch(prefix):
                found.add(prefix)
    return sorted(found)


def repository_request_cap(repository: str | Path) -> int | None:
    """``max_request_bytes`` of a deployed repository (its generated configs): the largest over
    every classifier in it (``repository_classifiers``); None if none has filled configs."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from opencc_cm_contract import IDS_ENSEMBLE, TOKENIZER_MODEL
    from opencc_cm_contract.metadata import PARAM_MAX_TOKENS

    caps = []
    for prefix in repository_classifiers(repository):
        configs = {}
        for model in (TOKENIZER_MODEL, IDS_ENSEMBLE):
            path = Path(repository) / f"{prefix}{model}" / "config.pbtxt"
            if path.is_file():
                configs[model] = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
        if len(configs) < 2:
            continue
        try:
            tokenizer, ids = configs[TOKENIZER_MODEL], configs[IDS_ENSEMBLE]
            caps.append(max_request_bytes(tokenizer.max_batch_size,
                                          int(tokenizer.parameters["max_text_bytes"].string_value),
                                          int(ids.parameters[PARAM_MAX_TOKENS].string_value)))
        except (KeyError, ValueError):
            continue
    return max(caps) if caps else None


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
        if self.allow_http:
            args.append(f"--http-restricted-api={group}")
        else:
            args.append("--allow-http=false")
        return args

    def client_kwargs(self) -> dict:
        """``tritonclient.grpc.InferenceServerClient`` settings for the launcher's own probe."""
        kwargs = dict(ssl=True, root_certificates=str(self.ca_cert) if self.ca_cert else None)
        if self.mutual:
            kwargs.update(private_key=str(self.probe_key or self.server_key),
                          certificate_chain=str(self.probe_cert or self.server_cert))
        return kwargs

    def server_kwargs(self) -> dict:
        """Keyword arguments for ``launch.TritonServer``: ``TritonServer(repo, **cfg.server_kwargs())``."""
        return dict(model_control_mode="none", extra_args=self.tritonserver_args(),
                    client_kwargs=self.client_kwargs(), probe_headers=self.grpc_admin_headers,
                    http=self.allow_http)


def canary(url: str, client_kwargs: dict | None = None, timeout_s: float = 5.0,
           prefixes: Sequence[str] = ("",)) -> tuple[bool, str]:
    """``(ok, why)``: one short text through ``<prefix>classify_text`` of each classifier in
    ``prefixes`` ("" = the unprefixed one); ok only when every answer is well formed (finite
    scores in [0, 1], one flagged value); ``why`` names the first classifier that failed. Never raises."""
    for prefix in prefixes:
        ok, why = _canary_one(url, client_kwargs, timeout_s, prefix + TEXT_ENSEMBLE)
        if not ok:
            return False, f"{prefix + TEXT_ENSEMBLE}: {why}"
    return True, "ok (" + ", ".join(p + TEXT_ENSEMBLE for p in prefixes) + ")"


def served_classifiers(url: str, client_kwargs: dict | None = None, timeout_s: float = 5.0) -> list[str] | None:
    """The model prefixes of the classifiers the server's repository index lists (each
    ``<prefix>classify_text``); None when the index cannot be read (a restricted protocol)."""
    import tritonclient.grpc as grpcclient

    from opencc_cm_contract.names import MODEL_PREFIX

    try:
        with grpcclient.InferenceServerClient(url, **(client_kwargs or {})) as client:
            models = client.get_model_repository_index(client_timeout=timeout_s).models
    except Exception:  # noqa: BLE001 - restricted, unreachable: the caller falls back and says so
        return None
    found = {m.name[:-len(TEXT_ENSEMBLE)] for m in models if m.name.endswith(TEXT_ENSEMBLE)}
    return sorted(p for p in found if MODEL_PREFIX.fullmatch(p)) or None


def _canary_one(url: str, client_kwargs: dict | None, timeout_s: float, model: str) -> tuple[bool, str]:
    import tritonclient.grpc as grpcclient

    try:
        with grpcclient.InferenceServerClient(url, **(client_kwargs or {})) as client:
            data = np.array([[CANARY_TEXT.encode("utf-8")]], dtype=np.object_)
            tensor = grpcclient.InferInput(TEXT, list(data.shape), "BYTES")
            tensor.set_data_from_numpy(data)
            result = client.infer(model, [tensor], client_timeout=timeout_s)
            scores, flagged = result.as_numpy(SCORES), result.as_numpy(FLAGGED)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed canary
        status = getattr(exc, "status", lambda: None)()
        message = getattr(exc, "message", lambda: None)() or str(exc)
        return False, f"{status or type(exc).__name__}: {message}"
    if scores is None or flagged is None or scores.ndim != 2 or scores.shape[0] != 1 or flagged.shape != (1, 1):
        return False, "malformed answer"
    if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
        return False, "scores not in [0, 1]"
    return True, "ok"


def _prefix(text: str) -> str:
    import argparse

    from opencc_cm_contract.names import MODEL_PREFIX

    if not MODEL_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: lowercase letters and digits ending with '_' (e.g. jailbreak_)")
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m opencc_cm_serving.production canary --url HOST:PORT [--ca CA] [--cert C --key K]
    [--model-repository DIR | --model-prefix P ...]``: exit 0 when every classifier checked
    classifies, 1 otherwise (a liveness probe that sees dead stubs on the ensembles' path).
    Without either option: every classifier the repository index lists, or the unprefixed one
    where the index is restricted (the output says so)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m opencc_cm_serving.production")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("canary", help="classify one short text; exit 0 if the answer is well formed")
    c.add_argument("--url", default="127.0.0.1:8001")
    c.add_argument("--ca", help="CA certificate (TLS)")
    c.add_argument("--cert", help="client certificate (mTLS)")
    c.add_argument("--key", help="client private key (mTLS)")
    c.add_argument("--timeout", type=float, default=5.0, help="seconds per classifier")
    which = c.add_mutually_exclusive_group()
    which.add_argument("--model-repository", help="check every classifier deployed in this repository folder")
    which.add_argument("--model-prefix", action="append", type=_prefix,
                       help="check this classifier (repeatable; '' = the unprefixed one). Default: every "
                            "classifier in the server's repository index, or the unprefixed one where the index "
                            "is restricted (production)")
    args = p.parse_args(argv)
    kwargs = {}
    if args.ca:
        kwargs = dict(ssl=True, root_certificates=args.ca, private_key=args.key, certificate_chain=args.cert)
    if args.model_repository:
        prefixes = repository_classifiers(args.model_repository)
        if not prefixes:
            print(f"canary: FAILED: no deployed classifier in {args.model_repository}", file=sys.stderr)
            return 1
    elif args.model_prefix:
        prefixes = args.model_prefix
    else:
        prefixes = served_classifiers(args.url, kwargs, timeout_s=args.timeout)
    note = ""
    if prefixes is None:  # the index is restricted (or unreadable): the unprefixed one, said so
        prefixes, note = [""], "; the repository index is not readable here: --model-repository checks every classifier"
    ok, why = canary(args.url, kwargs, timeout_s=args.timeout, prefixes=prefixes)
    print(f"canary: {'ok' if ok else 'FAILED'}: {why}{note}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
