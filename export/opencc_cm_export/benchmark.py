"""Reference path vs exported ONNX on ONNX Runtime, measured side by side in one process.

For each (batch, seq): random token ids of exactly that length, warm-up once, then the median
of ``repeats`` timed runs of (a) the reference path as OpenCC serves it (HF eager, unmerged
PEFT, fp32 on CPU) and (b) the exported graph on ONNX Runtime, alternating so both see the
same machine state. Prints a markdown table with the speed-up ratio; optionally writes JSON.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from opencc_cm_contract.bundle_format import ONNX_FILE
from .parity import onnx_runner, onnx_session
from .reference import ReferenceClassifier


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one untimed warm-up call, in ms."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_benchmark(reference: ReferenceClassifier, bundle: str, batches, seqs, repeats: int = 3,
                  progress=print) -> dict:
    session = onnx_session(os.path.join(bundle, ONNX_FILE))
    run_onnx = onnx_runner(session)
    vocab = len(reference.tokenizer)
    rng = np.random.default_rng(0)
    rows = []
    for seq in seqs:
        for batch in batches:
            ids = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
            mask = np.ones_like(ids)
            ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
            ref_ms = median_ms(lambda: reference.logits_from_ids(ids_t, mask_t), repeats)
            ort_ms = median_ms(lambda: run_onnx(ids, mask), repeats)
            row = {"batch": batch, "seq": seq, "reference_ms": ref_ms, "onnxruntime_ms": ort_ms,
                   "speedup": ref_ms / ort_ms}
            rows.append(row)
            progress(f"[bench] batch {batch:>3} seq {seq:>4}: reference {ref_ms:8.1f} ms, "
                     f"ONNX Runtime {ort_ms:8.1f} ms, x{row['speedup']:.2f}")
    return {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__},
        "repeats": repeats,
        "rows": rows,
    }


def markdown_table(result: dict) -> str:
    lines = ["| batch | seq | reference (unmerged PEFT eager, fp32) | ONNX Runtime (merged, fp32) | speed-up |",
             "|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['batch']} | {r['seq']} | {r['reference_ms']:.1f} ms | "
                     f"{r['onnxruntime_ms']:.1f} ms | {r['speedup']:.2f}x |")
    return "\n".join(lines)


def main(args) -> int:
    reference = ReferenceClassifier.load(args.checkpoint, base_model=args.base_model, dtype=torch.float32)
    batches = [int(x) for x in args.batches.split(",")]
    seqs = [int(x) for x in args.seqs.split(",")]
    result = run_benchmark(reference, args.bundle, batches, seqs, args.repeats)
    print(markdown_table(result), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
