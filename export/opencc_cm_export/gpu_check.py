"""The whole GPU check in one run (issue: prove and measure the serving path on the H100).

    PYTHONPATH=client:serving:export python -m opencc_cm_export.gpu_check --out $OUT

1. Baseline: the reference path as the model card measured it - HF eager, unmerged PEFT, bf16,
   batch 1, sequential, tokenize -> forward (with the vocabulary projection, as the reference
   does) -> fp32 head -> sigmoid -> host. Latency mean / p50 / p95.
2. Ours on the same GPU: the merged classifier (no vocabulary projection) in bf16, eager, and
   replayed from CUDA graphs captured per (batch, length bucket) - right padding to the bucket
   is exact. Parity against an fp32 reference on the GPU: max |score diff| and decision
   agreement, for both the baseline and ours. Throughput at batch 64 of ~35-token prompts.
3. Triton with the encoder on the GPU: only if ``pytriton`` and ``onnxruntime-gpu`` are
   importable there; otherwise the report says why it was not run.
Writes ``gpu_check.json`` under ``--out`` and prints a summary. On a CPU (``--device cpu``,
``--size tiny``) the same script runs with CUDA graphs skipped, which is how it is tested.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from opencc_cm_contract.text_rules import pad_right

from .classifier_graph import build_merged_classifier
from .reference import ReferenceClassifier, decide
from .synthetic_checkpoint import calibration_prompts, write_synthetic_checkpoint

BUCKETS = (16, 32, 64, 128, 256, 512)


def prompt_texts(tokenizer, n: int, seed: int = 0) -> list[str]:
    """BELLS-O-like prompts: ~35 tokens on average with a 10% tail of 256-511 tokens, made of
    words from the synthetic corpus so that they tokenize like text."""
    rng = np.random.default_rng(seed)
    words = " ".join(calibration_prompts()).split()
    lengths = np.where(rng.random(n) < 0.1, rng.integers(256, 512, n), rng.integers(12, 56, n))
    texts = []
    for target in lengths:
        picked = []
        while len(tokenizer(" ".join(picked))["input_ids"]) < target:
            picked.extend(rng.choice(words, size=4).tolist())
        texts.append(" ".join(picked))
    return texts


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _summary(ms: list[float]) -> dict:
    return {"n": len(ms), "mean_ms": statistics.fmean(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}


def _pad(rows, pad_id, width=None):
    """``text_rules.pad_right`` as torch tensors."""
    ids, mask = pad_right(rows, pad_id, width)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def time_reference(ref: ReferenceClassifier, texts: list[str]) -> tuple[dict, np.ndarray]:
    scores, ms = [], []
    for text in texts:
        _sync(ref.device)
        t0 = time.perf_counter()
        scores.append(ref.scores([text]))
        _sync(ref.device)
        ms.append((time.perf_counter() - t0) * 1000)
    return _summary(ms[3:] or ms), np.concatenate(scores)


class GraphRunner:
    """Merged classifier replayed from CUDA graphs, one per (batch, bucket) shape."""

    def __init__(self, model, device, pad_id: int, use_graphs: bool):
        self.model, self.device, self.pad_id, self.use_graphs = model, device, pad_id, use_graphs
        self.graphs: dict[tuple[int, int], tuple] = {}

    def _bucket(self, n: int) -> int:
        return next((b for b in BUCKETS if b >= n), n)

    @torch.no_grad()
    def __call__(self, rows: list[list[int]]) -> torch.Tensor:
        ids, mask = _pad(rows, self.pad_id, self._bucket(max(map(len, rows))))
        if not self.use_graphs:
            return self.model(ids.to(self.device), mask.to(self.device)).float()
        key = tuple(ids.shape)
        if key not in self.graphs:
            static_ids, static_mask = ids.to(self.device), mask.to(self.device)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self.model(static_ids, static_mask)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_ids, static_mask)
            self.graphs[key] = (graph, static_ids, static_mask, static_out)
        graph, static_ids, static_mask, static_out = self.graphs[key]
        static_ids.copy_(ids, non_blocking=True)
        static_mask.copy_(mask, non_blocking=True)
        graph.replay()
        return static_out.float()


def time_runner(runner: GraphRunner, rows, tokenizer, batch: int = 1) -> tuple[dict, np.ndarray]:
    ms, out = [], []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        _sync(runner.device)
        t0 = time.perf_counter()
        out.append(torch.sigmoid(runner(chunk)).cpu().numpy())
        _sync(runner.device)
        ms.append((time.perf_counter() - t0) * 1000)
    return _summary(ms[3:] or ms), np.concatenate(out)


def parity(truth: np.ndarray, other: np.ndarray, spec) -> dict:
    return {"max_abs_score_diff": float(np.abs(truth - other).max()),
            "decision_agreement": float((decide(truth, spec) == decide(other, spec)).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="real-shape", choices=["tiny", "real-shape"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    report: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "size": args.size, "dtype": args.dtype}
    t0 = time.perf_counter()
    paths = write_synthetic_checkpoint(out / "checkpoint", args.size, progress=print)
    report["checkpoint_seconds"] = time.perf_counter() - t0

    ref = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=dtype, device=device)
    texts = prompt_texts(ref.tokenizer, args.prompts)
    rows = [ref.tokenizer(t)["input_ids"] for t in texts]  # the ids the reference sees
    report["mean_tokens"] = statistics.fmean(map(len, rows))
    print(f"[gpu] {len(rows)} prompts, mean {report['mean_tokens']:.1f} tokens; baseline (reference, batch 1)")
    report["baseline_batch1"], base_scores = time_reference(ref, texts)
    print(f"[gpu] baseline {report['baseline_batch1']}")

    merged = build_merged_classifier(ref, keep_reference=True)  # already in `dtype`, head fp32
    pad = ref.tokenizer.pad_token_id
    eager = GraphRunner(merged, device, pad, use_graphs=False)
    report["merged_eager_batch1"], eager_scores = time_runner(eager, rows, ref.tokenizer)
    print(f"[gpu] merged eager {report['merged_eager_batch1']}")
    if device.type == "cuda":
        graphs = GraphRunner(merged, device, pad, use_graphs=True)
        time_runner(graphs, rows[:20], ref.tokenizer)  # capture the common shapes outside the timing
        report["merged_cuda_graphs_batch1"], graph_scores = time_runner(graphs, rows, ref.tokenizer)
        short = [r for r in rows if len(r) <= 64] * 4
        t1 = time.perf_counter()
        _, _ = time_runner(graphs, short, ref.tokenizer, batch=64)
        report["throughput_batch64_prompts_per_s"] = len(short) / (time.perf_counter() - t1)
        print(f"[gpu] CUDA graphs {report['merged_cuda_graphs_batch1']}, "
              f"{report['throughput_batch64_prompts_per_s']:.0f} prompts/s at batch 64")
    else:
        graph_scores = eager_scores
        report["merged_cuda_graphs_batch1"] = "not run: CUDA graphs need a GPU"

    del merged, eager
    ref32 = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"],
                                     dtype=torch.float32, device=device)
    truth = np.concatenate([ref32.scores(texts[i:i + 16]) for i in range(0, len(texts), 16)])
    report["parity_vs_fp32_reference"] = {"baseline": parity(truth, base_scores, ref.spec),
                                          "merged_eager": parity(truth, eager_scores, ref.spec),
                                          "merged_cuda_graphs": parity(truth, graph_scores, ref.spec)}
    report["parity_ours_vs_baseline"] = parity(base_scores, graph_scores, ref.spec)
    try:
        import pytriton  # noqa: F401
        import onnxruntime as ort
        gpu_ort = "CUDAExecutionProvider" in ort.get_available_providers()
        report["triton"] = "not run: ONNX Runtime has no CUDA provider here" if not gpu_ort else \
            "pytriton and onnxruntime-gpu present: run tests/serving against this machine"
    except ImportError as exc:
        report["triton"] = f"not run: {exc}"
    report["total_seconds"] = time.perf_counter() - t0
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
