"""``opencc-cm`` command line: check, eval, calibrate against a Triton server.

Exit status of ``check``: 0 nothing flagged, 1 at least one text flagged, 2 error (a gate
treats 2 like 1: escalate). ``eval`` and ``calibrate`` exit 0 on success, 2 on error. Every
error - a bad argument, an unreadable file, a server that refuses - is one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from opencc_cm_contract import label_flags
from opencc_cm_contract.bundle_format import PROFILE_NAME
from opencc_cm_contract.names import MODEL_PREFIX

from .errors import ClassifierError
from .evaluation import (calibrate_for_fpr, calibrate_for_recall, calibrate_to_match, cost_summary, decision_agreement,
                         evaluate, expected_metrics, profile_file, read_samples)
from opencc_cm_contract.latency import latency_summary

from .options import ConnectionOptions
from .results import results_table
from .server_info import ServerContractError

EXIT_CLEAN, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


def _client(args, *, url: str | None = None, model_prefix: str | None = None, profile: str | None = None):
    """The client the common options describe; ``url``, ``model_prefix`` and ``profile`` override
    theirs (a second deployment, e.g. calibrate's reference)."""
    from .client import ClassifierClient

    options = ConnectionOptions(timeout_s=args.timeout, ssl=args.ssl, root_certificates=args.root_certificates,
                                private_key=args.private_key, certificate_chain=args.certificate_chain,
                                headers=dict(args.header) if args.header else None, compression=args.compression)
    return ClassifierClient(url or args.url, tokenizer=args.tokenizer, threshold_profile=profile or args.profile,
                            options=options, model_prefix=args.model_prefix if model_prefix is None else model_prefix)


def _progress(total: int, what: str) -> tqdm:
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    return tqdm(total=total, unit="prompt", desc=what, file=sys.stderr, disable=None, leave=False)


def cmd_check(args) -> int:
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise CliError("no text given (arguments or stdin)")
    with _client(args) as client:
        results = client.classify(texts)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        print(results_table(texts, results))
    return EXIT_FLAGGED if any(r.flagged for r in results) else EXIT_CLEAN


def _classify_timed(client, samples, batch_size: int):
    """Sequential requests of ``batch_size`` (1 = the model card's setting); per-request latency."""
    results, latencies = [], []
    started = time.perf_counter()
    with _progress(len(samples), "eval") as bar:
        for i in range(0, len(samples), batch_size):
            chunk = [s.text for s in samples[i:i + batch_size]]
            t0 = time.perf_counter()
            results.extend(client.classify(chunk))
            latencies.append((time.perf_counter() - t0) * 1000)
            bar.update(len(chunk))
    return results, latencies, time.perf_counter() - started


def cmd_eval(args) -> int:
    samples = read_samples(args.data)
    with _client(args) as client:
        info = client.server_info()
        client.classify([samples[0].text])  # warm the connection outside the measurement
        results, latencies, wall = _classify_timed(client, samples, args.batch_size)
    report = evaluate(samples, results)
    report["latency"] = latency_summary(latencies)
    report["cost"] = cost_summary(sum(r.input_tokens for r in results), wall, args.dollars_per_hour)
    report["server"] = {"url": args.url, "model": results[0].model_name, "version": results[0].model_version,
                        "checkpoint": info.checkpoint, "precision": info.precision, "threshold_profile": args.profile}
    report["batch_size"] = args.batch_size
    print(format_eval(report))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.report}")
    return EXIT_CLEAN


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_eval(report: dict) -> str:
    c, lat, cost = report["confusion"], report["latency"], report["cost"]
    lines = ["| Category | n | Detection rate |", "|---|---:|---:|"]
    for cat, entry in report["per_category"].items():
        lines.append(f"| {cat} | {entry['n']} | {_fmt(entry['detection'])} |")
    lines.append(f"| Benign (FPR) | {report['benign']['n']} | {_fmt(report['fpr'])} |")
    lines.append("")
    lines.append(f"Overall: detection {_fmt(report['detection'])}, FPR {_fmt(report['fpr'])}, accuracy "
                 f"{_fmt(report['accuracy'])}, precision {_fmt(report['precision'])}, F1 {_fmt(report['f1'])} "
                 f"(TP/FP/FN/TN = {c['tp']}/{c['fp']}/{c['fn']}/{c['tn']})")
    lines.append(f"Latency (batch {report['batch_size']}): mean {lat['mean_ms']:.1f} ms, 95% CI "
                 f"[{lat['ci95_ms'][0]:.1f}, {lat['ci95_ms'][1]:.1f}] ms, p50/p95 {lat['p50_ms']:.1f}/{lat['p95_ms']:.1f} ms")
    per_m = cost["dollars_per_million_input_tokens"]
    lines.append(f"Input tokens {cost['input_tokens']}, cost ${cost['total_dollars']:.4f} total at "
                 f"${cost['dollars_per_hour']}/h, " + (f"${per_m:.2f} per 1M input tokens" if per_m else "n/a per 1M"))
    return "\n".join(lines)


