"""The whole GPU proof in one run (issue 10): fidelity and speed of the python-torch encoder.

    make gpu-check            # = PYTHONPATH=client:serving:export python -m opencc_cm_export.gpu_check --out DIR

On the real-shape checkpoint (real 0.8B shapes, random weights: speed does not depend on values):
1. Oracle: the reference computation in fp32 on the device (unmerged PEFT, HF), batches of 16.
2. Bundle: merged weights written as the export writes them (``classifier.safetensors``), read
   back by the python-torch runner and parity-checked in fp32 against the oracle.
3. The reference as shipped: HF bf16 eager, unmerged PEFT, transformers' own torch rule for
   Gated DeltaNet, batch 1, tokenize -> forward (with the vocabulary projection) -> head: latency
   p50/p99 and its distance from the fp32 oracle.
4. Ours (TorchEncoder, the runner the Triton model uses), bf16: eager with the project's torch
   rule; eager with fla-core's chunk kernel; fla + (batch, length) buckets + CUDA graphs; and
   fp16 with graphs. Per variant: batch-1 latency p50/p99 (all prompts and <= 64-token ones),
   fidelity vs the oracle (max |score diff|, decision flips, each flip's distance to its
   threshold), peak GPU memory; throughput at batch 1, 8, 16, 32, 64 through the server's
   grouping code for the graph variant.
5. Through Triton gRPC (pip tritonserver, python-torch encoder on the GPU) when it runs here.
Each phase has a time budget share; a phase that cannot run says why ("not run: ...").
Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``. ``--device cpu --size tiny``
is the dry run the tests do (no CUDA graphs, no fla: those phases say so).
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from opencc_cm_contract.text_rules import pad_right

from .bundle import write_bundle_manifest
from .classifier_graph import build_merged_classifier
from .gated_delta_export import gated_delta_rule
from .parity import check_parity
from .reference import ReferenceClassifier, activate
from .synthetic_checkpoint import calibration_prompts, write_synthetic_checkpoint
from .torch_encoder import TorchEncoder, load_merged, save_merged

THROUGHPUT_BATCHES = (1, 8, 16, 32, 64)
TARGETS = {"encoder_p50_ms_35_tokens": 1.5, "prompts_per_s_batch64": 20000, "grpc_p50_ms": 4.0}


def prompt_texts(tokenizer, n: int, seed: int = 0) -> list[str]:
    """BELLS-O-like prompts: mostly 12-55 tokens with a 10% tail of 256-511 tokens, made of
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
        torch.cuda.synchronize(device)


