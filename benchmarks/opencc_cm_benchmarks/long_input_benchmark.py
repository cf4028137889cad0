"""Long and huge texts beside short prompts, on the real Triton server (classify_text).

``python -m opencc_cm_benchmarks.long_input_benchmark --bundle BUNDLE [--scenario long-text]
[--scenario huge-windows] [--scenario huge-reject] [--templates model_repository] [--out result.json]``

A probe client sends a one-line prompt through ``classify_text`` every 20 ms (one at a time)
while the scenario's request runs; its latency is reported while that request is in flight.

- ``long-text`` (``--long-input-policy windows``): one word of ``--letters`` random lowercase
  letters (100,000: ~14 windows of 8,192 tokens with the tiny bundle), first on the idle server,
  then beside the probe: latency and outcome of the long text, probe latency meanwhile;
- ``huge-windows`` (windows): 2 concurrent requests of 8 texts of 1 MiB of one emoji (refused:
  too many windows): their outcome and the probe's latency meanwhile;
- ``huge-reject`` (``--long-input-policy reject``): one request of 64 texts, each a
  100,000-letter word (refused: above max_tokens): likewise;
- ``ort-spinning`` (no server): the bundle's graph in ONNX Runtime in this process, with idle
  intra-op threads spinning and not (``session.intra_op.allow_spinning``, the encoder's
  ``intra_op_spinning``): one max_tokens row alone, then beside 20-token rows every 20 ms from
  another thread (the two lanes), and two max_tokens rows in one run;
- ``tokenizer`` (no server): the bundle's tokenizer in this process: time to encode the texts
  above, and its longest token in bytes (the best lower bound on tokens per byte of text).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from opencc_cm_contract import TEXT, TEXT_ENSEMBLE

PROBE_TEXT = "How do I reset the password of my own router?"


def _inputs(texts: list[bytes]) -> list:
    import tritonclient.grpc as grpcclient

    data = np.array([[t] for t in texts], dtype=object)
    tensor = grpcclient.InferInput(TEXT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return [tensor]


def _pct(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(np.asarray(values), q)), 1) if values else float("nan")


def _probe_loop(url: str, interval: float, stop, calls) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    with grpcclient.InferenceServerClient(url) as client:
        while not stop.is_set():
            start = time.monotonic()
            error = None
            try:
                client.infer(TEXT_ENSEMBLE, _inputs([PROBE_TEXT.encode()]), client_timeout=120)
            except InferenceServerException as exc:
                error = f"{exc.status()}: {str(exc.message())[-100:]}"
            calls.put((start, time.monotonic() - start, error))
            time.sleep(max(0.0, interval - (time.monotonic() - start)))


class Probe:
    """A short prompt every ``interval`` s until stopped, from its own process (the big
    requests' serialization in this one must not hold it back): (start, latency, error) per
    call, on the system-wide monotonic clock."""

    def __init__(self, url: str, interval: float = 0.02):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.stop, self.queue, self.calls = ctx.Event(), ctx.Queue(), []
        self.process = ctx.Process(target=_probe_loop, args=(url, interval, self.stop, self.queue), daemon=True)

    def start(self) -> None:
        self.process.start()
        while self.queue.empty():  # started: its first call answered
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        while self.process.is_alive() or not self.queue.empty():
            try:
                self.calls.append(self.queue.get(timeout=0.5))
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
        self.process.join()

    def during(self, start: float, end: float) -> dict:
        """Probe calls that overlapped [start, end]."""
        lat = [d for s, d, _ in self.calls if s <= end and s + d >= start]
        errors = [e for s, d, e in self.calls if e and s <= end and s + d >= start]
        return {"n": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                "max_ms": _pct(lat, 100), "errors": errors[:5], "error_count": len(errors)}


def _call(url: str, texts: list[bytes], out: list, timeout_s: float = 600) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    with grpcclient.InferenceServerClient(url) as client:
        start = time.monotonic()
        try:
            client.infer(TEXT_ENSEMBLE, _inputs(texts), client_timeout=timeout_s)
            outcome = "answered"
        except InferenceServerException as exc:
            outcome = f"{exc.status()}: {str(exc.message())[:240]}"
        out.append({"start": start, "seconds": round(time.monotonic() - start, 2), "outcome": outcome})


def _concurrent(url: str, requests: list[list[bytes]], probe: Probe) -> dict:
    """Send ``requests`` at once beside the running probe; stops the probe."""
    out: list = []
    threads = [threading.Thread(target=_call, args=(url, texts, out)) for texts in requests]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()
    probe.finish()
    return {"requests": [{k: v for k, v in r.items() if k != "start"} for r in out],
            "probe_meanwhile": probe.during(start, end),
            "probe_before": probe.during(0, start - 0.2)}


def _server(bundle: Path, work: Path, templates: str, policy: str, extra: list[str]):
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = work / f"repo-{policy}"
    code = deploy_main(["--bundle", str(bundle), "--repository", templates, "--output", str(repo),
                        "--target", "python-ort", "--long-input-policy", policy, *extra])
    if code:
        raise SystemExit(f"deploy failed ({code})")
    return TritonServer(repo, ServerSettings(log_path=work / f"tritonserver-{policy}.log", ready_timeout=300))


def long_word(letters: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(rng.integers(ord("a"), ord("z") + 1, letters).astype(np.uint8))


def ort_spinning(bundle: Path, rounds: int = 2) -> dict:
    import onnxruntime as ort

    from opencc_cm_serving.bundle import load_classifier

    max_tokens = load_classifier(bundle / "classifier.json").max_tokens
    rng = np.random.default_rng(0)
    out: dict = {}
    for spinning in ["1", "0"] * rounds:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.enable_mem_reuse = False  # as the encoder (onnx_runner)
        session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])

        def once(rows: int, width: int) -> float:
            ids = rng.integers(0, 1000, (rows, width)).astype(np.int64)
            start = time.monotonic()
            session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
            return time.monotonic() - start

        once(1, max_tokens)  # warm
        alone = once(1, max_tokens)
        stop, short = threading.Event(), []

        def shorts():
            while not stop.is_set():
                short.append(once(1, 20))
                time.sleep(0.02)

        thread = threading.Thread(target=shorts)
        thread.start()
        time.sleep(0.2)
        beside = once(1, max_tokens)
        stop.set()
        thread.join()
        two = once(2, max_tokens)
        out.setdefault(f"spinning_{spinning}", []).append(
            {"one_row_alone_s": round(alone, 2), "one_row_beside_short_rows_s": round(beside, 2),
             "two_rows_one_run_s": round(two, 2), "short_rows_p50_ms": _pct(short, 50),
             "short_rows_max_ms": _pct(short, 100), "short_rows": len(short)})
    return {"max_tokens": max_tokens, **out}


def tokenizer_costs(bundle: Path) -> dict:
    from opencc_cm_contract.text_rules import encode_texts, load_tokenizer

    tokenizer = load_tokenizer(bundle / "tokenizer.json")
    out = {"longest_token_bytes": max(len(tokenizer.decode([i]).encode()) for i in range(tokenizer.get_vocab_size()))}
    for name, text in (("one_emoji_1_MiB", "\U0001F642" * 2 ** 18), ("letters_100000", long_word(100_000).decode())):
        start = time.monotonic()
        ids = encode_texts(tokenizer, [text])[0]
        out[name] = {"bytes": len(text.encode()), "tokens": len(ids), "seconds": round(time.monotonic() - start, 3)}
    return out


def run(args: argparse.Namespace) -> dict:
    result: dict = {"command": " ".join(["python -m opencc_cm_benchmarks.long_input_benchmark", *sys.argv[1:]]),
                    "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load_average_1min_start": os.getloadavg()[0]}
    work = Path(tempfile.mkdtemp(prefix="opencc-long-input-"))
    scenarios = args.scenario or ["long-text", "huge-windows", "huge-reject"]
    if "tokenizer" in scenarios:
        result["tokenizer"] = tokenizer_costs(Path(args.bundle))
    if "ort-spinning" in scenarios:
        result["ort-spinning"] = ort_spinning(Path(args.bundle))
    try:
        windows = [s for s in scenarios if s in ("long-text", "huge-windows")]
        if windows:
            with _server(Path(args.bundle), work, args.templates, "windows", args.deploy_arg) as server:
                url = server.grpc_url
                _call(url, [PROBE_TEXT.encode()], [])  # warm
                if "long-text" in windows:
                    word = long_word(args.letters)
                    idle: list = []
                    _call(url, [word], idle)
                    probe = Probe(url)
                    probe.start()
                    time.sleep(1.0)
                    loaded = _concurrent(url, [[word]] * args.long_repeats, probe)
                    result["long-text"] = {"letters": args.letters, "idle": {k: v for k, v in idle[0].items()
                                                                             if k != "start"},
                                           "beside_probe": loaded}
                if "huge-windows" in windows:
                    emoji = ("\U0001F642" * (2 ** 18)).encode()  # 1 MiB
                    probe = Probe(url)
                    probe.start()
                    time.sleep(1.0)
                    result["huge-windows"] = _concurrent(url, [[emoji] * 8, [emoji] * 8], probe)
        if "huge-reject" in scenarios:
            with _server(Path(args.bundle), work, args.templates, "reject", args.deploy_arg) as server:
                url = server.grpc_url
                _call(url, [PROBE_TEXT.encode()], [])
                probe = Probe(url)
                probe.start()
                time.sleep(1.0)
                word = long_word(100_000)
                result["huge-reject"] = _concurrent(url, [[word] * 64], probe)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_1min_end"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_benchmarks.long_input_benchmark",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--templates", default="model_repository", help="model repository holding the templates")
    p.add_argument("--scenario", action="append", choices=("long-text", "huge-windows", "huge-reject", "ort-spinning", "tokenizer"))
    p.add_argument("--letters", type=int, default=100_000, help="long-text: letters of the one word")
    p.add_argument("--long-repeats", type=int, default=1, help="long-text: concurrent copies beside the probe")
    p.add_argument("--deploy-arg", action="append", default=[], help="extra deploy argument (repeatable)")
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
