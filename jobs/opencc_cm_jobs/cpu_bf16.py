"""bf16 on the CPU for the python-torch encoder: fidelity against the fp32 oracle next to the
reference as shipped (HF bf16), and batch-1 latency of the runner in bf16 and fp32.

    python -m opencc_cm_jobs.cpu_bf16 --checkpoint artifacts/checkpoints/real-shape \
        --bundle artifacts/bundles/real-shape-fp32 --out artifacts/cpu-bf16 [--prompts 24]

``--checkpoint``: a folder with ``classifier/`` and ``base-model/`` (synthetic_checkpoint's
layout); ``--bundle``: the exported bundle holding the merged torch weights.
Phases (``--phases``, comma-separated, in this order):
- ``oracle``: the reference computation in fp32 (unmerged PEFT), batches of 16;
- ``reference``: the reference as shipped, HF bf16 with transformers' own Gated DeltaNet rule;
- ``ours``: the python-torch runner (TorchEncoder) in bf16, one prompt per call as Triton's
  batch-1 path runs it; max |score diff|, flips and the reference's band (gpu_check.fidelity);
- ``latency``: the runner's batch-1 latency at (1, 35) and (1, 256) tokens, bf16 and fp32.
Scores of ``oracle`` and ``reference`` are kept in ``--out/scores.npz`` and reused when those
phases are not asked for (a second run measures only our side). Prompts: gpu_check's
BELLS-O-like mix. Writes ``--out/cpu_bf16.json``; prints each result as it comes, with the
load average (the CPU is shared: timings swing with it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from opencc_cm_contract.text_rules import pad_right
from opencc_cm_export.checkpoint_format import read_checkpoint
from opencc_cm_export.reference import ReferenceClassifier, activate, load_tokenizer
from opencc_cm_export.synthetic_checkpoint import checkpoint_paths

from .gpu_check import fidelity, prompt_texts

LATENCY_SHAPES = ((1, 35), (1, 256))


def make_encoder(bundle: Path, dtype: str, pad: int, log):
    from opencc_cm_export.torch_encoder import TorchEncoder, TorchEncoderSettings

    return TorchEncoder(bundle, TorchEncoderSettings(device="cpu", dtype=dtype), pad_id=pad, log=log)


def ours_scores(enc, rows: list[list[int]], pad: int) -> np.ndarray:
    logits = [enc(*pad_right([row], pad)) for row in rows]
    return activate(torch.from_numpy(np.concatenate(logits)), "sigmoid").numpy()


def latency(enc, vocab: int, pad: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for b, s in LATENCY_SHAPES:
        rows = [rng.integers(0, vocab, size=s).tolist() for _ in range(b)]
        ids, mask = pad_right(rows, pad)
        enc(ids, mask)  # warm-up
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            enc(ids, mask)
            ms.append((time.perf_counter() - t0) * 1000)
        out[f"({b},{s})"] = {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1),
                             "runs": repeats}
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_jobs.cpu_bf16", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="folder with classifier/ and base-model/")
    p.add_argument("--bundle", required=True, type=Path, help="bundle with the merged torch weights")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--prompts", type=int, default=24)
    p.add_argument("--phases", default="oracle,reference,ours,latency")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per latency shape")
    p.add_argument("--label", default="", help="a name for this run in the report (e.g. before/after)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - {"oracle", "reference", "ours", "latency"})
    if unknown:
        raise SystemExit(f"cpu_bf16: unknown phase(s) {unknown}")
    args.out.mkdir(parents=True, exist_ok=True)
    paths = checkpoint_paths(args.checkpoint)
    report: dict = {"label": args.label, "prompts": args.prompts, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_start": os.getloadavg()}

    def say(name, value):
        report[name] = value
        print(f"[cpu-bf16] {name}: {json.dumps(value)} (load {os.getloadavg()[0]:.1f})", flush=True)

    store = args.out / "scores.npz"
    saved = dict(np.load(store)) if store.is_file() else {}
    spec = read_checkpoint(paths["classifier"], base_model=paths["base_model"])
    tok = load_tokenizer(spec)
    pad = int(tok.pad_token_id)
    labels = list(spec.labels)
    thresholds = np.asarray([spec.thresholds[label] for label in labels], dtype=np.float64)
    texts = prompt_texts(tok, args.prompts)
    rows = [tok(t)["input_ids"] for t in texts]
    say("tokens", {"mean": round(statistics.fmean(map(len, rows)), 1), "max": max(map(len, rows))})
    scored = bool({"oracle", "reference", "ours"} & set(phases))

    if "oracle" in phases or (scored and "truth" not in saved):
        started = time.perf_counter()
        ref32 = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=torch.float32)
        saved["truth"] = np.concatenate([ref32.scores(texts[i:i + 16]) for i in range(0, len(texts), 16)])
        del ref32
        say("oracle_seconds", round(time.perf_counter() - started, 1))
        np.savez(store, **saved)
    if "reference" in phases or (scored and "reference" not in saved):
        from opencc_cm_export.gated_delta_export import gated_delta_rule
        from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

        stock = getattr(qwen.torch_chunk_gated_delta_rule, "__wrapped__", qwen.torch_chunk_gated_delta_rule)
        ref16 = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=torch.bfloat16)
        with gated_delta_rule(stock):
            saved["reference"] = np.concatenate([ref16.scores([t]) for t in texts])
        del ref16
        np.savez(store, **saved)
    ref_distance = None
    if scored:
        ref_fid = fidelity(saved["truth"], saved["reference"], thresholds, labels)
        say("reference_as_shipped_bf16", ref_fid)
        ref_distance = ref_fid["max_abs_score_diff"]

    if "ours" in phases or "latency" in phases:
        log: list[str] = []
        enc = make_encoder(args.bundle, "bf16", pad, log.append)
        say("ours_bf16_log", log)
        if "ours" in phases:
            say("ours_bf16", fidelity(saved["truth"], ours_scores(enc, rows, pad), thresholds, labels, ref_distance))
        if "latency" in phases:
            say("latency_bf16", latency(enc, len(tok), pad, args.repeats))
        del enc
    if "latency" in phases:
        enc = make_encoder(args.bundle, "fp32", pad, lambda line: None)
        say("latency_fp32", latency(enc, len(tok), pad, args.repeats))
        del enc
    report["load_average_end"] = os.getloadavg()
    name = f"cpu_bf16{'-' + args.label if args.label else ''}.json"
    (args.out / name).write_text(json.dumps(report, indent=1) + "\n")
    print(f"[cpu-bf16] wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