def _summary(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "mean_ms": statistics.fmean(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}


def fidelity(truth: np.ndarray, other: np.ndarray, thresholds: np.ndarray, labels) -> dict:
    """Max |score diff| against the fp32 oracle, decision flips and how far each flip's oracle
    score sits from its threshold."""
    diff = np.abs(truth - other)
    flips = np.argwhere(decide_with(truth, thresholds) != decide_with(other, thresholds))
    return {"max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean()),
            "decision_flips": int(len(flips)), "decisions": int(truth.size),
            "flips": [{"prompt": int(i), "label": labels[j], "oracle_score": float(truth[i, j]),
                       "score": float(other[i, j]), "threshold": float(thresholds[j]),
                       "oracle_distance_to_threshold": float(abs(truth[i, j] - thresholds[j]))}
                      for i, j in flips]}


def decide_with(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return scores >= thresholds[None, :]


class Budget:
    """Runs phases while time is left; a phase that fails or cannot run records why."""

    def __init__(self, seconds: float, report: dict):
        self.deadline, self.report = time.perf_counter() + seconds, report
        self.report.setdefault("phase_seconds", {})

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, fn, *, need_s: float = 0.0):
        if self.left() < need_s:
            self.report[name] = f"not run: time budget ({self.left():.0f} s left, phase needs ~{need_s:.0f} s)"
            print(f"[gpu-check] {name}: {self.report[name]}", flush=True)
            return None
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - one failing phase must not lose the others
            traceback.print_exc()
            result = f"failed: {type(exc).__name__}: {exc}"
        self.report["phase_seconds"][name] = round(time.perf_counter() - started, 2)
        self.report[name] = result
        print(f"[gpu-check] {name} ({self.report['phase_seconds'][name]} s): "
              f"{json.dumps(result)[:400] if not isinstance(result, str) else result}", flush=True)
        return result


def time_reference(ref: ReferenceClassifier, texts: list[str]) -> dict:
    """The reference as shipped at batch 1: tokenize, forward with the vocabulary projection,
    fp32 head, sigmoid, to host; transformers' own torch rule for Gated DeltaNet."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    stock = getattr(qwen.torch_chunk_gated_delta_rule, "__wrapped__", qwen.torch_chunk_gated_delta_rule)
    ms = []
    with gated_delta_rule(stock):
        for text in texts[:3]:
            ref.scores([text])  # warm up
        for text in texts:
            _sync(ref.device)
            t0 = time.perf_counter()
            ref.scores([text])
            _sync(ref.device)
            ms.append((time.perf_counter() - t0) * 1000)
        scores = np.concatenate([ref.scores(texts[i:i + 16]) for i in range(0, len(texts), 16)])
    return _summary(ms), scores


def time_encoder(enc: TorchEncoder, rows: list[list[int]], pad: int) -> tuple[dict, dict, np.ndarray]:
    """Batch-1 latency (ids on the host -> logits on the host, as the Triton model sees it) over
    all rows and over the <= 64-token ones; sigmoid scores of every row."""
    for row in rows[:3]:
        enc(*pad_right([row], pad))
    ms, out = [], []
    for row in rows:
        ids, mask = pad_right([row], pad)
        _sync(enc.device)
        t0 = time.perf_counter()
        logits = enc(ids, mask)
        ms.append((time.perf_counter() - t0) * 1000)
        out.append(logits)
    short = [m for m, r in zip(ms, rows) if len(r) <= 64]
    scores = activate(torch.from_numpy(np.concatenate(out)), "sigmoid").numpy()
    return _summary(ms), _summary(short), scores


def throughput(enc: TorchEncoder, rows: list[list[int]], pad: int, batches=THROUGHPUT_BATCHES,
               seconds_each: float = 5.0) -> dict:
    """Prompts/s when requests of ``b`` prompts arrive back to back and run through the server's
    own grouping (opencc_cm_serving.batching, the encoder model's defaults)."""
    from opencc_cm_serving.batching import plan_groups, run_grouped

    out = {}
    for b in batches:
        done, started = 0, time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds_each or done == 0:
            chunk = [rows[(i + k) % len(rows)] for k in range(b)]
            i += b
            groups = plan_groups([len(r) for r in chunk], 0.25, b, 16384)
            run_grouped([np.asarray(r, dtype=np.int64) for r in chunk], pad, groups, enc)
            done += b
        out[str(b)] = round(done / (time.perf_counter() - started), 1)
    return out


def peak_memory(device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def pow2(lo: int, hi: int) -> list[int]:
    out, v = [], lo
    while v < hi:
        out.append(v)
        v *= 2
    return out + [hi]


def triton_phase(bundle: Path, out: Path, texts: list[str], device: torch.device, dtype: str, truth, thresholds,
                 labels, calls_per_client: int = 8) -> dict:
    """Deploy the python-torch target from the bundle, start the pip tritonserver, measure gRPC."""
    try:
        import pytriton  # noqa: F401 - only to see that the wheel is there
        import tritonclient.grpc  # noqa: F401
    except ImportError as exc:
        return f"not run: {exc} (carry nvidia-pytriton and tritonclient: make gpu-wheels)"
    from opencc_cm_client import ClassifierClient, ConnectionOptions
    from opencc_cm_serving.deploy import main as deploy_main
    from opencc_cm_serving.launch import TritonServer

    repo = out / "triton-repo"
    templates = Path(__file__).resolve().parents[2] / "model_repository"
    kind = "gpu" if device.type == "cuda" else "cpu"
    if deploy_main(["--bundle", str(bundle), "--repository", str(templates), "--output", str(repo),
                    "--target", "python-torch", "--instance-kind", kind, "--torch-dtype", dtype,
                    "--length-buckets", ",".join(map(str, pow2(16, 512))), "--max-batch-size", "64",
                    "--pad-to-buckets", "on"]) != 0:
        return "failed: deploy"
    result: dict = {}
    with TritonServer(repo, log_path=out / "tritonserver.log", ready_timeout=300) as server:
        with ClassifierClient(server.grpc_url, tokenizer=bundle / "tokenizer.json") as client:
            for text in texts[:5]:
                client.classify([text])
            ms, scores = [], []
            for text in texts:
                t0 = time.perf_counter()
                res = client.classify([text])[0]
                ms.append((time.perf_counter() - t0) * 1000)
                scores.append([label.score for label in res.labels])
            result["grpc_batch1_client_tokenizes"] = _summary(ms)
            result["fidelity_vs_fp32_oracle"] = fidelity(truth, np.asarray(scores, dtype=np.float32),
                                                         thresholds, labels)
            result["fidelity_vs_fp32_oracle"].pop("flips")

            def worker(n_calls, counter, errors):
                options = ConnectionOptions(timeout_s=300)
                with ClassifierClient(server.grpc_url, tokenizer=bundle / "tokenizer.json", options=options) as c:
                    for k in range(n_calls):
                        batch = [texts[(k * 64 + j) % len(texts)] for j in range(64)]
                        try:
                            c.classify(batch)
                            counter.append(64)
                        except Exception as exc:  # noqa: BLE001 - counted and reported
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])

            counter: list[int] = []
            errors: list[str] = []
            t0 = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(calls_per_client, counter, errors)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            result["grpc_prompts_per_s_batch64_4_clients"] = round(sum(counter) / (time.perf_counter() - t0), 1)
            result["grpc_batch64_errors"] = errors
    log = (out / "tritonserver.log").read_text(errors="replace")
    result["encoder_log"] = [line.split('"', 1)[-1].rstrip('"') for line in log.splitlines()
                             if "model_torch.py" in line][:6]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="real-shape", choices=["tiny", "real-shape"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting phases after this (8 min target)")
    p.add_argument("--throughput-s", type=float, default=4.0, help="seconds per throughput batch size")
    p.add_argument("--triton", choices=("auto", "off"), default="auto")
    p.add_argument("--grpc-calls", type=int, default=8, help="batch-64 calls per client (4 clients) in the gRPC phase")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    report: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu (dry run)",
                    "torch": torch.__version__, "size": args.size, "prompts": args.prompts}
    try:
        import transformers
        report["transformers"] = transformers.__version__
        import fla
        report["fla_core"] = getattr(fla, "__version__", "present")
    except Exception as exc:  # noqa: BLE001
        report["fla_core"] = f"not importable: {type(exc).__name__}: {exc}"
    budget = Budget(args.budget_s, report)

    paths = write_synthetic_checkpoint(out / "checkpoint", args.size, progress=print)
    report["phase_seconds"]["checkpoint"] = round(time.perf_counter() - t0, 2)

    # 1. fp32 oracle
    ref32 = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=torch.float32,
                                     device=device)
    spec, tok = ref32.spec, ref32.tokenizer
    pad = int(tok.pad_token_id)
    labels = list(spec.labels)
    thresholds = np.asarray([spec.thresholds[label] for label in labels], dtype=np.float64)
    texts = prompt_texts(tok, args.prompts)
    rows = [tok(t)["input_ids"] for t in texts]
    report["mean_tokens"] = statistics.fmean(map(len, rows))
    report["short_prompts_le_64_tokens"] = sum(len(r) <= 64 for r in rows)
    truth = np.concatenate([ref32.scores(texts[i:i + 16]) for i in range(0, len(texts), 16)])

    # 2. bundle files + fp32 parity of the torch weights through the runner
    bundle = out / "bundle"
    bundle.mkdir(exist_ok=True)

    def make_bundle():
        merged = build_merged_classifier(ref32, keep_reference=True)
        save_merged(merged, bundle)
        del merged
        enc = TorchEncoder(bundle, device=str(device), dtype="fp32", gated_delta="torch", pad_to_buckets="off",
                           cuda_graphs="off", pad_id=pad)
        rep = check_parity(ref32, enc, precision="fp32", progress=lambda *_: None)
        record = {"max_abs_score_diff": rep.max_abs_diff, "decision_agreement": rep.decision_agreement,
                  "tolerance": rep.tolerance, "passed": rep.passed, "where": f"gpu check on {report['device']}"}
        write_bundle_manifest(ref32, bundle, max_tokens=2048, precision="fp32", checkpoint=str(paths["classifier"]),
                              parity={"passed": False, "reason": "gpu check: no ONNX graph exported"},
                              torch_parity=record)
        return record

    budget.run("torch_weights_fp32_parity", make_bundle)
    ref32 = None  # free the fp32 copy before the timed phases
    reset_peak(device)

    # 3. the reference as shipped
    ref_scores = None

    def reference():
        nonlocal ref_scores
        ref = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=torch.bfloat16,
                                       device=device)
        latency, ref_scores = time_reference(ref, texts)
        return {"batch1": latency, "fidelity_vs_fp32_oracle": fidelity(truth, ref_scores, thresholds, labels),
                "peak_gpu_memory_gib": peak_memory(device), "gated_delta": "transformers' own torch rule"}

    budget.run("reference_as_shipped_bf16", reference, need_s=30)
    ref_distance = (report["reference_as_shipped_bf16"]["fidelity_vs_fp32_oracle"]["max_abs_score_diff"]
                    if isinstance(report.get("reference_as_shipped_bf16"), dict) else None)

    # 4. ours
    lengths = pow2(16, 512)
    variants = [
        ("ours_bf16_eager_torch_rule", "bf16", dict(gated_delta="torch", pad_to_buckets="off", cuda_graphs="off")),
        ("ours_bf16_eager_fla", "bf16", dict(gated_delta="fla", pad_to_buckets="off", cuda_graphs="off")),
        ("ours_bf16_fla_cuda_graphs", "bf16", dict(gated_delta="auto", pad_to_buckets="on",
                                                   cuda_graphs="on" if cuda else "off")),
        ("ours_fp16_fla_cuda_graphs", "fp16", dict(gated_delta="auto", pad_to_buckets="on",
                                                   cuda_graphs="on" if cuda else "off")),
    ]
    models: dict[str, torch.nn.Module] = {}
    for name, dtype, settings in variants:
        def run_variant(name=name, dtype=dtype, settings=settings):
            reset_peak(device)
            if dtype not in models:
                models.clear()
                reset_peak(device)
                models[dtype] = load_merged(bundle, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype],
                                            device=device)
            log: list[str] = []
            started = time.perf_counter()
            try:
                enc = TorchEncoder(bundle, device=str(device), dtype=dtype, pad_id=pad, model=models[dtype],
                                   length_buckets=lengths, batch_buckets=pow2(1, 64), log=log.append, **settings)
            except Exception as exc:  # noqa: BLE001 - e.g. fla asked where it cannot run
                return f"not run: {exc}"
            result = {"settings": settings, "log": log, "cuda_graphs_captured": len(enc.graphs),
                      "setup_seconds": round(time.perf_counter() - started, 2)}
            result["batch1_all"], result["batch1_le_64_tokens"], scores = time_encoder(enc, rows, pad)
            result["fidelity_vs_fp32_oracle"] = fidelity(truth, scores, thresholds, labels)
            if ref_distance is not None:
                f = result["fidelity_vs_fp32_oracle"]
                f["no_further_than_reference"] = f["max_abs_score_diff"] <= ref_distance
                f["flips_only_within_reference_distance"] = all(
                    x["oracle_distance_to_threshold"] <= ref_distance for x in f["flips"])
            if enc.pad_to_buckets:  # what padding into buckets costs: cells run per real token at batch 1
                real = sum(len(r) for r in rows)
                result["batch1_bucket_cells_per_real_token"] = round(
                    sum(enc.padded_shape(1, len(r))[1] for r in rows) / real, 3)
            if name == "ours_bf16_fla_cuda_graphs":
                result["throughput_prompts_per_s"] = throughput(enc, rows, pad, seconds_each=args.throughput_s)
            result["peak_gpu_memory_gib"] = peak_memory(device)
            return result

        budget.run(name, run_variant, need_s=20)
    models.clear()

    # 5. Triton gRPC
    if args.triton == "off":
        report["triton_grpc"] = "not run: --triton off"
    else:
        budget.run("triton_grpc", lambda: triton_phase(bundle, out, texts, device, "bf16" if cuda else "fp32",
                                                       truth, thresholds, labels, args.grpc_calls), need_s=60)

    report["targets"] = targets_met(report, judged=cuda)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print((out / "gpu_check.md").read_text())
    return 0


