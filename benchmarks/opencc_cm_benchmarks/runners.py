"""The serving benchmark's runners: the child phases (reference path and ONNX Runtime alone, each
in a fresh interpreter: clean peak RSS, no model left in memory for the next path), the gRPC
drivers (batch-1 sequential and N concurrent closed-loop clients, with Triton's statistics
around each), and the server side (deploy the bundle to a temporary repository, run the real
server, measure every path and level)."""
from __future__ import annotations

import asyncio
import functools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from opencc_cm_contract.latency import latency_summary
from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES

from .measurement import STATS_SETTLE_S, TreeMemory, inference_stats, peak_rss_mib, stats_delta, throughput
from .workload import LONG_TOKENS, Plan

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen

TEMPLATES = CHECKOUT_TEMPLATES

WORKER_TIMEOUT_S = 3600  # bound on one child phase


def _timed_loop(fn, texts: list[str]) -> tuple[list[float], list, float]:
    lat, out = [], []
    start = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        out.append(fn(text))
        lat.append((time.perf_counter() - t0) * 1000.0)
    return lat, out, time.perf_counter() - start


def worker_reference(cfg: dict) -> dict:
    import torch

    from opencc_cm_export.reference import ReferenceClassifier

    t0 = time.perf_counter()
    ref = ReferenceClassifier.load(cfg["checkpoint"], base_model=cfg["base_model"], dtype=torch.float32)
    load_s = time.perf_counter() - t0
    texts, warm, bs = cfg["texts"], cfg["warmup_texts"], cfg["batch_size"]
    ref_tokens = [len(ref.tokenizer(t)["input_ids"]) for t in texts]
    print(f"[baseline] loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}; batch 1 x {len(texts)}")
    for text in warm:
        ref.scores([text])
    lat1, scores1, wall1 = _timed_loop(lambda t: ref.scores([t])[0].tolist(), texts)
    print(f"[baseline] batch 1: mean {statistics.fmean(lat1):.1f} ms")
    b_texts = texts[:cfg["batch16_prompts"]]
    ref.scores(warm[:bs], batch_size=bs)  # warm-up at the batched shape
    lat16, cells, real = [], 0, 0
    start = time.perf_counter()
    for i in range(0, len(b_texts), bs):
        chunk = b_texts[i:i + bs]
        lengths = [len(ref.tokenizer(t)["input_ids"]) for t in chunk]  # outside the timing
        cells, real = cells + len(chunk) * max(lengths), real + sum(lengths)
        t1 = time.perf_counter()
        ref.scores(chunk, batch_size=bs)
        lat16.append((time.perf_counter() - t1) * 1000.0)
        print(f"[baseline] batch {bs}: {len(chunk)} prompts padded to {max(lengths)} tokens, {lat16[-1]:.0f} ms")
    wall16 = time.perf_counter() - start  # includes the untimed length counting
    return {"load_s": load_s, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "ref_tokens": ref_tokens, "b1_ms": lat1, "b1_wall_s": wall1, "b1_scores": scores1,
            "b16_ms": lat16, "b16_wall_s": sum(lat16) / 1000.0, "b16_loop_wall_s": wall16,
            "b16_padded_cells": cells, "b16_real_tokens": real, "peak_rss_mib": peak_rss_mib()}


def worker_onnxruntime(cfg: dict) -> dict:
    import onnxruntime as ort

    from opencc_cm_client.local_tokenizer import LocalTokenizer
    from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, ONNX_FILE, TOKENIZER_FILE
    from opencc_cm_serving.bundle import load_classifier
    from opencc_cm_serving.calibration import activate
    from opencc_cm_serving.onnx_runner import OnnxEncoder

    bundle = Path(cfg["bundle"])
    spec = load_classifier(bundle / CLASSIFIER_FILE)
    t0 = time.perf_counter()
    encoder = OnnxEncoder(bundle / ONNX_FILE, spec.num_labels, providers="auto", intra_op_threads=0)
    load_s = time.perf_counter() - t0
    tok = LocalTokenizer(bundle / TOKENIZER_FILE)

    def one(text: str) -> list[float]:
        ids = np.asarray(tok.encode([text])[0], dtype=np.int64)[None, :]
        return activate(encoder(ids, np.ones_like(ids)), spec.objective)[0].tolist()

    print(f"[onnxruntime] session ready in {load_s:.1f} s ({encoder.providers}); batch 1 x {len(cfg['texts'])}")
    for text in cfg["warmup_texts"]:
        one(text)
    lat, scores, wall = _timed_loop(one, cfg["texts"])
    print(f"[onnxruntime] batch 1: mean {statistics.fmean(lat):.1f} ms")
    return {"load_s": load_s, "onnxruntime": ort.__version__, "providers": encoder.providers,
            "b1_ms": lat, "b1_wall_s": wall, "b1_scores": scores, "peak_rss_mib": peak_rss_mib()}