def _scores_of(client, texts, what: str):
    """``(server info, (texts, labels) scores, fired flags)`` for ``texts``, in server-sized batches."""
    info = client.server_info()
    results = []
    with _progress(len(texts), what) as bar:
        for i in range(0, len(texts), info.max_batch_size):
            chunk = texts[i:i + info.max_batch_size]
            results.extend(client.classify(chunk))
            bar.update(len(chunk))
    scores = np.array([[r.score for r in res.labels] for res in results], dtype=np.float32)
    fired = np.array([[r.fired for r in res.labels] for res in results], dtype=bool)
    return info, scores, fired


def cmd_calibrate(args) -> int:
    matching = args.match_url is not None
    samples = read_samples(args.data, labeled=not matching)
    texts = [s.text for s in samples]
    with _client(args) as client:
        info, scores, _ = _scores_of(client, texts, "calibrate")
    current = np.array(info.thresholds(args.profile))
    if matching:
        with _client(args, url=args.match_url, model_prefix=args.match_model_prefix, profile=args.match_profile) as ref:
            ref_info, _, ref_fired = _scores_of(ref, texts, "reference")
        if tuple(ref_info.labels) != tuple(info.labels):
            raise CliError(f"--match-url serves labels {list(ref_info.labels)}, this server {list(info.labels)}: "
                           "not the same classifier")
        thresholds = calibrate_to_match(scores, ref_fired, ref_info.thresholds(args.match_profile))
        goal = f"the decisions of {args.match_url} (profile {args.match_profile!r})"
    elif args.target_fpr is not None:
        thresholds = calibrate_for_fpr(info.labels, scores, np.array([s.harmful for s in samples]), args.target_fpr)
        goal = f"benign FPR <= {args.target_fpr}"
    else:
        thresholds = calibrate_for_recall(info.labels, scores, [s.category for s in samples], args.target_recall, current)
        goal = f"per-label recall >= {args.target_recall}"
    Path(args.out).write_text(json.dumps(profile_file(args.name, info.labels, thresholds), indent=2) + "\n")
    print(f"profile {args.name!r} ({goal}) written to {args.out}")
    print(f"{'label':<24} {'current':>9} {'new':>9}")
    for label, a, b in zip(info.labels, current, thresholds):
        print(f"{label:<24} {a:>9.4f} {b:>9.4f}")
    if matching:
        before = decision_agreement(label_flags(scores, current), ref_fired)
        after = decision_agreement(label_flags(scores, thresholds), ref_fired)
        print(f"on these {len(samples)} texts, against the reference: labels that disagree "
              f"{before['label_disagreements']} -> {after['label_disagreements']}, texts whose decision differs "
              f"{before['text_decisions_flipped']} -> {after['text_decisions_flipped']}")
    if all(s.category is not None for s in samples):
        harmful = np.array([s.harmful for s in samples])
        before, after = expected_metrics(scores, harmful, current), expected_metrics(scores, harmful, thresholds)
        print(f"on these {len(samples)} samples: detection {_fmt(before['detection'])} -> {_fmt(after['detection'])}, "
              f"FPR {_fmt(before['fpr'])} -> {_fmt(after['fpr'])}")
    print(f"deploy it with: python -m opencc_cm_serving.deploy ... --profiles {args.out}  "
          f"(then request with threshold_profile={args.name})")
    return EXIT_CLEAN


def cmd_serve_http(args) -> int:
    """Run ``opencc_cm_http``'s command line: the web stack is a package of its own (it depends on
    this one), imported only here so that the client stays light."""
    import importlib

    try:
        serve = importlib.import_module("opencc_cm_http.cli")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] not in ("opencc_cm_http", "fastapi", "uvicorn", "yaml", "prometheus_client"):
            raise
        raise CliError(f"serve-http needs the opencc-cm-http package ({exc.name} is not installed): "
                       "pip install -e http_service (make setup installs it)") from None
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    return serve.main(rest)


class CliError(ValueError):
    """A problem with what the user asked for, found by the CLI itself."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2 (like every other error of this CLI)."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every argument's help ends with its default, where it has one."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _number(kind, low=None, high=None, low_open=False, name="a number"):
    """An argparse type: ``kind`` (int or float), finite, within the given bounds."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not finite")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high}")
        return value
    return parse


positive_int = _number(int, 1, name="an integer")
positive_float = _number(float, 0, low_open=True)
non_negative_float = _number(float, 0)
fraction = _number(float, 0, 1, low_open=True)  # (0, 1]