def _get(report, *keys):
    cur = report
    for key in keys:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def targets_met(report: dict, judged: bool = True) -> dict:
    """The issue's targets, each with the measured value or null where not measured; ``met``
    stays null off the GPU (a dry run's CPU figures say nothing about the targets)."""
    graphs = "ours_bf16_fla_cuda_graphs"
    p50 = _get(report, graphs, "batch1_le_64_tokens", "p50_ms")
    tput = _get(report, graphs, "throughput_prompts_per_s", "64")
    grpc = _get(report, "triton_grpc", "grpc_batch1_client_tokenizes", "p50_ms")
    out = {}
    for key, value, ok in (("encoder_p50_ms_35_tokens", p50, lambda v: v <= TARGETS["encoder_p50_ms_35_tokens"]),
                           ("prompts_per_s_batch64", tput, lambda v: v >= TARGETS["prompts_per_s_batch64"]),
                           ("grpc_p50_ms", grpc, lambda v: v <= TARGETS["grpc_p50_ms"])):
        met = None if value is None or not judged else bool(ok(value))
        out[key] = {"target": TARGETS[key], "measured": value, "met": met}
    return out


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device']}", "",
             f"torch {report['torch']}, transformers {report.get('transformers')}, fla-core: {report.get('fla_core')}; "
             f"checkpoint {report['size']}; {report['prompts']} prompts, mean {report.get('mean_tokens', 0):.1f} tokens "
             f"({report.get('short_prompts_le_64_tokens')} of <= 64 tokens); total {report.get('total_seconds')} s.", "",
             *(["**Dry run on the CPU: these figures prove the command runs; they are not GPU figures.**", ""]
               if report["device"].startswith("cpu") else []),
             "| path | batch-1 p50 / p99 ms (all) | p50 ms (<= 64 tok) | max abs score diff vs fp32 oracle | flips | peak GiB |",
             "|---|---:|---:|---:|---:|---:|"]
    names = ["reference_as_shipped_bf16", "ours_bf16_eager_torch_rule", "ours_bf16_eager_fla",
             "ours_bf16_fla_cuda_graphs", "ours_fp16_fla_cuda_graphs"]
    for name in names:
        r = report.get(name)
        if not isinstance(r, dict):
            lines.append(f"| {name} | {r} | | | | |")
            continue
        b1 = r.get("batch1") or r.get("batch1_all") or {}
        short = r.get("batch1_le_64_tokens") or {}
        f = r.get("fidelity_vs_fp32_oracle") or {}
        lines.append(f"| {name} | {b1.get('p50_ms', float('nan')):.2f} / {b1.get('p99_ms', float('nan')):.2f} | "
                     f"{short.get('p50_ms', float('nan')):.2f} | {f.get('max_abs_score_diff', float('nan')):.3e} | "
                     f"{f.get('decision_flips')}/{f.get('decisions')} | {r.get('peak_gpu_memory_gib')} |")
    cells = _get(report, "ours_bf16_fla_cuda_graphs", "batch1_bucket_cells_per_real_token")
    if cells:
        lines += ["", f"Bucket padding at batch 1: {cells} cells run per real token (length buckets 16..512)."]
    tput = _get(report, "ours_bf16_fla_cuda_graphs", "throughput_prompts_per_s")
    if tput:
        lines += ["", "Throughput (prompts/s, server grouping, bf16 + graphs): " +
                  ", ".join(f"batch {b}: {v}" for b, v in tput.items())]
    lines += ["", f"Triton gRPC: {json.dumps(report.get('triton_grpc'))[:1500]}", "",
              "| target | goal | measured | met |", "|---|---:|---:|---|"]
    for key, t in report.get("targets", {}).items():
        lines.append(f"| {key} | {t['target']} | {t['measured']} | {t['met']} |")
    lines += ["", f"Torch weights fp32 parity: {json.dumps(report.get('torch_weights_fp32_parity'))}",
              f"Phase seconds: {json.dumps(report.get('phase_seconds'))}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