def worker_reference_shipped(cfg: dict) -> dict:
    """The reference as shipped: the same checkpoint in bf16 (HF eager, unmerged PEFT), batch 1
    sequential. Its distance from the fp32 baseline on these prompts is the band the
    reduced-precision rows are judged against."""
    import torch

    from opencc_cm_export.reference import ReferenceClassifier

    t0 = time.perf_counter()
    ref = ReferenceClassifier.load(cfg["checkpoint"], base_model=cfg["base_model"], dtype=torch.bfloat16)
    load_s = time.perf_counter() - t0
    print(f"[baseline bf16] loaded in {load_s:.1f} s; batch 1 x {len(cfg['texts'])}")
    for text in cfg["warmup_texts"]:
        ref.scores([text])
    lat, scores, wall = _timed_loop(lambda t: ref.scores([t])[0].tolist(), cfg["texts"])
    print(f"[baseline bf16] batch 1: mean {statistics.fmean(lat):.1f} ms")
    return {"load_s": load_s, "b1_ms": lat, "b1_wall_s": wall, "b1_scores": scores, "peak_rss_mib": peak_rss_mib()}


WORKERS = {"reference": worker_reference, "reference_shipped": worker_reference_shipped,
           "onnxruntime": worker_onnxruntime}


def run_worker(phase: str, cfg: dict, scratch: Path) -> dict:
    """Run one child phase in a fresh interpreter; returns its JSON answer."""
    io = scratch / phase
    io.mkdir(parents=True, exist_ok=True)
    (io / "in.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, "-m", "opencc_cm_benchmarks.serving_benchmark", "--worker", phase, "--worker-io", str(io)]
    proc = subprocess.run(cmd, timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} phase failed with exit code {proc.returncode}")
    return json.loads((io / "out.json").read_text())


def _scores(result) -> list[float]:
    return [r.score for r in result.labels]


def sequential_grpc(url: str, texts, warm, tokenizer: str | None, timeout_s: float) -> dict:
    from opencc_cm_client import ClassifierClient
    from opencc_cm_client.options import ConnectionOptions

    with ClassifierClient(url, tokenizer=tokenizer, options=ConnectionOptions(timeout_s=timeout_s)) as client:
        client.server_info()
        for text in warm:
            client.classify([text])
        time.sleep(STATS_SETTLE_S)
        before = inference_stats(url)
        lat, results, wall = _timed_loop(lambda t: client.classify([t])[0], texts)
        time.sleep(STATS_SETTLE_S)
        after = inference_stats(url)
        retries = client.retries
    return {"ms": lat, "wall_s": wall, "scores": [_scores(r) for r in results],
            "server_tokens": [r.input_tokens for r in results], "retries": retries,
            "triton": stats_delta(before, after)}


async def _concurrent(url: str, texts, tokenizer: str | None, clients: int, total: int, timeout_s: float) -> dict:
    from opencc_cm_client import AsyncClassifierClient
    from opencc_cm_client.errors import ClassifierError
    from opencc_cm_client.options import ConnectionOptions

    opts = ConnectionOptions(timeout_s=timeout_s)
    pool = [AsyncClassifierClient(url, tokenizer=tokenizer, max_concurrency=1, options=opts) for _ in range(clients)]
    try:
        for c in pool:
            await c.server_info()
        counter = iter(range(total))
        lat, tokens, errors = [], [0], []

        async def client_loop(c):
            for i in counter:  # shared: each request goes to whichever client is free
                text = texts[i % len(texts)]
                t0 = time.perf_counter()
                try:
                    res = (await c.classify([text]))[0]
                except ClassifierError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                lat.append((time.perf_counter() - t0) * 1000.0)
                tokens[0] += res.input_tokens

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client_loop(c) for c in pool)), timeout=WORKER_TIMEOUT_S)
        wall = time.perf_counter() - start
        return {"ms": lat, "wall_s": wall, "tokens": tokens[0], "errors": errors,
                "retries": sum(c.retries for c in pool)}
    finally:
        for c in pool:
            await c.close()