def header(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` gRPC metadata: keys of letters, digits, ``-_.`` (sent lowercase, as HTTP/2 wants),
    not gRPC's reserved ``grpc-`` prefix nor binary ``-bin`` keys; printable ASCII values."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    if not re.fullmatch(r"[0-9a-z_.-]+", key) or key.startswith("grpc-") or key.endswith("-bin"):
        raise argparse.ArgumentTypeError(f"header key {key!r}: use letters, digits, '-', '_', '.' "
                                         "(not the reserved 'grpc-' prefix nor a binary '-bin' key)")
    if any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise argparse.ArgumentTypeError(f"header {key!r}: the value must be printable ASCII")
    return key, value


def readable_file(text: str) -> str:
    path = Path(text)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
    return text


def output_file(text: str) -> str:
    """A file to write at the end: checked now, so that a long run does not fail at its last step."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: folder {str(path.parent)!r} does not exist")
    return text


def profile_name(text: str) -> str:
    if not PROFILE_NAME.fullmatch(text):  # the name deploy accepts in a profiles file
        raise argparse.ArgumentTypeError(f"{text!r}: a letter, then letters, digits and _ (at most 64)")
    return text


def model_prefix(text: str) -> str:
    if not MODEL_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: lowercase letters and digits ending with '_' (e.g. jailbreak_)")
    return text


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--url", default="127.0.0.1:8001",
                        help="Triton gRPC endpoint HOST:PORT, or dns:///NAME:PORT for every replica behind a name")
    common.add_argument("--model-prefix", type=model_prefix, default="",
                        help="which classifier of the server: the prefix it was deployed with (deploy --model-prefix)")
    common.add_argument("--tokenizer", type=readable_file,
                        help="the model's tokenizer.json: tokenize locally (else the server does)")
    common.add_argument("--profile", default="default", help="threshold profile to apply (published by the server)")
    common.add_argument("--timeout", type=positive_float, default=30.0, help="per-call deadline, seconds (> 0)")
    common.add_argument("--ssl", action="store_true", help="use TLS")
    common.add_argument("--root-certificates", type=readable_file, help="TLS: CA certificate file (PEM)")
    common.add_argument("--private-key", type=readable_file, help="mutual TLS: client private key (PEM)")
    common.add_argument("--certificate-chain", type=readable_file, help="mutual TLS: client certificate (PEM)")
    common.add_argument("--header", type=header, action="append", metavar="KEY=VALUE",
                        help="gRPC metadata sent with every call (repeatable), e.g. authorization=Bearer...")
    common.add_argument("--compression", choices=["gzip", "deflate"], help="compress requests")
    p = _Parser(prog="opencc-cm", description=__doc__, formatter_class=_Formatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{check,eval,calibrate,serve-http}")
    c = sub.add_parser("check", parents=[common], formatter_class=_Formatter,
                       help="classify texts (arguments or stdin lines)")
    c.add_argument("texts", nargs="*", help="texts to classify; none: one per line of stdin")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("eval", parents=[common], formatter_class=_Formatter,
                       help="the model card's table on a labeled JSONL/CSV set")
    e.add_argument("data", help="labeled samples: .jsonl or .csv with 'text' and 'category' ('Benign' = negative)")
    e.add_argument("--batch-size", type=positive_int, default=1, help="prompts per request (>= 1)")
    e.add_argument("--dollars-per-hour", type=non_negative_float, default=2.39,
                   help="machine price for the cost figures (>= 0)")
    e.add_argument("--report", type=output_file, help="write the JSON report here")
    e.set_defaults(func=cmd_eval)
    k = sub.add_parser("calibrate", parents=[common], formatter_class=_Formatter,
                       help="compute a threshold profile on a labeled set, or to match another deployment's decisions")
    k.add_argument("data", help="samples: .jsonl or .csv with 'text' and 'category' ('Benign' = negative); "
                                "with --match-url 'category' may be absent")
    goal = k.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-fpr", type=fraction, help="highest benign false-positive rate, in (0, 1]")
    goal.add_argument("--target-recall", type=fraction, help="lowest per-label recall, in (0, 1]")
    goal.add_argument("--match-url", metavar="HOST:PORT",
                      help="a reference deployment of the same classifier (e.g. fp32, for an int8 or bf16 one): "
                           "per label, the threshold whose flags agree most with the reference's on these texts")
    k.add_argument("--match-model-prefix", type=model_prefix, default="",
                   help="with --match-url: which classifier of the reference server (deploy --model-prefix)")
    k.add_argument("--match-profile", default="default", help="with --match-url: the reference's threshold profile")
    k.add_argument("--name", type=profile_name, default="recalibrated",
                   help="profile name (a letter, then letters, digits, _)")
    k.add_argument("--out", type=output_file, required=True, help="profiles JSON file for the server (deploy --profiles)")
    k.set_defaults(func=cmd_calibrate)
    h = sub.add_parser("serve-http", add_help=False, help="OpenCC's HTTP API (POST /check) in front of Triton "
                       "(needs the opencc-cm-http package; `opencc-cm serve-http --help` for its options)")
    h.add_argument("args", nargs=argparse.REMAINDER, help="serve-http's own options (opencc_cm_http)")
    h.set_defaults(func=cmd_serve_http)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve-http"]:  # its options belong to opencc_cm_http: hand them over untouched
        argv = ["serve-http", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ClassifierError, ServerContractError, ValueError, OSError) as exc:
        print(f"opencc-cm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"opencc-cm {args.command}: error: interrupted", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - one line and exit 2, never a traceback that reads as "flagged"
        print(f"opencc-cm {args.command}: error: unexpected {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
