"""Memory per request: what one long row costs the encoder, blocked attention vs transformers' attention.

Two parts, each point in a FRESH subprocess (so no point inherits another's heap or arena):

1. In-process ONNX Runtime, through the serving code (``opencc_cm_serving.onnx_runner.OnnxEncoder``),
   one row of each length: RSS before (model loaded, one 16-token warm-up run), peak RSS during
   the run (``/proc/self/status`` VmHWM after resetting it through ``/proc/self/clear_refs``, and
   a 5 ms sampler as a cross-check), RSS right after, RSS after one more 16-token request, and
   the wall time of the run. For the old graph (``--old-bundle``: exported with
   ``--query-block 0``, i.e. transformers' attention holding [heads, seq, seq] scores) and the new
   one, each with the encoder memory modes asked for: ``shrink`` (the default: arena shrunk
   after each run), ``release`` (no arena), ``arena`` (kept); a ``+reuse`` suffix turns ONNX
   Runtime's buffer-reuse planning back on (``enable_mem_reuse``, its own default; the encoder
   runs without it, see ``onnx_runner``). ``arena+reuse`` is ONNX Runtime's defaults.
2. Through the real Triton server (``python-ort`` target, ``opencc_cm_serving.deploy`` +
   ``opencc_cm_serving.launch.TritonServer``): the encoder stub's RSS (sampled every 20 ms)
   before, during and after one max-length ``classify_ids`` request, then two concurrent ones;
   whether the stub survived (same pid, a short request still answers).

    python benchmarks/memory/bench_memory.py --bundle artifacts/bundles/real-shape-fp32 \
        --old-bundle artifacts/bundles/real-shape-fp32-main --out benchmarks/memory

Writes ``memory_benchmark.json`` and ``memory_benchmark.md`` to ``--out``. Timings are wall
clock on whatever machine runs it; the figures quoted in BENCHMARKS.md say which machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from opencc_cm_contract.bundle_format import ClassifierManifest

MIB = 2**20
WARMUP_TOKENS = 16


# --------------------------------------------------------------------------------------------
# One in-process point (runs in its own subprocess: `bench_memory.py point ...`)
# --------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _anon_mib() -> float:
    """Anonymous RSS: what the process allocated. The rest of RSS is file-backed: the graph's
    external weights, memory-mapped, page in as rows of the embedding table are first used
    (random ids over the 248k vocabulary page in ~48 KiB per token, with the kernel's
    fault-around); those pages are the model's, shared and reclaimable, not a request's."""
    return _status_kib("RssAnon") / 1024.0


def _rss_mib() -> float:
    return _status_kib("VmRSS") / 1024.0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class _Sampler:
    def __init__(self, read, interval_s: float):
        self.read, self.interval_s = read, interval_s
        self.peak = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.read())
                self.samples += 1
            except Exception:  # noqa: BLE001 - process gone
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_point(bundle: Path, length: int, memory: str, threads: int) -> dict:
    from opencc_cm_serving.bundle import CLASSIFIER_FILE, load_classifier
    from opencc_cm_serving.onnx_runner import OnnxEncoder

    spec = load_classifier(bundle / CLASSIFIER_FILE)
    started = time.perf_counter()
    mode, _, planner = memory.partition("+")
    if planner not in ("", "reuse"):
        raise SystemExit(f"memory mode {memory!r}: the only suffix is +reuse")
    if mode.startswith("torch-"):  # the python-torch runner on the CPU, e.g. torch-bf16
        from opencc_cm_export.torch_encoder import TorchEncoder, TorchEncoderSettings

        encoder = TorchEncoder(bundle, TorchEncoderSettings(device="cpu", dtype=mode.removeprefix("torch-"),
                                                            threads=threads), log=lambda line: None)
        reuse_buffers = None
    else:
        encoder = OnnxEncoder(bundle / "model.onnx", spec.num_labels, providers="CPUExecutionProvider",
                              intra_op_threads=threads, memory=mode, reuse_buffers=planner == "reuse")
        reuse_buffers = encoder.reuse_buffers
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(length)
    short = rng.integers(0, spec.vocab_size, size=(1, WARMUP_TOKENS), dtype=np.int64)
    encoder(short, np.ones_like(short))
    rss_before, anon_before = _rss_mib(), _anon_mib()
    ids = rng.integers(0, spec.vocab_size, size=(1, length), dtype=np.int64)
    mask = np.ones_like(ids)
    hwm_reset = _reset_peak()
    with _Sampler(_rss_mib, 0.005) as sampler, _Sampler(_anon_mib, 0.005) as anon_sampler:
        t0 = time.perf_counter()
        logits = encoder(ids, mask)
        run_s = time.perf_counter() - t0
    peak_hwm = _status_kib("VmHWM") / 1024.0 if hwm_reset else float("nan")
    rss_after, anon_after = _rss_mib(), _anon_mib()
    encoder(short, np.ones_like(short))
    rss_after_short = _rss_mib()
    peak = max(sampler.peak, peak_hwm) if hwm_reset else sampler.peak
    return {
        "bundle": str(bundle), "length": length, "memory_mode": memory, "threads": threads,
        "reuse_buffers": reuse_buffers, "load_s": round(load_s, 2), "run_s": round(run_s, 3), "ms_per_token": round(1000 * run_s / length, 3),
        "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(peak, 1),
        "peak_added_mib": round(peak - rss_before, 1),
        "peak_source": "VmHWM after clear_refs" if hwm_reset else "5 ms sampler",
        "peak_sampler_mib": round(sampler.peak, 1), "sampler_samples": sampler.samples,
        "rss_after_mib": round(rss_after, 1), "rss_after_short_mib": round(rss_after_short, 1),
        "after_vs_before": round(rss_after / rss_before, 4),
        "after_short_vs_before": round(rss_after_short / rss_before, 4),
        "anon_before_mib": round(anon_before, 1), "anon_peak_added_mib": round(anon_sampler.peak - anon_before, 1),
        "anon_after_mib": round(anon_after, 1), "anon_after_vs_before": round(anon_after / anon_before, 4),
        "file_rss_added_after_mib": round((rss_after - anon_after) - (rss_before - anon_before), 1),
        "finite_logits": bool(np.isfinite(logits).all()),
    }


def _meminfo_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def point_in_subprocess(bundle: Path, length: int, memory: str, threads: int, timeout_s: float) -> dict:
    cmd = [sys.executable, __file__, "point", "--bundle", str(bundle), "--length", str(length),
           "--memory", memory, "--threads", str(threads)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        return {"bundle": str(bundle), "length": length, "memory_mode": memory,
                "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["subprocess_s"] = round(time.perf_counter() - started, 1)
    return result


# --------------------------------------------------------------------------------------------
# Through the real Triton server
# --------------------------------------------------------------------------------------------
def _encoder_stub(server_pid: int):
    import psutil

    for proc in psutil.Process(server_pid).children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if any(a.endswith("/model.py") and Path(a).parent.parent.name == "encoder" for a in cmd):
            return proc
    raise RuntimeError("no encoder stub process under the server")


def triton_part(bundle: Path, max_tokens: int, tmp: Path, log: Path, progress, queue_timeout_s: float) -> dict:
    import psutil

    from opencc_cm_client import ClassifierClient, ConnectionOptions
    from opencc_cm_serving.bundle import CLASSIFIER_FILE, load_classifier
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES as repo_src
    repo = tmp / "repository"
    if deploy_main(["--bundle", str(bundle), "--repository", str(repo_src), "--output", str(repo),
                    "--target", "python-ort", "--queue-timeout-us", str(int(queue_timeout_s * 1e6))]) != 0:
        raise RuntimeError("deploy failed")
    config = (repo / "encoder" / "config.pbtxt").read_text()
    spec = load_classifier(bundle / CLASSIFIER_FILE)
    rng = np.random.default_rng(7)
    vocab = spec.vocab_size  # ids over the whole embedding table, as real texts (248k tokens) use it
    long_row = rng.integers(0, vocab, size=max_tokens).tolist()
    short_row = rng.integers(0, vocab, size=WARMUP_TOKENS).tolist()
    out: dict = {"max_tokens": max_tokens, "queue_timeout_s": queue_timeout_s, "encoder_config_parameters": [
        line.strip() for line in config.splitlines() if "max_group_tokens" in line or "attention_span" in line
        or "memory" in line and "key" in line]}
    progress(f"[triton] starting the server on {repo}")
    with TritonServer(repo, ServerSettings(log_path=log)) as server:
        stub = _encoder_stub(server.process.pid)
        pid = stub.pid

        def stub_rss() -> float:
            return psutil.Process(pid).memory_info().rss / MIB

        def stub_anon() -> float:  # RSS less file-backed and shared pages (weights, /dev/shm tensors)
            info = psutil.Process(pid).memory_info()
            return (info.rss - info.shared) / MIB

        options = ConnectionOptions(timeout_s=3600)

        def classify(row):
            with ClassifierClient(server.grpc_url, options=options) as client:
                t0 = time.perf_counter()
                result = client.classify_ids([row])[0]
                return time.perf_counter() - t0, result

        classify(short_row)
        time.sleep(1.0)
        for name, n in (("one max-length request", 1), ("two concurrent max-length requests", 2)):
            before, anon_before = stub_rss(), stub_anon()
            progress(f"[triton] {name}: stub RSS before {before:.0f} MiB")
            with _Sampler(stub_rss, 0.02) as sampler, _Sampler(stub_anon, 0.02) as anon_sampler, \
                    ThreadPoolExecutor(n) as pool:
                t0 = time.perf_counter()
                futures = [pool.submit(classify, long_row) for _ in range(n)]
                outcomes = []
                for f in futures:
                    try:
                        seconds, result = f.result()
                        outcomes.append({"ok": True, "latency_s": round(seconds, 2),
                                         "input_tokens": result.input_tokens})
                    except Exception as exc:  # noqa: BLE001 - recorded, the point of the test
                        outcomes.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
                wall = time.perf_counter() - t0
            time.sleep(1.0)
            alive = psutil.pid_exists(pid) and _encoder_stub(server.process.pid).pid == pid
            after = stub_rss() if alive else float("nan")
            anon_after = stub_anon() if alive else float("nan")
            try:
                short_s, _ = classify(short_row)
                short_ok = True
            except Exception as exc:  # noqa: BLE001
                short_s, short_ok = float("nan"), f"{type(exc).__name__}: {exc}"[:300]
            after_short = stub_rss() if alive else float("nan")
            out[name] = {
                "requests": n, "outcomes": outcomes, "wall_s": round(wall, 2),
                "stub_rss_before_mib": round(before, 1), "stub_peak_rss_mib": round(sampler.peak, 1),
                "stub_peak_added_mib": round(sampler.peak - before, 1),
                "stub_rss_after_mib": round(after, 1), "stub_rss_after_short_mib": round(after_short, 1),
                "after_vs_before": round(after / before, 4), "stub_survived_same_pid": alive,
                "short_request_after": short_ok, "short_request_after_s": round(short_s, 3),
                "sampler_samples": sampler.samples,
                "stub_anon_before_mib": round(anon_before, 1),
                "stub_anon_peak_added_mib": round(anon_sampler.peak - anon_before, 1),
                "stub_anon_after_vs_before": round(anon_after / anon_before, 4),
            }
            progress(f"[triton] {name}: peak {sampler.peak:.0f} MiB (+{sampler.peak - before:.0f}), after "
                     f"{after:.0f} MiB, survived {alive}, {outcomes}")
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def fit_attention_span(points: list[dict]) -> dict | None:
    """Least squares t(L) = a L + b L^2 over one graph's points; span = a / b (tokens)."""
    pts = [(p["length"], p["run_s"]) for p in points if "run_s" in p]
    if len(pts) < 2:
        return None
    lengths = np.array([p[0] for p in pts], dtype=float)
    times = np.array([p[1] for p in pts], dtype=float)
    design = np.stack([lengths, lengths**2], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, times, rcond=None)
    return {"linear_s_per_token": float(a), "quadratic_s_per_token2": float(b),
            "attention_span_tokens": float(a / b) if b > 0 else None}