def concurrent_grpc(url, texts, tokenizer, clients, total, timeout_s) -> dict:
    before = inference_stats(url)
    out = asyncio.run(_concurrent(url, texts, tokenizer, clients, total, timeout_s))
    time.sleep(STATS_SETTLE_S)
    out["triton"] = stats_delta(before, inference_stats(url))
    return out


def entry(name: str, path: str, mode: str, ms: list[float], prompts: int, tokens: int, wall_s: float,
           usd: float, lengths: list[int] | None = None, **extra) -> dict:
    """One measured configuration. ``lengths``: tokens of each sample's prompt (sequential
    paths), to split the latency into short and long (>= LONG_TOKENS) prompts."""
    entry = {"name": name, "path": path, "mode": mode, "latency": latency_summary(ms),
             "throughput": throughput(prompts, tokens, wall_s, usd), **extra}
    if lengths is not None:
        entry["latency_by_length"] = {
            "short": latency_summary([m for m, n in zip(ms, lengths) if n < LONG_TOKENS]),
            "long": latency_summary([m for m, n in zip(ms, lengths) if n >= LONG_TOKENS])}
    entry["samples_ms"] = [round(x, 2) for x in ms]
    return entry


def serve_and_measure(args, plan: Plan, bundle: Path, tokenizer_path: str, texts, warm, tokens, scratch: Path,
                      usd: float) -> dict:
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = scratch / "repo"
    deploy_args = ["--bundle", str(bundle), "--repository", str(args.repository), "--output", str(repo),
                   "--target", "python-ort", "--max-batch-size", str(args.max_batch_size)]
    if args.queue_timeout_us:
        deploy_args += ["--queue-timeout-us", str(args.queue_timeout_us)]
    if deploy_main(deploy_args) != 0:
        raise RuntimeError("deploy failed")
    log = Path(args.server_log) if args.server_log else scratch / "server.log"
    configs, scores = [], {}
    t0 = time.perf_counter()
    with TritonServer(repo, ServerSettings(log_path=log, ready_timeout=900)) as server:
        ready_s = time.perf_counter() - t0
        url = server.grpc_url
        print(f"[triton] ready on {url} in {ready_s:.1f} s")
        with TreeMemory(server.process.pid) as mem:
            after_load = mem.sample()
            seq = {}
            for path, tk in (("ids", tokenizer_path), ("text", None)):
                r = sequential_grpc(url, texts, warm, tk, args.client_timeout_s)
                seq[path] = r
                scores[path] = r["scores"]
                configs.append(entry(f"triton {path} b1", f"triton-{path}", "sequential", r["ms"], len(texts),
                                      sum(tokens), r["wall_s"], usd, lengths=tokens, batch=1, clients=1,
                                      retries=r["retries"],
                                      triton=r["triton"]))
                print(f"[triton] {path} batch 1: mean {statistics.fmean(r['ms']):.1f} ms")
            for path in plan.concurrent_paths:
                tk = tokenizer_path if path == "ids" else None
                for n in plan.concurrency:
                    total = plan.requests(n)
                    r = concurrent_grpc(url, texts, tk, n, total, args.client_timeout_s)
                    ok = len(r["ms"])
                    configs.append(entry(f"triton {path} c{n}", f"triton-{path}", "concurrent", r["ms"], ok,
                                          r["tokens"], r["wall_s"], usd, batch=1, clients=n, requests=total,
                                          errors=len(r["errors"]), error_examples=r["errors"][:3],
                                          retries=r["retries"], triton=r["triton"]))
                    enc = r["triton"].get("encoder", {})
                    print(f"[triton] {path} {n:>3} clients: {ok}/{total} ok, {ok / r['wall_s']:.2f} prompts/s, "
                          f"p50 {np.percentile(r['ms'], 50) if ok else float('nan'):.0f} ms; encoder "
                          f"{enc.get('inference_count', 0)} rows in {enc.get('execution_count', 0)} runs")
            mem.sample()
        server_tokens = seq["ids"]["server_tokens"]
    return {"configs": configs, "scores": scores, "server_tokens": server_tokens, "ready_s": ready_s,
            "memory": {"peak_mib": mem.peak_mib, "after_load_mib": after_load, "by_process": mem.peak_by_process,
                       "samples": mem.samples}}


