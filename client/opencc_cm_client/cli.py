"""``opencc-cm`` command line: check, eval, calibrate against a Triton server.

Exit status of ``check``: 0 nothing flagged, 1 at least one text flagged, 2 error (a gate
treats 2 like 1: escalate). ``eval`` and ``calibrate`` exit 0 on success, 2 on error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import ClassifierError
from .evaluation import (calibrate_for_fpr, calibrate_for_recall, cost_summary, evaluate, expected_metrics,
                         latency_summary, profile_file, read_samples)
from .options import ConnectionOptions
from .server_info import ServerContractError

EXIT_CLEAN, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


def _client(args):
    from .client import ClassifierClient

    headers = dict(h.split("=", 1) for h in args.header) if args.header else None
    options = ConnectionOptions(timeout_s=args.timeout, ssl=args.ssl, root_certificates=args.root_certificates,
                                private_key=args.private_key, certificate_chain=args.certificate_chain,
                                headers=headers, compression=args.compression)
    return ClassifierClient(args.url, tokenizer=args.tokenizer, threshold_profile=args.profile, options=options)


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / total)
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.1f} prompts/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _table(texts, results) -> str:
    lines = []
    for text, res in zip(texts, results):
        short = text if len(text) <= 60 else text[:57] + "..."
        verdict = "FLAGGED" if res.flagged else "ok"
        lines.append(f"{verdict:<8} {res.input_tokens:>5} tok  {short!r}")
        for r in res.labels:
            mark = "*" if r.fired else " "
            lines.append(f"    {mark} {r.label:<24} {r.score:.4f}  (threshold {r.threshold:.4f})")
    return "\n".join(lines)


def cmd_check(args) -> int:
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        print("check: no text given (arguments or stdin)", file=sys.stderr)
        return EXIT_ERROR
    with _client(args) as client:
        results = client.classify(texts)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        print(_table(texts, results))
    return EXIT_FLAGGED if any(r.flagged for r in results) else EXIT_CLEAN


def _classify_timed(client, samples, batch_size: int):
    """Sequential requests of ``batch_size`` (1 = the model card's setting); per-request latency."""
    results, latencies = [], []
    started = time.perf_counter()
    for i in range(0, len(samples), batch_size):
        chunk = [s.text for s in samples[i:i + batch_size]]
        t0 = time.perf_counter()
        results.extend(client.classify(chunk))
        latencies.append((time.perf_counter() - t0) * 1000)
        _progress(len(results), len(samples), started)
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
                        "checkpoint": info.checkpoint, "threshold_profile": args.profile}
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


def cmd_calibrate(args) -> int:
    samples = read_samples(args.data)
    with _client(args) as client:
        info = client.server_info()
        started = time.perf_counter()
        results = []
        for i in range(0, len(samples), info.max_batch_size):
            results.extend(client.classify([s.text for s in samples[i:i + info.max_batch_size]]))
            _progress(len(results), len(samples), started)
    scores = np.array([[r.score for r in res.labels] for res in results], dtype=np.float32)
    harmful = np.array([s.harmful for s in samples])
    current = np.array(info.thresholds(args.profile))
    if args.target_fpr is not None:
        thresholds = calibrate_for_fpr(info.labels, scores, harmful, args.target_fpr)
        goal = f"benign FPR <= {args.target_fpr}"
    else:
        thresholds = calibrate_for_recall(info.labels, scores, [s.category for s in samples], args.target_recall, current)
        goal = f"per-label recall >= {args.target_recall}"
    before, after = expected_metrics(scores, harmful, current), expected_metrics(scores, harmful, thresholds)
    Path(args.out).write_text(json.dumps(profile_file(args.name, info.labels, thresholds), indent=2) + "\n")
    print(f"profile {args.name!r} ({goal}) written to {args.out}")
    print(f"{'label':<24} {'current':>9} {'new':>9}")
    for label, a, b in zip(info.labels, current, thresholds):
        print(f"{label:<24} {a:>9.4f} {b:>9.4f}")
    print(f"on these {len(samples)} samples: detection {_fmt(before['detection'])} -> {_fmt(after['detection'])}, "
          f"FPR {_fmt(before['fpr'])} -> {_fmt(after['fpr'])}")
    print(f"deploy it with: python -m opencc_cm_serving.deploy ... --profiles {args.out}  "
          f"(then request with threshold_profile={args.name})")
    return EXIT_CLEAN


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint")
    common.add_argument("--tokenizer", help="the model's tokenizer.json: tokenize locally (else the server does)")
    common.add_argument("--profile", default="default", help="threshold profile to apply")
    common.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    common.add_argument("--ssl", action="store_true")
    common.add_argument("--root-certificates")
    common.add_argument("--private-key")
    common.add_argument("--certificate-chain")
    common.add_argument("--header", action="append", help="KEY=VALUE metadata sent with every call")
    common.add_argument("--compression", choices=["gzip", "deflate"])
    p = argparse.ArgumentParser(prog="opencc-cm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", parents=[common], help="classify texts (arguments or stdin lines)")
    c.add_argument("texts", nargs="*")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("eval", parents=[common], help="the model card's table on a labeled JSONL/CSV set")
    e.add_argument("data")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--dollars-per-hour", type=float, default=2.39, help="machine price for the cost figures")
    e.add_argument("--report", help="write the JSON report here")
    e.set_defaults(func=cmd_eval)
    k = sub.add_parser("calibrate", parents=[common], help="compute a threshold profile on a labeled set")
    k.add_argument("data")
    goal = k.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-fpr", type=float)
    goal.add_argument("--target-recall", type=float)
    k.add_argument("--name", default="recalibrated", help="profile name (letters, digits, _)")
    k.add_argument("--out", required=True, help="profiles JSON file for the server")
    k.set_defaults(func=cmd_calibrate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ClassifierError, ServerContractError, ValueError, OSError) as exc:
        print(f"{args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
