"""A canary that checks the service really answers, classifier by classifier.

``canary(url, prefixes=...)``: one short text through ``<prefix>classify_text`` of each
classifier; readiness alone is not enough (a dead Python-backend stub leaves the server and
every model READY, see serving/README.md, "Failure modes"). ``python -m
opencc_cm_serving.launch --canary-interval S`` runs it every S seconds for every classifier
in the repository and stops the server (exit code 3) after ``--canary-failures`` failures in a
row, so that a supervisor restarts it (it also exits 3 at once when a stub process dies).

``python -m opencc_cm_serving.production canary ...`` (the liveness probe of the fleet's pods) runs
:func:`main`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from opencc_cm_contract import FLAGGED, SCORES, TEXT, TEXT_ENSEMBLE

from .ingress import repository_classifiers

CANARY_TEXT = "canary: is the classifier answering?"


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


def main(argv: list[str] | None = None, prog: str = "python -m opencc_cm_serving.production") -> int:
    """``python -m opencc_cm_serving.production canary --url HOST:PORT [--ca CA] [--cert C --key K]
    [--model-repository DIR | --model-prefix P ...]``: exit 0 when every classifier checked
    classifies, 1 otherwise (a liveness probe that sees dead stubs on the ensembles' path).
    Without either option: every classifier the repository index lists, or the unprefixed one
    where the index is restricted (the output says so)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog=prog)
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