# What each reduced-precision row deploys: target and encoder options. bf16 serves the fp32
# bundle's torch weights on python-torch (oneDNN bf16 matmuls on a CPU instance); int8 serves
# an int8 bundle (export --precision int8) on python-ort, its only target.
REDUCED_PRECISION_TARGETS = {
    "bf16": ["--target", "python-torch", "--instance-kind", "cpu", "--torch-dtype", "bf16"],
    "int8": ["--target", "python-ort"],
}


def serve_reduced_precision(args, plan: Plan, precision: str, bundle: Path, tokenizer_path: str, texts, warm,
                            tokens, scratch: Path, usd: float) -> dict:
    """One reduced-precision path deployed to its own repository and server: the ids ensemble at
    batch 1 (``triton ids <precision> b1``, whose scores are judged against the fp32 oracle) and
    under the plan's concurrent clients (``triton ids <precision> cN``). A bundle whose own
    fidelity gate failed is deployed with ``--allow-unverified-bundle`` (a benchmark measures it;
    the row says so). The client's local tokenizer is the fp32 bundle's, so a bundle with another
    tokenizer fails the client's check."""
    from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, ClassifierManifest
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    manifest = ClassifierManifest.read(bundle / CLASSIFIER_FILE)
    verified = bool((manifest.parity or {}).get("passed"))
    repo = scratch / f"repo-{precision}"
    deploy_args = ["--bundle", str(bundle), "--repository", str(args.repository), "--output", str(repo),
                   "--max-batch-size", str(args.max_batch_size), *REDUCED_PRECISION_TARGETS[precision]]
    if not verified:
        deploy_args.append("--allow-unverified-bundle")
    if deploy_main(deploy_args) != 0:
        raise RuntimeError(f"deploy of {bundle} for {precision} failed")
    configs = []
    log = scratch / f"server-{precision}.log"
    with TritonServer(repo, ServerSettings(log_path=log, ready_timeout=900)) as server:
        url = server.grpc_url
        r = sequential_grpc(url, texts, warm, tokenizer_path, args.client_timeout_s)
        print(f"[triton] ids {precision} batch 1: mean {statistics.fmean(r['ms']):.1f} ms")
        configs.append(entry(f"triton ids {precision} b1", "triton-ids", "sequential", r["ms"], len(texts),
                             sum(tokens), r["wall_s"], usd, lengths=tokens, batch=1, clients=1,
                             retries=r["retries"], triton=r["triton"], precision=precision,
                             bundle_gate_passed=verified))
        b1_scores = r["scores"]
        for n in plan.concurrency:
            total = plan.requests(n)
            c = concurrent_grpc(url, texts, tokenizer_path, n, total, args.client_timeout_s)
            ok = len(c["ms"])
            configs.append(entry(f"triton ids {precision} c{n}", "triton-ids", "concurrent", c["ms"], ok,
                                 c["tokens"], c["wall_s"], usd, batch=1, clients=n, requests=total,
                                 errors=len(c["errors"]), error_examples=c["errors"][:3], retries=c["retries"],
                                 triton=c["triton"], precision=precision))
            print(f"[triton] ids {precision} {n:>3} clients: {ok}/{total} ok, {ok / c['wall_s']:.2f} prompts/s")
    return {"configs": configs, "scores": b1_scores, "bundle_gate_passed": verified}
