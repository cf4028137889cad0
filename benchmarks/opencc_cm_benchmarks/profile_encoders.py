"""Where one encoder run spends its time, by operator: ONNX Runtime's profiler for a graph, torch's
profiler for the python-torch runner.

    python -m opencc_cm_benchmarks.profile_encoders --bundle artifacts/bundles/real-shape-fp32 \
        --onnx model.onnx --torch-dtype bf16 --shapes 1x35 1x256 --out benchmarks/profiles/real-shape.json

For each graph (``--onnx``: files in the bundle or paths; ONNX Runtime CPU provider, 2 intra-op
threads, ``--spinning`` as the server's ``intra_op_spinning``) and, with ``--torch-dtype``, the
torch runner: wall time of ``--repeats`` runs per shape after one warm-up (median), then one
profiled run per shape, its kernel time summed by operator type (ONNX Runtime: ``*_kernel_time``
events inside that run; ONNX Runtime 1.32 reports a Scan's body inside the Scan's time, the sum
stays within a few % of the run's wall time; torch: self CPU time by aten op,
with what the profiler did not see, Python and dispatch, as ``(outside aten ops)``). Random ids.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from opencc_cm_export.benchmark import median_ms

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen


def parse_shape(text: str) -> tuple[int, int]:
    rows, _, tokens = text.partition("x")
    if not (rows.isdigit() and tokens.isdigit()) or int(rows) < 1 or int(tokens) < 1:
        raise SystemExit(f"shape {text!r}: expected ROWSxTOKENS, e.g. 1x35")
    return int(rows), int(tokens)


def feeds(shapes, vocab: int):
    rng = np.random.default_rng(0)
    for rows, tokens in shapes:
        ids = rng.integers(0, vocab, (rows, tokens)).astype(np.int64)
        yield (rows, tokens), ids, np.ones_like(ids)


def top(by_op: dict[str, float], count: dict[str, int], total: float, n: int = 20) -> list[dict]:
    return [{"op": op, "ms": round(ms, 2), "share": round(ms / total, 4) if total else None, "calls": count[op]}
            for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:n]]


def profile_onnx(path: Path, shapes, vocab: int, repeats: int, spinning: bool) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort-profile-")) / "p")
    profiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out, runs = {}, []
    for shape, ids, mask in feeds(shapes, vocab):
        feed = {"input_ids": ids, "attention_mask": mask}
        ms = median_ms(lambda feed=feed: plain.run(None, feed), repeats)
        profiled.run(None, feed)  # warm-up, then the profiled run
        profiled.run(None, feed)
        runs.append((shape, ms))
    events = json.loads(Path(profiled.end_profiling()).read_text())
    model_runs = [e for e in events if e.get("name") == "model_run"]
    for i, (shape, ms) in enumerate(runs):
        run = model_runs[2 * i + 1]  # the second run of each shape
        lo, hi = run["ts"], run["ts"] + run["dur"]
        by_op, count = collections.defaultdict(float), collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and lo <= e["ts"] <= hi:
                op = e["args"].get("op_name", "?")
                by_op[op] += e["dur"] / 1e3
                count[op] += 1
        total = sum(by_op.values())
        out[f"{shape[0]}x{shape[1]}"] = {"wall_ms_median": round(ms, 1), "profiled_run_ms": round(run["dur"] / 1e3, 1),
                                         "kernel_ms": round(total, 1), "nodes": sum(count.values()),
                                         "by_op": top(by_op, count, total)}
    return out


def profile_torch(bundle: Path, dtype: str, shapes, vocab: int, repeats: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from opencc_cm_export.torch_encoder import TorchEncoder, TorchEncoderSettings

    encoder = TorchEncoder(bundle, TorchEncoderSettings(device="cpu", dtype=dtype), log=lambda *_: None)
    out = {}
    for shape, ids, mask in feeds(shapes, vocab):
        ms = median_ms(lambda ids=ids, mask=mask: encoder(ids, mask), repeats)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder(ids, mask)
        run_ms = (time.perf_counter() - t0) * 1e3
        by_op, count = collections.defaultdict(float), collections.Counter()
        for event in prof.key_averages():
            by_op[event.key] += event.self_cpu_time_total / 1e3
            count[event.key] += event.count
        total = sum(by_op.values())
        out[f"{shape[0]}x{shape[1]}"] = {"wall_ms_median": round(ms, 1), "profiled_run_ms": round(run_ms, 1),
                                         "aten_self_ms": round(total, 1), "calls": sum(count.values()),
                                         "by_op": top(by_op, count, total)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--onnx", nargs="*", default=["model.onnx"], help="graphs: names in the bundle or paths")
    p.add_argument("--torch-dtype", choices=["fp32", "bf16"], help="also profile the python-torch runner")
    p.add_argument("--shapes", nargs="+", default=["1x35", "1x256"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--spinning", choices=["on", "off"], default="off", help="ONNX Runtime intra-op spinning")
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    shapes = [parse_shape(s) for s in args.shapes]
    bundle = Path(args.bundle)
    config = json.loads((bundle / "classifier_config.json").read_text())
    vocab = int(config.get("text_config", config)["vocab_size"])
    report = {"bundle": str(bundle), "shapes": args.shapes, "repeats": args.repeats, "spinning": args.spinning,
              "load_average_start": os.getloadavg(), "onnx": {}, "torch": None}
    for name in args.onnx:
        path = Path(name) if Path(name).is_file() else bundle / name
        report["onnx"][str(path)] = profile_onnx(path, shapes, vocab, args.repeats, args.spinning == "on")
        for shape, r in report["onnx"][str(path)].items():
            print(f"{path.name} {shape}: {r['wall_ms_median']} ms; " + ", ".join(
                f"{o['op']} {o['ms']:.1f} ({o['calls']})" for o in r["by_op"][:8]))
    if args.torch_dtype:
        import torch

        torch.set_num_threads(2)
        report["torch"] = {"dtype": args.torch_dtype,
                           "by_shape": profile_torch(bundle, args.torch_dtype, shapes, vocab, args.repeats)}
        for shape, r in report["torch"]["by_shape"].items():
            outside = r["profiled_run_ms"] - r["aten_self_ms"]
            print(f"torch {args.torch_dtype} {shape}: {r['wall_ms_median']} ms; (outside aten ops) {outside:.1f}; "
                  + ", ".join(f"{o['op']} {o['ms']:.1f} ({o['calls']})" for o in r["by_op"][:8]))
    report["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
