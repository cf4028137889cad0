"""The model card's table measured the way BELLS-O measures an OpenCC system: one ``POST /check``
``{"text": prompt}`` per prompt from a thread pool, reading only ``decision`` (anything but
``allow`` = detected).

    python -m opencc_cm_http.evaluate http://127.0.0.1:8000 examples/labeled-sample.jsonl [--workers 8]

Latency is per request as the caller sees it; the input tokens are the real counts from the
trace (the prompt's tokens as the classifiers counted them), so the cost per 1M input tokens
is a real figure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from opencc_cm_client.cli import format_eval, non_negative_float, positive_int
from opencc_cm_client.evaluation import Sample, cost_summary, evaluate, read_samples
from opencc_cm_contract.latency import latency_summary
from opencc_cm_client.results import Classification


def check_once(base_url: str, text: str, timeout: float | None = None) -> tuple[dict, float]:
    """One ``POST /check`` (a non-2xx answer raises ``HTTPError``); the JSON answer and its latency in ms."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/check", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        answer = json.loads(reply.read())
    return answer, (time.perf_counter() - started) * 1000


def prompt_tokens(answer: dict) -> int:
    """The prompt's token count: every classifier stage counts the same text, so the largest."""
    return max((entry.get("input_tokens") or 0 for entry in answer["trace"]), default=0)


def evaluate_service(base_url: str, samples: list[Sample], workers: int = 8, dollars_per_hour: float = 2.39,
                     timeout: float | None = None) -> dict:
    """The card's table (per-category detection, FPR, latency with its 95% CI, cost per 1M input
    tokens) plus the answers, in sample order."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda s: check_once(base_url, s.text, timeout), samples))
    wall = time.perf_counter() - started
    results = [Classification(labels=(), flagged=a["decision"] != "allow", input_tokens=prompt_tokens(a))
               for a, _ in answers]
    report = evaluate(samples, results)
    report["latency"] = latency_summary([ms for _, ms in answers])
    report["cost"] = cost_summary(sum(r.input_tokens for r in results), wall, dollars_per_hour)
    report["batch_size"] = 1
    report["workers"] = workers
    report["decisions"] = [a["decision"] for a, _ in answers]
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_http.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the service's base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("data", help="labeled samples: .jsonl or .csv with 'text' and 'category' ('Benign' = negative)")
    p.add_argument("--workers", type=positive_int, default=8, help="requests in parallel (default 8)")
    p.add_argument("--dollars-per-hour", type=non_negative_float, default=2.39, help="machine price (default 2.39)")
    args = p.parse_args(argv)
    try:
        report = evaluate_service(args.url, read_samples(args.data), args.workers, args.dollars_per_hour)
    except (OSError, ValueError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(format_eval(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
