"""The serving path against the reference, side by side, from one run on the same cores.

    python -m opencc_cm_benchmarks.serving_benchmark --checkpoint CKPT/classifier \
        --base-model CKPT/base-model --bundle BUNDLE --out benchmarks/serving [--quick]

One workload for every path: prompts with the BELLS-O length profile (most of them short,
a fixed share of 256+ token texts; ``bells_o_prompts``), built deterministically from words
of the synthetic corpus and counted with the bundle's tokenizer. Paths, one after the other
(never two at once), warm-up excluded:

1. baseline, in a child process: ``ReferenceClassifier`` (HF eager, unmerged PEFT, fp32 on
   CPU, right padding): batch 1 sequential, as the model card measured it (tokenize ->
   forward -> head -> sigmoid), and batch 16 as it batches internally (``scores(texts, 16)``);
2. ONNX Runtime alone on the bundle's graph, in a child process, batch 1 sequential
   (tokenize -> run -> sigmoid), with the session settings the server uses;
3. ours: the bundle deployed (python-ort) to a temporary repository, a real Triton server on
   127.0.0.1, the gRPC client: ids ensemble (client tokenization) and text ensemble, batch 1
   sequential, then N concurrent closed-loop clients, each sending one-prompt requests, with
   Triton's inference statistics per step (encoder ``execution_count`` vs
   ``inference_count`` shows what dynamic batching did).

Writes ``serving_benchmark.json``, ``serving_benchmark.md`` and ``serving_benchmark.png``
(latency percentiles vs throughput) under ``--out`` and prints the ratios. Memory: peak RSS
of each child (``getrusage``) and of the server process tree (sampled every 0.2 s).
``--quick`` (a handful of prompts, seconds on the tiny checkpoint) is what the tests run.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen

REPORT_JSON, REPORT_MD, REPORT_PNG = "serving_benchmark.json", "serving_benchmark.md", "serving_benchmark.png"
TEMPLATES = Path(__file__).resolve().parents[2] / "model_repository"
LONG_TOKENS = 256  # "long tail": prompts of at least this many tokens
WORKER_TIMEOUT_S = 3600  # bound on one child phase
STATS_SETTLE_S = 0.3  # an ensemble records its statistics just after answering: let them land


@dataclass
class Plan:
    """How much of each measurement; fixed counts, so two runs do the same work."""

    prompts: int = 40              # timed prompts of each batch-1 sequential path
    batch16_prompts: int = 32      # timed prompts of the baseline at batch 16 (2 batches)
    warmup: int = 3                # untimed prompts before each path
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    requests_per_client: int = 2   # requests of a concurrency level: max(min_requests, N x this)
    min_requests: int = 24
    concurrent_paths: tuple[str, ...] = ("ids", "text")
    tail_share: float = 0.05       # share of prompts with 256..tail_max tokens
    short_tokens: tuple[int, int] = (8, 36)
    tail_tokens: tuple[int, int] = (256, 384)
    seed: int = 0

    def requests(self, clients: int) -> int:
        """max(min_requests, N x requests_per_client), rounded up to whole passes over the
        prompts, so every level sees the same length mix."""
        wanted = max(self.min_requests, clients * self.requests_per_client)
        return math.ceil(wanted / self.prompts) * self.prompts


QUICK = dict(prompts=6, batch16_prompts=6, warmup=1, concurrency=(1, 4), requests_per_client=2, min_requests=4,
             tail_share=1 / 6)


# --------------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------------
def bells_o_prompts(count_tokens, n: int, *, seed: int = 0, tail_share: float = 0.05,
                    short_tokens=(8, 36), tail_tokens=(256, 384)) -> list[str]:
    """``n`` texts with the BELLS-O length profile: exactly ``round(n * tail_share)`` of them
    (at least one when the share is > 0) of ``tail_tokens`` tokens, the rest uniform in
    ``short_tokens``; positions shuffled with ``seed``. Words come from the synthetic corpus
    (as ``gpu_check.prompt_texts``), so they tokenize like text. ``count_tokens(text) -> int``."""
    from opencc_cm_export.synthetic_checkpoint import calibration_prompts

    rng = np.random.default_rng(seed)
    words = " ".join(calibration_prompts()).split()
    n_long = min(n, max(1 if tail_share > 0 else 0, round(n * tail_share)))
    targets = np.concatenate([rng.integers(tail_tokens[0], tail_tokens[1] + 1, n_long),
                              rng.integers(short_tokens[0], short_tokens[1] + 1, n - n_long)])
    rng.shuffle(targets)
    texts = []
    for target in targets:
        picked: list[str] = []
        for _ in range(4 * int(target) + 8):  # bounded: every word adds >= 1 token
            if count_tokens(" ".join(picked)) >= target:
                break
            picked.append(str(rng.choice(words)))
        texts.append(" ".join(picked))
    return texts


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile (table to 30 degrees of freedom, then a series)."""
    if df <= 0:
        return float("nan")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def latency_summary(ms: list[float]) -> dict:
    """Mean with its 95% confidence interval (Student t), percentiles, min/max, in ms."""
    a = np.asarray(ms, dtype=float)
    n = len(a)
    if n == 0:
        return {"n": 0}
    mean = float(a.mean())
    half = t975(n - 1) * float(a.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean_ms": mean, "ci95_ms": [mean - half, mean + half], "ci95_half_ms": half,
            "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "min_ms": float(a.min()), "max_ms": float(a.max())}


def throughput(prompts: int, tokens: int, wall_s: float, usd_per_hour: float) -> dict:
    tps = tokens / wall_s if wall_s > 0 else float("nan")
    return {"prompts": prompts, "tokens": tokens, "wall_s": wall_s,
            "prompts_per_s": prompts / wall_s if wall_s > 0 else float("nan"), "tokens_per_s": tps,
            "usd_per_1m_tokens": usd_per_hour / 3600.0 / tps * 1e6 if tps > 0 else float("nan")}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------------------------
# Child phases (own process each: clean peak RSS, no model left in memory for the next path)
# --------------------------------------------------------------------------------------------
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
            "b16_padded_cells": cells, "b16_real_tokens": real, "peak_rss_mib": _peak_rss_mib()}


