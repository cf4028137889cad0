"""Fairness benchmark: a probe client's short-prompt latency while other
clients send max-length inputs continuously, on the real Triton server.

``python -m opencc_cm_benchmarks.fairness_benchmark --bundle BUNDLE [--max-tokens N]
[--templates model_repository] [--long-clients 4] [--seconds 30] [--out result.json]``

1. one max-length row alone (median of 3): ``t_long``;
2. the probe alone (a ~20-token request through ``classify_ids`` every 20 ms): unloaded p50 / p99;
3. ``--long-clients`` closed-loop clients each sending one max-length row through
   ``classify_ids`` after another, and the probe: loaded p50 / p99 / max, long rows done.

Target: loaded p99 < 2 x t_long + unloaded p99, and no probe refused (a probe whose
queue timeout passed behind long rows counts as missed). ``--max-tokens`` writes a copy
of the bundle with a smaller ``max_tokens`` (the graph's sequence axis is dynamic), so that
one max-length row takes about a second on a small CPU box. ``--templates`` deploys another
checkout's model repository (e.g. main's, for the "before" figure; the ids path only).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from opencc_cm_contract import ATTENTION_MASK, IDS_ENSEMBLE, INPUT_IDS
from opencc_cm_contract.bundle_format import ClassifierManifest


def _inputs(ids: np.ndarray) -> list:
    import tritonclient.grpc as grpcclient

    out = []
    for name, array in ((INPUT_IDS, ids), (ATTENTION_MASK, np.ones_like(ids))):
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def probe(url: str, seconds: float, vocab: int, errors: list, interval: float = 0.02) -> list[float]:
    """Latency (s) of a short request every ``interval`` seconds (one at a time); refusals are
    appended to ``errors`` (and their time counted as latency)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    rng = np.random.default_rng(0)
    out = []
    with grpcclient.InferenceServerClient(url) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ids = rng.integers(0, vocab, (1, 20)).astype(np.int64)
            start = time.monotonic()
            try:
                client.infer(IDS_ENSEMBLE, _inputs(ids), client_timeout=120)
            except InferenceServerException as exc:  # e.g. its queue timeout passed behind long rows
                errors.append(f"{exc.status()}: {str(exc.message())[-80:]}")
            out.append(time.monotonic() - start)  # a refusal counts with the time it took
            time.sleep(max(0.0, interval - (time.monotonic() - start)))
    return out


def long_client(url: str, stop: threading.Event, max_tokens: int, vocab: int, seed: int, done: queue.Queue,
                refused: queue.Queue) -> None:
    """Sends one max-length row after another until ``stop``. A refusal (e.g. the queue timeout
    passing while other long rows run: "Request timeout expired") is recorded and the next row
    goes at once, so the load never lets up."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    rng = np.random.default_rng(seed)
    with grpcclient.InferenceServerClient(url) as client:
        while not stop.is_set():
            ids = rng.integers(0, vocab, (1, max_tokens)).astype(np.int64)
            start = time.monotonic()
            try:
                client.infer(IDS_ENSEMBLE, _inputs(ids), client_timeout=600)
                done.put(time.monotonic() - start)
            except InferenceServerException as exc:
                refused.put(f"{exc.status()}: {str(exc.message())[-80:]}")


def run(args: argparse.Namespace) -> dict:
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    import os

    load_start = os.getloadavg()[0]
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="opencc-fairness-"))
    try:
        bundle = Path(args.bundle)
        if args.max_tokens:
            copy = work / "bundle"
            shutil.copytree(bundle, copy)
            dataclasses.replace(ClassifierManifest.read(copy), max_tokens=args.max_tokens).write(copy)
            bundle = copy
        spec = ClassifierManifest.read(bundle)
        vocab = min(spec.vocab_size, 1000)
        code = deploy_main(["--bundle", str(bundle), "--repository", args.templates, "--output", str(work / "repo"),
                            "--target", "python-ort", *args.deploy_arg])
        if code:
            raise SystemExit(f"deploy failed ({code})")
        with TritonServer(work / "repo", ServerSettings(log_path=work / "tritonserver.log", ready_timeout=300)) as server:
            url = server.grpc_url
            import tritonclient.grpc as grpcclient

            with grpcclient.InferenceServerClient(url) as client:
                ids = np.random.default_rng(1).integers(0, vocab, (1, spec.max_tokens)).astype(np.int64)
                client.infer(IDS_ENSEMBLE, _inputs(ids), client_timeout=600)  # warm
                times = []
                for _ in range(3):
                    start = time.monotonic()
                    client.infer(IDS_ENSEMBLE, _inputs(ids), client_timeout=600)
                    times.append(time.monotonic() - start)
            t_long = statistics.median(times)
            alone_errors, loaded_errors = [], []
            alone = probe(url, args.seconds / 3, vocab, alone_errors)
            stop, done, refused = threading.Event(), queue.Queue(), queue.Queue()
            clients = [threading.Thread(target=long_client, daemon=True,
                                        args=(url, stop, spec.max_tokens, vocab, 10 + i, done, refused))
                       for i in range(args.long_clients)]
            for c in clients:
                c.start()
            time.sleep(min(2.0, t_long))  # the long clients are busy before the probe starts
            loaded = probe(url, args.seconds, vocab, loaded_errors)
            stop.set()
            for c in clients:
                c.join()
            long_times = []
            while not done.empty():
                long_times.append(done.get())
            refusals: dict[str, int] = {}
            while not refused.empty():
                why = refused.get()
                refusals[why] = refusals.get(why, 0) + 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "bundle": str(args.bundle), "max_tokens": spec.max_tokens, "templates": args.templates,
        "deploy_args": args.deploy_arg, "long_clients": args.long_clients, "seconds": args.seconds,
        "t_long_s": t_long,
        "probe_alone": {"n": len(alone), "p50_ms": 1000 * _pct(alone, 50), "p99_ms": 1000 * _pct(alone, 99),
                        "errors": alone_errors},
        "probe_loaded": {"n": len(loaded), "p50_ms": 1000 * _pct(loaded, 50), "p99_ms": 1000 * _pct(loaded, 99),
                         "max_ms": 1000 * max(loaded), "errors": loaded_errors,
                         "slowest_ms": sorted((round(1000 * x, 1) for x in loaded), reverse=True)[:20]},
        "started_utc": started_utc, "command": " ".join(["python -m opencc_cm_benchmarks.fairness_benchmark", *sys.argv[1:]]),
        "long_requests_done": len(long_times), "long_p50_s": _pct(long_times, 50), "long_requests_refused": refusals,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0], "cpus": os.cpu_count()},
    }
    result["target_ms"] = 1000 * (2 * t_long) + result["probe_alone"]["p99_ms"]
    result["target_met"] = result["probe_loaded"]["p99_ms"] < result["target_ms"] and not loaded_errors
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_benchmarks.fairness_benchmark",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--max-tokens", type=int, default=0, help="serve this max_tokens (copy of the bundle)")
    p.add_argument("--templates", default="model_repository", help="model repository holding the templates")
    p.add_argument("--long-clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30.0, help="probe duration under load")
    p.add_argument("--deploy-arg", action="append", default=[], help="extra deploy argument (repeatable)")
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
