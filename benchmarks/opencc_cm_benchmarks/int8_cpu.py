"""fp32 vs int8 graphs on ONNX Runtime's CPU provider: latency and fidelity, one process.

    python -m opencc_cm_benchmarks.int8_cpu --bundle artifacts/bundles/real-shape-fp32 \
        --checkpoint .../classifier --base-model .../base-model --out artifacts/int8-real-shape \
        [--texts data/test.jsonl | --prompts 48] [--variants dynamic:in_proj_a,in_proj_b nbits:in_proj_a,in_proj_b]

Each variant ``METHOD[-bBLOCK][-aLEVEL]:KIND,KIND`` is the bundle's fp32 graph quantized by
``opencc_cm_export.int8_quantization.quantize_graph`` with those module kinds kept fp32 (empty:
every weight MatMul in int8); ``nbits-b16-a1`` = MatMulNBits with blocks of 16 at accuracy
level 1 (int8 weights, fp32 products). Latency: median of ``--repeats`` runs per (batch, tokens) shape
after one warm-up, ``--threads`` intra-op threads, random ids. Fidelity on the prompts (graphs
at batch 1, the reference in its batches of 16): every graph against the fp32 graph (the oracle: its parity with the
torch fp32 reference is 1e-5), next to the reference as shipped (HF bf16, unmerged PEFT) on the
same prompts, and the export's int8 gate on each. Writes ``int8_cpu.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from opencc_cm_export.benchmark import median_ms

SHAPES = ((1, 35), (1, 256), (8, 64))


def parse_variant(text: str) -> tuple[str, tuple[str, ...], dict]:
    """``nbits-b16-a4:in_proj_a,in_proj_b`` -> ("nbits", ("in_proj_a", "in_proj_b"), {"block_size": 16,
    "accuracy_level": 4})."""
    head, _, kinds = text.partition(":")
    method, *options = head.split("-")
    names = {"b": "block_size", "a": "accuracy_level"}
    settings = {}
    for option in options:
        if option[:1] not in names or not option[1:].isdigit():
            raise SystemExit(f"variant {text!r}: unknown option {option!r} (bN: block size, aN: accuracy level)")
        settings[names[option[0]]] = int(option[1:])
    return method, tuple(k for k in kinds.split(",") if k), settings


def latency(session, shapes, repeats: int, vocab: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for batch, tokens in shapes:
        ids = rng.integers(0, vocab, (batch, tokens)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        out[f"{batch}x{tokens}"] = round(median_ms(lambda feed=feed: session.run(None, feed), repeats), 1)
    return out


def graph_scores(session, tokenizer, texts, activation, batch: int = 1) -> np.ndarray:
    import torch

    from opencc_cm_export.reference import activate

    rows = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], padding=True, return_tensors="np")
        logits = session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                    "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        rows.append(activate(torch.from_numpy(logits), activation).numpy())
    return np.concatenate(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="fp32 bundle (model.onnx)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--base-model")
    p.add_argument("--out", required=True)
    p.add_argument("--texts", help="JSONL with a 'text' field (e.g. the demo's held-out test split)")
    p.add_argument("--prompts", type=int, default=48, help="BELLS-O-like prompts when --texts is not given")
    p.add_argument("--variants", nargs="+", default=["dynamic:in_proj_a,in_proj_b", "nbits:in_proj_a,in_proj_b"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    from opencc_cm_contract.bundle_format import ONNX_FILE
    from opencc_cm_export.fidelity import fidelity, reduced_precision_gate
    from opencc_cm_export.int8_quantization import quantize_graph
    from opencc_cm_export.parity import onnx_session
    from opencc_cm_export.reference import ReferenceClassifier

    from .workload import bells_o_prompts

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"bundle": args.bundle, "threads": args.threads, "repeats": args.repeats,
              "load_average_start": os.getloadavg(), "graphs": {}}

    started = time.perf_counter()
    ref = ReferenceClassifier.load(args.checkpoint, base_model=args.base_model, dtype=torch.bfloat16)
    tokenizer, spec = ref.tokenizer, ref.spec
    labels, activation = list(spec.labels), spec.activation
    thresholds = np.asarray([spec.thresholds[label] for label in labels], dtype=np.float64)
    vocab = int(ref.backbone.get_base_model().config.get_text_config().vocab_size)
    if args.texts:
        texts = [json.loads(line)["text"] for line in Path(args.texts).read_text().splitlines() if line.strip()]
    else:
        texts = bells_o_prompts(lambda t: len(tokenizer(t)["input_ids"]), args.prompts, tail_share=0.1)
    report["prompts"] = len(texts)
    report["mean_tokens"] = statistics.fmean(len(tokenizer(t)["input_ids"]) for t in texts)
    ref_scores = ref.scores(texts)
    del ref
    report["reference_bf16_seconds"] = round(time.perf_counter() - started, 1)
    print(f"reference bf16 scored {len(texts)} prompts in {report['reference_bf16_seconds']} s", flush=True)

    fp32_path = Path(args.bundle) / ONNX_FILE
    session = onnx_session(fp32_path, threads=args.threads)
    truth = graph_scores(session, tokenizer, texts, activation)
    report["graphs"]["fp32"] = {"latency_ms": latency(session, SHAPES, args.repeats, vocab)}
    del session
    ref_fid = fidelity(truth, ref_scores, thresholds, labels)
    report["reference_bf16_vs_fp32"] = ref_fid
    print(f"fp32 {report['graphs']['fp32']}; reference bf16 vs fp32: max {ref_fid['max_abs_score_diff']:.3e}, "
          f"{ref_fid['decision_flips']} flips", flush=True)

    for variant in args.variants:
        method, keep, settings = parse_variant(variant)
        path = out / f"{variant.split(':')[0]}-{'-'.join(keep) or 'all'}.onnx"
        quantized = quantize_graph(fp32_path, path, method=method, keep=keep, **settings)
        session = onnx_session(path, threads=args.threads)
        scores = graph_scores(session, tokenizer, texts, activation)
        fid = fidelity(truth, scores, thresholds, labels, ref_fid["max_abs_score_diff"])
        passed, reasons = reduced_precision_gate(fid)
        fid_ref = fidelity(ref_scores, scores, thresholds, labels)
        entry = {"latency_ms": latency(session, SHAPES, args.repeats, vocab),
                 "vs_fp32": fid, "gate_passed": passed, "gate_reasons": reasons,
                 "vs_reference_bf16_max_abs_score_diff": fid_ref["max_abs_score_diff"],
                 "integer_matmuls": quantized["integer_matmuls"], "weight_matmuls": quantized["weight_matmuls"]}
        del session
        report["graphs"][variant] = entry
        print(f"{variant}: {entry['latency_ms']} max {fid['max_abs_score_diff']:.3e} flips "
              f"{fid['decision_flips']} gate {passed} {reasons}", flush=True)
        (out / "int8_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    report["load_average_end"] = os.getloadavg()
    (out / "int8_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