def worker_onnxruntime(cfg: dict) -> dict:
    import onnxruntime as ort

    from opencc_cm_client.requests import LocalTokenizer
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
            "b1_ms": lat, "b1_wall_s": wall, "b1_scores": scores, "peak_rss_mib": _peak_rss_mib()}


WORKERS = {"reference": worker_reference, "onnxruntime": worker_onnxruntime}


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


# --------------------------------------------------------------------------------------------
# The server side
# --------------------------------------------------------------------------------------------
class TreeMemory:
    """Samples the RSS of a process and all its descendants (tritonserver + Python stubs)."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self.peak_by_process: dict[str, float] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _name(proc) -> str:
        try:
            cmd = proc.cmdline()
        except Exception:  # noqa: BLE001 - process gone
            return "?"
        model = next((Path(a).parent.parent.name for a in cmd if a.endswith("/model.py")), None)
        return f"python stub: {model}" if model else Path(cmd[0]).name if cmd else "?"

    def sample(self) -> float:
        import psutil

        total = 0.0
        procs = [self.root]
        try:
            procs += self.root.children(recursive=True)
        except psutil.Error:
            pass
        for proc in procs:
            try:
                rss = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            total += rss
            name = self._name(proc)
            self.peak_by_process[name] = max(self.peak_by_process.get(name, 0.0), rss)
        self.peak_mib = max(self.peak_mib, total)
        self.samples += 1
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def inference_stats(url: str) -> dict[str, dict]:
    """Per model: counts and cumulative ns of Triton's inference statistics."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        raw = client.get_inference_statistics(as_json=True)
    out = {}
    for m in raw.get("model_stats", []):
        s = m.get("inference_stats", {})
        out[m["name"]] = {
            "inference_count": int(m.get("inference_count", 0)),
            "execution_count": int(m.get("execution_count", 0)),
            **{f"{k}_{f}": int(s.get(k, {}).get(f, 0)) for k in
               ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output") for f in ("count", "ns")},
            # per batch size (requests per execute()): executions and their summed duration
            "batches": {str(b["batch_size"]): {"executions": int(b.get("compute_infer", {}).get("count", 0)),
                                               "ns": sum(int(b.get(k, {}).get("ns", 0)) for k in
                                                         ("compute_input", "compute_infer", "compute_output"))}
                        for b in m.get("batch_stats", [])},
        }
    return out


def stats_delta(before: dict, after: dict) -> dict:
    """What happened between two snapshots, with the derived figures the report shows."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {})
        d = {k: v - b.get(k, 0) for k, v in a.items() if k != "batches"}
        batches = {}
        for size, x in a.get("batches", {}).items():
            y = b.get("batches", {}).get(size, {"executions": 0, "ns": 0})
            if x["executions"] - y["executions"] > 0:
                batches[size] = {"executions": x["executions"] - y["executions"], "ns": x["ns"] - y["ns"]}
        d["batches"] = dict(sorted(batches.items(), key=lambda kv: int(kv[0])))
        ok = max(d["success_count"], 1)
        d["rows_per_execution"] = d["inference_count"] / d["execution_count"] if d["execution_count"] else 0.0
        d["queue_ms_per_request"] = d["queue_ns"] / ok / 1e6
        # each request's compute is the duration of the execute() that carried it
        d["compute_ms_per_request"] = (d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"]) / ok / 1e6
        runs = sum(x["executions"] for x in batches.values())
        d["ms_per_execution"] = sum(x["ns"] for x in batches.values()) / runs / 1e6 if runs else None
        d["server_ms_per_request"] = d["success_ns"] / ok / 1e6
        out[name] = d
    return out


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


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), cpu)
    except (OSError, subprocess.SubprocessError):
        pass
    import psutil

    versions = {}
    for mod in ("torch", "onnxruntime", "tritonclient", "transformers", "peft"):
        try:
            versions[mod] = __import__("importlib.metadata").metadata.version(mod)
        except Exception:  # noqa: BLE001
            versions[mod] = None
    try:  # the pip package that bundles tritonserver 2.51 (see opencc_cm_serving.launch)
        versions["nvidia-pytriton"] = __import__("importlib.metadata").metadata.version("nvidia-pytriton")
    except Exception:  # noqa: BLE001
        versions["nvidia-pytriton"] = None
    return {"nproc": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)), "cpu_model": cpu,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


class CpuAccounting:
    """CPU seconds spent by other processes while we ran: the machine-wide busy time minus
    this process and its (reaped) children. A disturbance indicator for the report."""

    def __init__(self):
        import psutil

        self._psutil = psutil
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.own0 = self._own()
        self.marks: list[tuple[str, float, float, float]] = []  # (phase, wall, busy, own) at its end

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    @staticmethod
    def _own() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def mark(self, phase: str) -> None:
        """End of a phase; call once its child processes have exited (their CPU is counted then)."""
        self.marks.append((phase, time.monotonic() - self.t0, self._busy() - self.busy0, self._own() - self.own0))

    @staticmethod
    def _share(wall: float, busy: float, own: float) -> dict:
        cores = os.cpu_count() or 1
        others = max(0.0, busy - own)
        return {"wall_s": wall, "machine_busy_cpu_s": busy, "ours_cpu_s": own, "others_cpu_s": others,
                "others_share_of_capacity": others / (wall * cores) if wall > 0 else 0.0}

    def result(self) -> dict:
        out = self._share(time.monotonic() - self.t0, self._busy() - self.busy0, self._own() - self.own0)
        prev = (0.0, 0.0, 0.0)
        out["phases"] = {}
        for phase, wall, busy, own in self.marks:
            out["phases"][phase] = self._share(wall - prev[0], busy - prev[1], own - prev[2])
            prev = (wall, busy, own)
        return out


def _entry(name: str, path: str, mode: str, ms: list[float], prompts: int, tokens: int, wall_s: float,
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


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def run(args) -> dict:
    from opencc_cm_client.requests import LocalTokenizer
    from opencc_cm_contract.bundle_format import TOKENIZER_FILE

    plan = Plan(**QUICK) if args.quick else Plan()
    for key in ("prompts", "batch16_prompts", "warmup", "min_requests", "requests_per_client", "seed"):
        if getattr(args, key, None) is not None:
            setattr(plan, key, getattr(args, key))
    if args.concurrency:
        plan.concurrency = tuple(int(x) for x in args.concurrency.split(","))
    if args.concurrent_paths:
        plan.concurrent_paths = tuple(x for x in args.concurrent_paths.split(",") if x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = Path(args.bundle)
    tokenizer_path = str(bundle / TOKENIZER_FILE)
    usd = args.usd_per_hour
    started = time.time()
    cpu = CpuAccounting()
    load_before = os.getloadavg()
    report: dict = {"command": " ".join(["python -m opencc_cm_benchmarks.serving_benchmark", *args.argv]),
                    "quick": bool(args.quick), "machine": machine_info(), "usd_per_hour": usd,
                    "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.__dict__.items()},
                    "loadavg_at_start": load_before, "notes": []}

    # -- workload ---------------------------------------------------------------------------
    tok = LocalTokenizer(tokenizer_path)
    count = lambda text: len(tok.encode([text])[0]) if text else 0  # noqa: E731
    texts = bells_o_prompts(count, plan.prompts, seed=plan.seed, tail_share=plan.tail_share,
                            short_tokens=plan.short_tokens, tail_tokens=plan.tail_tokens)
    # warm-up: other short prompts (another seed), never timed
    warm = bells_o_prompts(count, max(1, plan.warmup), seed=plan.seed + 1000, tail_share=0,
                           short_tokens=plan.short_tokens)
    tokens = [count(t) for t in texts]
    b16_n = min(plan.batch16_prompts, len(texts))
    report["workload"] = {
        "prompts": len(texts), "warmup_prompts": len(warm), "seed": plan.seed,
        "tokens_total": int(sum(tokens)), "tokens_mean": statistics.fmean(tokens),
        "tokens_p50": float(np.percentile(tokens, 50)), "tokens_p95": float(np.percentile(tokens, 95)),
        "tokens_max": int(max(tokens)), "long_share": sum(t >= LONG_TOKENS for t in tokens) / len(tokens),
        "long_threshold_tokens": LONG_TOKENS, "batch16_prompts": b16_n,
        "batch16_tokens": int(sum(tokens[:b16_n])),
        "generator": f"bells_o_prompts(tail_share={plan.tail_share:g}, short={plan.short_tokens}, "
                     f"tail={plan.tail_tokens}, seed={plan.seed})",
    }
    print(f"[workload] {len(texts)} prompts, mean {report['workload']['tokens_mean']:.1f} tokens, "
          f"max {max(tokens)}, {report['workload']['long_share']:.0%} with >= {LONG_TOKENS} tokens")
    configs: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="opencc-cm-bench-"))
    try:
        # -- 1. baseline --------------------------------------------------------------------
        cpu.mark("workload")
        ref = run_worker("reference", {"checkpoint": args.checkpoint, "base_model": args.base_model,
                                       "texts": texts, "warmup_texts": warm, "batch_size": 16,
                                       "batch16_prompts": b16_n}, scratch)
        cpu.mark("baseline")
        if ref["ref_tokens"] != tokens:
            report["notes"].append("the reference tokenizer counts differ from tokenizer.json on some prompts")
        configs.append(_entry("baseline b1", "reference", "sequential", ref["b1_ms"], len(texts), sum(tokens),
                              ref["b1_wall_s"], usd, lengths=tokens, batch=1, clients=1))
        b16_batches = math.ceil(b16_n / 16)
        configs.append(_entry("baseline b16", "reference", "batched", ref["b16_ms"], b16_n, sum(tokens[:b16_n]),
                              ref["b16_wall_s"], usd, batch=16, clients=1, requests=b16_batches,
                              padding_waste=1 - ref["b16_real_tokens"] / max(ref["b16_padded_cells"], 1)))
        # -- 2. ONNX Runtime alone ----------------------------------------------------------
        ort_res = run_worker("onnxruntime", {"bundle": str(bundle), "texts": texts, "warmup_texts": warm}, scratch)
        cpu.mark("onnxruntime")
        configs.append(_entry("onnxruntime b1", "onnxruntime", "sequential", ort_res["b1_ms"], len(texts),
                              sum(tokens), ort_res["b1_wall_s"], usd, lengths=tokens, batch=1, clients=1))
        # -- 3. Triton ----------------------------------------------------------------------
        server_out = serve_and_measure(args, plan, bundle, tokenizer_path, texts, warm, tokens, scratch, usd)
        configs.extend(server_out["configs"])
        cpu.mark("triton")  # the server has exited: its CPU time is counted
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report["configs"] = configs
    report["memory_peak_rss_mib"] = {
        "baseline_process": ref["peak_rss_mib"], "onnxruntime_process": ort_res["peak_rss_mib"],
        "server_tree": server_out["memory"]["peak_mib"], "server_tree_after_load": server_out["memory"]["after_load_mib"],
        "server_by_process": server_out["memory"]["by_process"],
    }
    report["parity_max_abs_score_diff_vs_baseline_b1"] = {
        "onnxruntime": _max_diff(ort_res["b1_scores"], ref["b1_scores"]),
        "triton_ids": _max_diff(server_out["scores"]["ids"], ref["b1_scores"]),
        "triton_text": _max_diff(server_out["scores"]["text"], ref["b1_scores"]),
    }
    if server_out["server_tokens"] != tokens:
        report["notes"].append("the server's token counts differ from the workload's")
    report["load"] = {"baseline_load_s": ref["load_s"], "onnxruntime_session_s": ort_res["load_s"],
                      "server_ready_s": server_out["ready_s"], "torch_threads": ref["torch_threads"],
                      "onnxruntime_providers": ort_res["providers"]}
    report["ratios"] = ratios(configs)
    report["cpu_accounting"] = cpu.result()
    report["loadavg_at_end"] = os.getloadavg()
    report["duration_s"] = time.time() - started
    report["started_unix"] = started
    for phase, acc in report["cpu_accounting"]["phases"].items():
        if acc["others_share_of_capacity"] > 0.05 and acc["wall_s"] > 1:
            report["notes"].append(f"other processes used {acc['others_share_of_capacity']:.0%} of the CPU "
                                   f"capacity during the {phase} phase: its timings are disturbed")
    write_reports(report, out)
    print(summary_text(report))
    return report


def serve_and_measure(args, plan: Plan, bundle: Path, tokenizer_path: str, texts, warm, tokens, scratch: Path,
                      usd: float) -> dict:
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import TritonServer

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
    with TritonServer(repo, log_path=log, ready_timeout=900) as server:
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
                configs.append(_entry(f"triton {path} b1", f"triton-{path}", "sequential", r["ms"], len(texts),
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
                    configs.append(_entry(f"triton {path} c{n}", f"triton-{path}", "concurrent", r["ms"], ok,
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


def _find(configs, name):
    return next((c for c in configs if c["name"] == name), None)


def ratios(configs: list[dict]) -> dict:
    base1, base16 = _find(configs, "baseline b1"), _find(configs, "baseline b16")
    out: dict = {}
    for name in ("onnxruntime b1", "triton ids b1", "triton text b1"):
        c = _find(configs, name)
        if c and base1:
            out[f"batch1_mean_latency_speedup[{name}]"] = base1["latency"]["mean_ms"] / c["latency"]["mean_ms"]
            out[f"batch1_p50_latency_speedup[{name}]"] = base1["latency"]["p50_ms"] / c["latency"]["p50_ms"]
            for part in ("short", "long"):
                b, o = base1.get("latency_by_length", {}).get(part, {}), c.get("latency_by_length", {}).get(part, {})
                if b.get("n") and o.get("n"):
                    out[f"batch1_mean_latency_speedup_{part}_prompts[{name}]"] = b["mean_ms"] / o["mean_ms"]
    ort, ids1 = _find(configs, "onnxruntime b1"), _find(configs, "triton ids b1")
    if ort and ids1:
        out["server_overhead_ms[triton ids b1 - onnxruntime b1, mean]"] = ids1["latency"]["mean_ms"] - ort["latency"]["mean_ms"]
        out["server_overhead_ms[triton ids b1 - onnxruntime b1, p50]"] = ids1["latency"]["p50_ms"] - ort["latency"]["p50_ms"]
    if ort and ids1 and len(ort["samples_ms"]) == len(ids1["samples_ms"]):
        out["server_overhead_ms[paired median over prompts, triton ids b1 - onnxruntime b1]"] = float(
            np.median(np.subtract(ids1["samples_ms"], ort["samples_ms"])))
    for name, ensemble in (("triton ids b1", "classify_ids"), ("triton text b1", "classify_text")):
        c = _find(configs, name)
        stats = (c or {}).get("triton", {})
        if ensemble in stats and "encoder" in stats and \
                stats[ensemble]["success_count"] == stats["encoder"]["success_count"]:  # same requests in both
            server = stats[ensemble]["server_ms_per_request"]
            out[f"triton_pipeline_ms[{name}: ensemble - encoder compute, per request]"] = (
                server - stats["encoder"]["compute_ms_per_request"])
            out[f"grpc_and_client_ms[{name}: client latency - ensemble, per request]"] = c["latency"]["mean_ms"] - server
    conc = [c for c in configs if c["mode"] == "concurrent" and c["latency"].get("n")]
    if conc and base16:
        best = max(conc, key=lambda c: c["throughput"]["prompts_per_s"])
        out["best_concurrent_config"] = best["name"]
        out["throughput_ratio[best concurrent / baseline b16]"] = (best["throughput"]["prompts_per_s"]
                                                                   / base16["throughput"]["prompts_per_s"])
        if base1:
            out["throughput_ratio[best concurrent / baseline b1]"] = (best["throughput"]["prompts_per_s"]
                                                                     / base1["throughput"]["prompts_per_s"])
        for path in ("ids", "text"):
            one = _find(configs, f"triton {path} c1")
            mine = [c for c in conc if c["path"] == f"triton-{path}"]
            if one and mine:
                top = max(mine, key=lambda c: c["throughput"]["prompts_per_s"])
                out[f"dynamic_batching_gain[{path}: best / 1 client]"] = (top["throughput"]["prompts_per_s"]
                                                                           / one["throughput"]["prompts_per_s"])
    lat = out.get("batch1_mean_latency_speedup[triton ids b1]")
    thr = out.get("throughput_ratio[best concurrent / baseline b16]")
    out["targets"] = {"grpc_batch1_latency_at_least_2x": None if lat is None else lat >= 2.0,
                      "concurrent_throughput_at_least_2x_baseline_b16": None if thr is None else thr >= 2.0}
    return out


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------
def _fmt_ms(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def markdown(report: dict) -> str:
    w, m, r = report["workload"], report["machine"], report["ratios"]
    base1 = _find(report["configs"], "baseline b1")
    lines = [
        "# Serving benchmark: Triton gRPC path vs the reference path",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; {m['platform']}. "
        f"All paths ran one after the other on the same cores, warm-up excluded.",
        f"Workload: {w['prompts']} prompts, {w['tokens_mean']:.1f} tokens on average (p50 {w['tokens_p50']:.0f}, "
        f"p95 {w['tokens_p95']:.0f}, max {w['tokens_max']}), {w['long_share']:.0%} with >= {w['long_threshold_tokens']} "
        f"tokens; {w['generator']}. Baseline batch 16: the first {w['batch16_prompts']} prompts. "
        f"Cost at ${report['usd_per_hour']}/h.",
        "",
        "| config | requests | mean ms (95% CI) | p50 ms | p95 ms | p99 ms | prompts/s | tokens/s | $ / 1M tokens | vs baseline b1 latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["configs"]:
        lat, thr = c["latency"], c["throughput"]
        if not lat.get("n"):
            lines.append(f"| {c['name']} | 0 | failed | | | | | | | |")
            continue
        ci = lat["ci95_half_ms"] if lat["n"] >= 3 else None
        speed = base1["latency"]["mean_ms"] / lat["mean_ms"] if base1 and c["mode"] == "sequential" else None
        req = str(c.get("requests", lat["n"]))
        if c.get("errors"):
            req += f" ({c['errors']} failed)"
        lines.append(
            f"| {c['name']} | {req} | {_fmt_ms(lat['mean_ms'])}"
            f"{'' if ci is None else ' ± ' + _fmt_ms(ci)} | {_fmt_ms(lat['p50_ms'])} | "
            f"{_fmt_ms(lat['p95_ms'])} | {_fmt_ms(lat['p99_ms'])} | {thr['prompts_per_s']:.2f} | "
            f"{thr['tokens_per_s']:.1f} | {thr['usd_per_1m_tokens']:.2f} | {'' if speed is None else f'{speed:.2f}x'} |")
    b16 = _find(report["configs"], "baseline b16")
    lines += ["", "Rows: `baseline` = ReferenceClassifier (HF eager, unmerged PEFT, fp32, right padding); "
              "`b16` latency is per batch of 16 (every prompt of a batch waits for all of it)"
              + (f", {b16['padding_waste']:.0%} of its padded cells were padding" if b16 else "")
              + "; `onnxruntime` = the bundle's graph in-process; `triton ids` = client tokenization -> "
              "`classify_ids`, `triton text` = `classify_text`; `cN` = N concurrent clients, one prompt per request.",
              "", f"Batch-1 latency by prompt length (short: < {LONG_TOKENS} tokens, long: >= {LONG_TOKENS}):", "",
              "| config | short: n | short: mean ms | short: p50 ms | long: n | long: mean ms | long: p50 ms |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for c in report["configs"]:
        split = c.get("latency_by_length")
        if split:
            sh, lo = split["short"], split["long"]
            lines.append(f"| {c['name']} | {sh['n']} | {_fmt_ms(sh.get('mean_ms'))} | {_fmt_ms(sh.get('p50_ms'))} | "
                         f"{lo['n']} | {_fmt_ms(lo.get('mean_ms'))} | {_fmt_ms(lo.get('p50_ms'))} |")
    lines += ["", "## Ratios", ""]
    for k, v in r.items():
        if k == "targets":
            continue
        lines.append(f"- {k}: {v:.2f}" + ("x" if "speedup" in k or "ratio" in k or "gain" in k else "")
                     if isinstance(v, float) else f"- {k}: {v}")
    t = r["targets"]
    lines += [f"- target gRPC batch-1 latency >= 2x baseline: {'met' if t['grpc_batch1_latency_at_least_2x'] else 'MISSED'}",
              f"- target concurrent throughput >= 2x baseline batch 16: "
              f"{'met' if t['concurrent_throughput_at_least_2x_baseline_b16'] else 'MISSED'}", ""]
    mem = report["memory_peak_rss_mib"]
    lines += ["## Peak memory (RSS)", "",
              f"- baseline process: {mem['baseline_process']:,.0f} MiB",
              f"- ONNX Runtime process: {mem['onnxruntime_process']:,.0f} MiB",
              f"- Triton server process tree: {mem['server_tree']:,.0f} MiB peak "
              f"({mem['server_tree_after_load']:,.0f} MiB after load); by process: "
              + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(mem["server_by_process"].items())), ""]
    lines += ["## Dynamic batching (Triton inference statistics, encoder)", "",
              "Per request: queue = wait in the encoder's queue; run = duration of the execute() that carried "
              "it; ensemble = server time from request to response.", "",
              "| config | encoder rows | encoder runs | rows / run | requests per run: runs | ms / run | "
              "queue ms / request | run ms / request | ensemble ms / request |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for c in report["configs"]:
        enc = c.get("triton", {}).get("encoder")
        if not enc:
            continue
        ens = c["triton"].get("classify_ids" if c["path"] == "triton-ids" else "classify_text", {})
        sizes = " ".join(f"{k}:{v['executions']}" for k, v in enc.get("batches", {}).items()) or "n/a"
        lines.append(f"| {c['name']} | {enc['inference_count']} | {enc['execution_count']} | "
                     f"{enc['rows_per_execution']:.2f} | {sizes} | {_fmt_ms(enc.get('ms_per_execution'))} | "
                     f"{_fmt_ms(enc['queue_ms_per_request'])} | {_fmt_ms(enc['compute_ms_per_request'])} | "
                     f"{_fmt_ms(ens.get('server_ms_per_request'))} |")
    p = report["parity_max_abs_score_diff_vs_baseline_b1"]
    cpu = report["cpu_accounting"]
    lines += ["", "## Checks", "",
              "- max |score diff| vs baseline batch 1: " + ", ".join(f"{k} {v:.2e}" for k, v in p.items()),
              f"- load average at start {tuple(round(x, 2) for x in report['loadavg_at_start'])}, at end "
              f"{tuple(round(x, 2) for x in report['loadavg_at_end'])}; other processes used "
              f"{cpu['others_cpu_s']:.0f} CPU-s ({cpu['others_share_of_capacity']:.1%} of capacity) during the "
              f"{cpu['wall_s']:.0f} s run (" + ", ".join(
                  f"{k} {v['others_share_of_capacity']:.1%} of {v['wall_s']:.0f} s" for k, v in cpu["phases"].items())
              + ")",
              f"- load times: baseline {report['load']['baseline_load_s']:.1f} s, ONNX Runtime session "
              f"{report['load']['onnxruntime_session_s']:.1f} s, Triton ready {report['load']['server_ready_s']:.1f} s",
              ]
    lines += [f"- note: {n}" for n in report["notes"]]
    lines += ["", f"Command: `{report['command']}`", "", f"Plot: `{REPORT_PNG}`", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Left: latency percentiles vs throughput for every configuration (concurrency levels as
    curves). Right: batch-1 mean latency of short and long prompts, path by path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=80, gridspec_kw={"width_ratios": [2.1, 1]})
    colors = {"reference": "tab:red", "onnxruntime": "tab:gray", "triton-ids": "tab:blue", "triton-text": "tab:green"}
    for j, path_name in enumerate(("triton-ids", "triton-text")):
        conc = [c for c in report["configs"] if c["path"] == path_name and c["mode"] == "concurrent"
                and c["latency"].get("n")]
        if not conc:
            continue
        x = [c["throughput"]["prompts_per_s"] for c in conc]
        for key, style, label in (("p50_ms", "-o", "p50"), ("p95_ms", "--^", "p95")):
            ax.plot(x, [c["latency"][key] for c in conc], style, color=colors[path_name], ms=4, lw=1.2,
                    label=f"{path_name.replace('-', ' ')}, N clients: {label}")
        for c, xi in zip(conc, x):
            ax.annotate(f"N={c['clients']}", (xi, c["latency"]["p50_ms"]), textcoords="offset points",
                        xytext=(-34 if j == 0 else 6, -3), fontsize=7, color=colors[path_name])
    markers = {"baseline b1": "s", "baseline b16": "D", "onnxruntime b1": "P", "triton ids b1": "X",
               "triton text b1": "*"}
    for c in (c for c in report["configs"] if c["mode"] != "concurrent" and c["latency"].get("n")):
        x, color = c["throughput"]["prompts_per_s"], colors[c["path"]]
        ax.plot([x, x], [c["latency"]["p50_ms"], c["latency"]["p95_ms"]], "-", color=color, lw=1, alpha=.6)
        ax.plot([x], [c["latency"]["p50_ms"]], markers.get(c["name"], "o"), color=color, ms=7,
                mfc="none" if c["path"] == "reference" else color, label=f"{c['name']}: p50, bar to p95")
    ax.set_xlim(left=0)
    ax.set_yscale("log")
    ax.set_xlabel("throughput (prompts/s)")
    ax.set_ylabel("latency per request (ms, log)")
    w, m = report["workload"], report["machine"]
    ax.set_title(f"Latency vs throughput: {w['prompts']} BELLS-O-like prompts, {w['tokens_mean']:.0f} tokens avg, "
                 f"{w['long_share']:.0%} >= {w['long_threshold_tokens']}; {m['nproc']} CPUs", fontsize=9)
    ax.grid(True, which="both", alpha=.25)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.47, 1.0), ncol=2)

    names = [n for n in ("baseline b1", "onnxruntime b1", "triton ids b1", "triton text b1") if _find(report["configs"], n)]
    for k, part in enumerate(("short", "long")):
        vals = [(_find(report["configs"], n).get("latency_by_length", {}).get(part, {}).get("mean_ms") or 0.0)
                for n in names]
        xs = np.arange(len(names)) + (k - 0.5) * 0.38
        bars = bx.bar(xs, vals, 0.36, color=[colors[_find(report["configs"], n)["path"]] for n in names],
                      alpha=0.55 if part == "short" else 0.95, label=f"{part} prompts", edgecolor="black", lw=0.4)
        for b, v in zip(bars, vals):
            if v:
                bx.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    bx.set_xticks(np.arange(len(names)), [n.replace(" b1", "") for n in names], fontsize=8)
    bx.set_ylabel("batch-1 mean latency (ms)")
    bx.set_title(f"Batch 1: short (light) vs long (dark, >= {w['long_threshold_tokens']} tokens)", fontsize=9)
    bx.grid(True, axis="y", alpha=.25)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_reports(report: dict, out: Path) -> None:
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out / REPORT_MD).write_text(markdown(report))
    plot(report, out / REPORT_PNG)


def summary_text(report: dict) -> str:
    r = report["ratios"]
    lines = ["", "== serving benchmark =="]
    for c in report["configs"]:
        lat, thr = c["latency"], c["throughput"]
        if lat.get("n"):
            lines.append(f"{c['name']:<18} mean {lat['mean_ms']:9.1f} ms  p50 {lat['p50_ms']:9.1f}  "
                         f"p95 {lat['p95_ms']:9.1f}  {thr['prompts_per_s']:7.2f} prompts/s  "
                         f"{thr['tokens_per_s']:8.1f} tok/s")
    for k, v in r.items():
        if k != "targets":
            lines.append(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    lines.append(f"targets: {r['targets']}")
    mem = report["memory_peak_rss_mib"]
    lines.append(f"peak RSS MiB: baseline {mem['baseline_process']:.0f}, onnxruntime {mem['onnxruntime_process']:.0f}, "
                 f"server tree {mem['server_tree']:.0f}")
    lines.append(f"wrote {REPORT_JSON}, {REPORT_MD}, {REPORT_PNG}; {report['duration_s']:.0f} s")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_benchmarks.serving_benchmark",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="classifier checkpoint folder (the baseline loads it)")
    p.add_argument("--base-model", help="base model folder")
    p.add_argument("--bundle", help="deploy bundle exported from that checkpoint")
    p.add_argument("--out", help="folder for the JSON, markdown and PNG reports")
    p.add_argument("--quick", action="store_true", help="a handful of prompts: a smoke run (seconds on tiny)")
    p.add_argument("--prompts", type=int, help="timed prompts per batch-1 path (default 40; quick 6)")
    p.add_argument("--batch16-prompts", type=int, help="timed prompts of the baseline at batch 16 (default 32)")
    p.add_argument("--warmup", type=int, help="untimed prompts before each path (default 3)")
    p.add_argument("--concurrency", help="comma list of concurrent clients (default 1,4,16,64)")
    p.add_argument("--concurrent-paths", help="comma list of ids,text (default both)")
    p.add_argument("--requests-per-client", type=int, help="requests of a level: max(min, N x this) (default 2)")
    p.add_argument("--min-requests", type=int, help="at least this many requests per level (default 24)")
    p.add_argument("--seed", type=int)
    p.add_argument("--usd-per-hour", type=float, default=2.39, help="machine price for the cost column")
    p.add_argument("--repository", default=str(TEMPLATES), help="model repository holding the templates")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--queue-timeout-us", type=int, default=0, help="deploy's per-request queue timeout; 0 = its default")
    p.add_argument("--client-timeout-s", type=float, default=600.0, help="per-call gRPC deadline of the clients")
    p.add_argument("--server-log", help="keep the Triton log here (default: a temporary file)")
    p.add_argument("--render", metavar="JSON", help="only rewrite the markdown and PNG from an existing report")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-io", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        io = Path(args.worker_io)
        result = WORKERS[args.worker](json.loads((io / "in.json").read_text()))
        (io / "out.json").write_text(json.dumps(result))
        return 0
    if args.render:  # rewrite the markdown and the plot from a report (e.g. after a format change)
        path = Path(args.render)
        report = json.loads(path.read_text())
        report["ratios"] = ratios(report["configs"])
        write_reports(report, Path(args.out) if args.out else path.parent)
        return 0
    missing = [k for k in ("checkpoint", "base_model", "bundle", "out") if not getattr(args, k)]
    if missing:
        parser().error("required: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    args.argv = argv
    # SIGTERM unwinds like Ctrl-C: children killed, server stopped, scratch repository removed.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
