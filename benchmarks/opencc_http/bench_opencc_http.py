"""What the OpenCC-compatible HTTP service costs on top of the gRPC path it wraps.

One real Triton server (``python-ort`` target) serving the bundle, and ``opencc-cm serve-http``
(a child process, as a user runs it, cm-only pipeline) in front of it. The same prompts go
both ways, in interleaved rounds so that drift on a shared machine hits both alike:

- gRPC: ``ClassifierClient.classify([text])`` (the client library, one channel);
- HTTP: ``POST /check {"text"}`` on a kept-alive connection (``http.client``), reading ``decision``;

each at batch 1 from one client (sequential), then from ``--clients`` concurrent clients
(threads; the gRPC ones share one client, the HTTP ones have one connection each). Latency is
per request as the caller sees it; "added" is HTTP minus gRPC at the same percentile. At batch 1
the CPU time per request of the calling process (gRPC's own threads included) and of the service
process is recorded too: wall time on a loaded shared machine includes waiting for a core, CPU
time does not. "Added CPU" = HTTP caller + service - gRPC caller: the work the HTTP hop puts on a
request's path, what its added latency is on an idle machine.

    python benchmarks/opencc_http/bench_opencc_http.py --bundle artifacts/bundles/tiny-fp32 --out benchmarks/opencc_http

Writes ``opencc_http_benchmark.json`` and ``.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CM_ONLY = "jailbreak_detector: null\nrephraser: null\ncontent_moderation: content-moderation\nfrontier_judge: null\n"


def prompts() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "examples" / "labeled-sample.jsonl").read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows]


def free_port() -> int:
    from opencc_cm_serving.launch import free_port as pick

    return pick()


def start_service(grpc_url: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    config = workdir / "config.yaml"
    config.write_text(CM_ONLY)
    port = free_port()
    opencc_cm = Path(sys.executable).with_name("opencc-cm")
    proc = subprocess.Popen([str(opencc_cm), "serve-http", "--url", grpc_url, "--config", str(config), "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=open(workdir / "http.log", "w"))
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                if reply.status == 200:
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve-http did not start: {(workdir / 'http.log').read_text()[-2000:]}")
        time.sleep(0.2)


class HttpCaller:
    """One kept-alive connection, opened and used once before it is timed (uvicorn closes a
    connection idle for 5 s, so each phase opens its own)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self("warm-up")

    def __call__(self, text: str) -> str:
        self.conn.request("POST", "/check", json.dumps({"text": text}), {"Content-Type": "application/json"})
        reply = self.conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {body[:200]!r}")
        return json.loads(body)["decision"]


def cpu_ms_per_request(phase, service_pid: int, n: int) -> tuple[float, float]:
    """Run ``phase()``; CPU ms per request spent by this process (the caller, with the threads its
    gRPC or HTTP library runs) and by the service process (``service_pid``; 0 = none): load on a
    shared machine stretches wall time, not these."""
    import psutil

    service = psutil.Process(service_pid) if service_pid else None
    before = sum(service.cpu_times()[:2]) if service else 0.0
    t0 = time.process_time()
    phase()
    caller = (time.process_time() - t0) * 1000 / n
    after = sum(service.cpu_times()[:2]) if service else 0.0
    return caller, (after - before) * 1000 / n


