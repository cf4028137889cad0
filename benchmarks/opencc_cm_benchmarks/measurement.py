"""Measurement shared by the benchmarks: latency summaries (``opencc_cm_contract.latency``, the
model card's definition), throughput, CPU accounting (machine-wide disturbance; CPU seconds of given
process trees), RSS sampling of a process tree, and Triton's per-model inference statistics
with the deltas between two snapshots."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time
from pathlib import Path



STATS_SETTLE_S = 0.3  # an ensemble records its statistics just after answering: let them land


def throughput(prompts: int, tokens: int, wall_s: float, usd_per_hour: float) -> dict:
    tps = tokens / wall_s if wall_s > 0 else float("nan")
    return {"prompts": prompts, "tokens": tokens, "wall_s": wall_s,
            "prompts_per_s": prompts / wall_s if wall_s > 0 else float("nan"), "tokens_per_s": tps,
            "usd_per_1m_tokens": usd_per_hour / 3600.0 / tps * 1e6 if tps > 0 else float("nan")}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


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


class ProcessCpu:
    """CPU seconds (user + system) of a set of live processes, read with psutil: a process tree
    (e.g. tritonserver and its Python-backend stubs, each stub reported by its model name) or
    this process. ``snapshot()`` -> {name: seconds}; ``delta(a, b)`` per name and in total."""

    def __init__(self, root_pid: int | None = None, *, tree: bool = True):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(root_pid or os.getpid())
        self.tree = tree

    def snapshot(self) -> dict[str, float]:
        psutil = self._psutil
        procs = [self.root]
        if self.tree:
            try:
                procs += self.root.children(recursive=True)
            except psutil.Error:
                pass
        out: dict[str, float] = {}
        for proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            name = TreeMemory._name(proc) if self.tree else "self"
            out[name] = out.get(name, 0.0) + t.user + t.system
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        d = {k: v - before.get(k, 0.0) for k, v in after.items()}
        d["total"] = sum(d.values())
        return d