def render_markdown(report: dict) -> str:
    lines = ["# Memory per request", "",
             "Points with n/a come from an interrupted run rebuilt from its progress lines "
             "(`reconstructed_from_log` in the JSON); `run_started` names the run of each point.", "",
             f"Run {report['started']} ({report['duration_s']:.0f} s) on {report['machine']['cpu']} "
             f"({report['machine']['cores']} cores, {report['machine']['memory_gib']} GiB), "
             f"onnxruntime {report['machine']['onnxruntime']}. Command: `{report['command']}`", "",
             "## One row in a fresh process (ONNX Runtime through `OnnxEncoder`)", "",
             "| graph | encoder memory | tokens | RSS before MiB | peak MiB | peak added MiB | after MiB | "
             "after / before | after a short request MiB | anonymous: peak added MiB | anonymous: after / before | "
             "file-backed added MiB | time per row s | load avg (1 min) before |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in report["points"]:
        if "error" in p or "skipped" in p:
            lines.append(f"| {p['graph']} | {p['memory_mode']} | {p['length']} | "
                         f"{p.get('skipped') or p.get('error')[:80]} | | | | | | | | | | |")
            continue
        def num(key, fmt=",.0f", p=p):
            return format(p[key], fmt) if key in p else "n/a"

        lines.append(f"| {p['graph']} | {p['memory_mode']} | {p['length']:,} | {num('rss_before_mib')} | "
                     f"{num('peak_rss_mib')} | **{num('peak_added_mib')}** | {num('rss_after_mib')} | "
                     f"{num('after_vs_before', '.3f')} | {num('rss_after_short_mib')} | {num('anon_peak_added_mib')} | "
                     f"{num('anon_after_vs_before', '.3f')} | {num('file_rss_added_after_mib')} | {num('run_s', '.2f')} | "
                     f"{(p.get('load_average_before') or ['?'])[0]} |")
    for graph, fit in report.get("time_fit", {}).items():
        if fit:
            lines.append("")
            lines.append(f"Time fit, {graph} graph: t(L) = {fit['linear_s_per_token'] * 1000:.3f} ms x L + "
                         f"{fit['quadratic_s_per_token2'] * 1e6:.4f} us x L^2 -> attention span "
                         f"{fit['attention_span_tokens'] or float('nan'):,.0f} tokens")
    triton = report.get("triton")
    if triton:
        lines += ["", f"## Through Triton (python-ort encoder, {triton['max_tokens']:,}-token rows, `classify_ids`)", "",
                  "| case | stub RSS before MiB | peak MiB | peak added MiB | after MiB | after / before | "
                  "anonymous: peak added MiB | anonymous: after / before | "
                  "survived | requests ok | wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
        for name in ("one max-length request", "two concurrent max-length requests"):
            t = triton.get(name)
            if not t:
                continue
            ok = sum(o["ok"] for o in t["outcomes"])
            lines.append(f"| {name} | {t['stub_rss_before_mib']:,.0f} | {t['stub_peak_rss_mib']:,.0f} | "
                         f"**{t['stub_peak_added_mib']:,.0f}** | {t['stub_rss_after_mib']:,.0f} | "
                         f"{t['after_vs_before']:.3f} | {t.get('stub_anon_peak_added_mib', float('nan')):,.0f} | "
                         f"{t.get('stub_anon_after_vs_before', float('nan')):.3f} | "
                         f"{t['stub_survived_same_pid']} | {ok}/{t['requests']} | "
                         f"{t['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    point = sub.add_parser("point")
    point.add_argument("--bundle", required=True, type=Path)
    point.add_argument("--length", required=True, type=int)
    point.add_argument("--memory", default="shrink",
                       help="an ONNX Runtime encoder memory mode (+reuse), or torch-fp32 / torch-bf16: the "
                            "python-torch runner on the CPU")
    point.add_argument("--threads", type=int, default=0)
    render = sub.add_parser("render", help="re-render memory_benchmark.md from a JSON report")
    render.add_argument("--json", required=True, type=Path)
    parser.add_argument("--bundle", type=Path, help="the new bundle (blocked attention)")
    parser.add_argument("--old-bundle", type=Path, help="the bundle exported with transformers' attention (--query-block 0)")
    parser.add_argument("--lengths", default="1024,2048,4096,8192")
    parser.add_argument("--modes", default="shrink,shrink+reuse",
                        help="encoder memory modes for the new graph (+reuse: ONNX Runtime's buffer-reuse planning on)")
    parser.add_argument("--old-modes", default="arena+reuse", help="encoder memory modes for the old graph")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("--graphs", default="new,old", help="which in-process series to run now")
    parser.add_argument("--include-points", type=Path,
                        help="a JSON report of an earlier run whose points join this report (kept as measured, "
                             "each with its run's start time and load average)")
    parser.add_argument("--min-free-factor", type=float, default=1.5,
                        help="skip an old-graph point when MemAvailable < factor x (4 x its half-length peak)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/memory"))
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--queue-timeout-s", type=float, default=600,
                        help="the Triton part's deployed queue timeout: long enough that the second of two "
                             "concurrent max-length rows is computed after the first on a slow CPU "
                             "(the deploy default, 30 s, would answer it 'Request timeout expired')")
    args = parser.parse_args(argv)
    if args.cmd == "point":
        print(json.dumps(run_point(args.bundle, args.length, args.memory, args.threads)))
        return 0
    if args.cmd == "render":
        (args.json.parent / "memory_benchmark.md").write_text(render_markdown(json.loads(args.json.read_text())))
        return 0
    if not args.bundle:
        parser.error("--bundle is required")

    def progress(msg):
        print(msg, flush=True)

    import onnxruntime

    started = time.time()
    lengths = [int(x) for x in args.lengths.split(",")]
    report = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/memory/bench_memory.py", *(argv or sys.argv[1:])]),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "memory_gib": round(_meminfo_total_gib(), 1), "onnxruntime": onnxruntime.__version__,
                    "load_average_start": os.getloadavg()},
        "points": [],
    }
    wanted = args.graphs.split(",")
    graphs = [("new", args.bundle, args.modes.split(","))] if "new" in wanted else []
    if args.old_bundle and "old" in wanted:
        graphs.append(("old", args.old_bundle, args.old_modes.split(",")))
    if args.include_points:
        earlier = json.loads(args.include_points.read_text())
        for p in earlier["points"]:
            if "reuse_buffers" not in p and "memory_mode" in p:  # measured before the switch existed:
                p["reuse_buffers"] = True                        # ONNX Runtime's default was on
                p["memory_mode"] += "+reuse"
            p.setdefault("run_started", earlier["started"])
            p.setdefault("run_load_average", [earlier["machine"]["load_average_start"],
                                              earlier["machine"].get("load_average_end")])
            report["points"].append(p)
        report.setdefault("bundles", {}).update(earlier.get("bundles", {}))
        report["included_runs"] = [{"started": earlier["started"], "command": earlier["command"],
                                    "duration_s": earlier["duration_s"], "machine": earlier["machine"]}]
    for graph, bundle, modes in graphs:
        manifest = ClassifierManifest.read(bundle)
        report.setdefault("bundles", {})[graph] = {
            "path": str(bundle), "attention_query_block": manifest.attention_query_block,
            "max_tokens": manifest.max_tokens, "parity_max_abs_score_diff": manifest.parity["max_abs_score_diff"]}
        for mode in modes:
            previous = None
            for length in lengths:
                avail = _meminfo_available_mib()
                if graph == "old" and previous and "peak_added_mib" in previous:
                    need = 4 * previous["peak_added_mib"] * args.min_free_factor
                    if avail < need:
                        skipped = {"graph": graph, "bundle": str(bundle), "length": length, "memory_mode": mode,
                                   "skipped": f"MemAvailable {avail:.0f} MiB < {need:.0f} MiB needed (est.)"}
                        report["points"].append(skipped)
                        progress(f"[point] {graph} {mode} {length}: {skipped['skipped']}")
                        continue
                progress(f"[point] {graph} graph, memory {mode}, {length} tokens (MemAvailable {avail:.0f} MiB)")
                load = [round(x, 2) for x in os.getloadavg()]
                result = point_in_subprocess(bundle, length, mode, args.threads, args.timeout_s)
                result["graph"] = graph
                result["mem_available_before_mib"] = round(avail, 0)
                result["run_started"] = report["started"]
                result["load_average_before"] = load
                report["points"].append(result)
                args.out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
                (args.out / "memory_benchmark.partial.json").write_text(json.dumps(report, indent=2) + "\n")
                shown = {k: result.get(k) for k in ('peak_added_mib', 'rss_before_mib', 'rss_after_mib', 'run_s', 'error')}
                progress(f"[point]   -> {json.dumps(shown)}")
                previous = result
    report["time_fit"] = {}
    for graph, mode in (("new", args.modes.split(",")[0]), ("old", args.old_modes.split(",")[0])):
        pts = [p for p in report["points"] if p["graph"] == graph and p.get("memory_mode") == mode]
        report["time_fit"][graph] = fit_attention_span(pts)
    if not args.no_triton:
        import tempfile

        manifest = ClassifierManifest.read(args.bundle)
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            report["triton"] = triton_part(args.bundle, manifest.max_tokens, Path(tmp),
                                           args.out / "tritonserver-bench-memory.log", progress,
                                           args.queue_timeout_s)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["duration_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "memory_benchmark.md").write_text(render_markdown(report))
    (args.out / "memory_benchmark.partial.json").unlink(missing_ok=True)
    progress(render_markdown(report))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _meminfo_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