def timed(call, texts) -> list[float]:
    out = []
    for text in texts:
        t0 = time.perf_counter()
        call(text)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def concurrent(make_call, texts, clients: int) -> tuple[list[float], float]:
    """Every client sends its share of ``texts`` back to back; latencies and requests/s."""
    shares = [texts[i::clients] for i in range(clients)]
    calls = [make_call() for _ in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(timed, calls, shares))
    wall = time.perf_counter() - started
    return [x for part in parts for x in part], len(texts) / wall


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": int(a.size), "mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--requests", type=int, default=300, help="requests per mode per round (default 300)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    from opencc_cm_client import ClassifierClient
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    load_at_start = list(os.getloadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = prompts()
    texts = [base[i % len(base)] for i in range(args.requests)]
    results = {k: [] for k in ("grpc_seq", "http_seq", "grpc_conc", "http_conc")}
    rates = {"grpc_conc": [], "http_conc": []}
    cpu = {"grpc_client": [], "http_client": [], "service": []}  # CPU ms per request, batch 1
    with tempfile.TemporaryDirectory(prefix="bench-opencc-http-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "opencc_cm_serving.deploy", "--bundle", args.bundle, "--repository",
                        str(ROOT / "model_repository"), "--output", str(tmp / "repo"), "--target", "python-ort"],
                       check=True, capture_output=True)
        with TritonServer(tmp / "repo", ServerSettings(log_path=tmp / "server.log", ready_timeout=300)) as server:
            service, port = start_service(server.grpc_url, tmp)
            try:
                with ClassifierClient(server.grpc_url) as client:
                    grpc_call = lambda text: client.classify([text])[0].flagged  # noqa: E731
                    timed(grpc_call, base * 3)  # warm both paths
                    timed(HttpCaller(port), base * 3)
                    for _ in range(args.rounds):
                        cpu["grpc_client"].append(cpu_ms_per_request(
                            lambda: results["grpc_seq"].extend(timed(grpc_call, texts)), 0, len(texts))[0])
                        caller = HttpCaller(port)
                        http_client, in_service = cpu_ms_per_request(
                            lambda: results["http_seq"].extend(timed(caller, texts)), service.pid, len(texts))
                        cpu["http_client"].append(http_client)
                        cpu["service"].append(in_service)
                        ms, rate = concurrent(lambda: grpc_call, texts * 2, args.clients)
                        results["grpc_conc"] += ms
                        rates["grpc_conc"].append(rate)
                        ms, rate = concurrent(lambda: HttpCaller(port), texts * 2, args.clients)
                        results["http_conc"] += ms
                        rates["http_conc"].append(rate)
            finally:
                service.terminate()
                service.wait(30)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpus": os.cpu_count(), "loadavg_at_start": load_at_start, "loadavg_at_end": list(os.getloadavg()),
              "bundle": args.bundle, "rounds": args.rounds, "clients": args.clients,
              "modes": {k: summary(v) for k, v in results.items()},
              "requests_per_s": {k: float(np.median(v)) for k, v in rates.items()},
              "cpu_ms_per_request_batch1": {k: float(np.median(v)) for k, v in cpu.items()}}
    m = report["modes"]
    c = report["cpu_ms_per_request_batch1"]
    report["added_cpu_ms_batch1"] = c["http_client"] + c["service"] - c["grpc_client"]
    report["added_ms"] = {"batch1_p50": m["http_seq"]["p50_ms"] - m["grpc_seq"]["p50_ms"],
                          "batch1_p99": m["http_seq"]["p99_ms"] - m["grpc_seq"]["p99_ms"],
                          f"c{args.clients}_p50": m["http_conc"]["p50_ms"] - m["grpc_conc"]["p50_ms"],
                          f"c{args.clients}_p99": m["http_conc"]["p99_ms"] - m["grpc_conc"]["p99_ms"]}
    (out / "opencc_http_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| path | clients | n | mean ms | p50 ms | p99 ms | req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label, clients in (("grpc_seq", "gRPC client", 1), ("http_seq", "HTTP /check", 1),
                                ("grpc_conc", "gRPC client", args.clients), ("http_conc", "HTTP /check", args.clients)):
        s, rate = m[key], report["requests_per_s"].get(key)
        lines.append(f"| {label} | {clients} | {s['n']} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                     + (f"{rate:.0f} |" if rate else "- |"))
    added = report["added_ms"]
    lines.append("")
    lines.append(f"Load average at start / end: {load_at_start[0]:.1f} / {report['loadavg_at_end'][0]:.1f} on {os.cpu_count()} CPUs")
    lines.append("Added by the HTTP service (HTTP - gRPC): " + ", ".join(f"{k} {v:+.2f} ms" for k, v in added.items()))
    lines.append(f"CPU per request at batch 1 (median of rounds): gRPC caller {c['grpc_client']:.2f} ms; HTTP caller "
                 f"{c['http_client']:.2f} ms + service process {c['service']:.2f} ms (of which its own gRPC call); "
                 f"added CPU {report['added_cpu_ms_batch1']:+.2f} ms")
    (out / "opencc_http_benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
