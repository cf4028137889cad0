"""The serving path against the reference, side by side, from one run on the same cores.

    python -m opencc_cm_benchmarks.serving_benchmark --checkpoint CKPT/classifier \
        --base-model CKPT/base-model --bundle BUNDLE --out benchmarks/serving [--quick]

One workload for every path: prompts with the BELLS-O length profile (most of them short,
a fixed share of 256+ token texts; ``bells_o_prompts``), built deterministically from words
of the synthetic corpus and counted with the bundle's tokenizer. Paths, one after the other
(never two at once), warm-up excluded:

1. baseline, in a child process: ``ReferenceClassifier`` (HF eager, unmerged PEFT, fp32 on
   CPU, right padding): batch 1 sequential, as the model card measured it (tokenize ->
   forward -> head -> sigmoid), and batch 16 as it batches internally (``scores(texts, 16)``);
2. ONNX Runtime alone on the bundle's graph, in a child process, batch 1 sequential
   (tokenize -> run -> sigmoid), with the session settings the server uses;
3. ours: the bundle deployed (python-ort) to a temporary repository, a real Triton server on
   127.0.0.1, the gRPC client: ids ensemble (client tokenization) and text ensemble, batch 1
   sequential, then N concurrent closed-loop clients, each sending one-prompt requests, with
   Triton's inference statistics per step (encoder ``execution_count`` vs
   ``inference_count`` shows what dynamic batching did).

4. with ``--bf16`` and/or ``--int8-bundle``: the reference as shipped (the same checkpoint in
   bf16, batch 1, in a child process: its distance from the fp32 baseline is the band), then
   each reduced-precision path on its own server (bf16: the bundle on python-torch, a CPU
   instance; int8: the int8 bundle on python-ort), ids ensemble at batch 1 and under the same
   concurrent clients, named ``triton ids <precision> b1`` / ``cN``; each path's batch-1 scores
   are judged against the fp32 baseline next to the reference as shipped
   (``fidelity_vs_fp32_oracle``, with the export's reduced-precision gate).

Writes ``serving_benchmark.json``, ``serving_benchmark.md`` and ``serving_benchmark.png``
(latency percentiles vs throughput) under ``--out`` and prints the ratios. Memory: peak RSS
of each child (``getrusage``) and of the server process tree (sampled every 0.2 s).
``--quick`` (a handful of prompts, seconds on the tiny checkpoint) is what the tests run.

This module is the command line and the order of the phases; the parts live beside it:
``workload`` (prompts, plan), ``runners`` (child phases, gRPC drivers, server setup),
``measurement`` (latency summaries, CPU/RSS accounting, Triton statistics deltas) and
``report`` (ratios, markdown, plot, JSON).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .measurement import CpuAccounting, machine_info
from .report import ratios, summary_text, write_reports
from .runners import TEMPLATES, WORKERS, entry, run_worker, serve_and_measure, serve_reduced_precision
from .workload import LONG_TOKENS, QUICK, Plan, bells_o_prompts

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def reduced_fidelity(bundle: Path, oracle, shipped, paths: dict) -> dict:
    """Each reduced-precision path's batch-1 scores against the fp32 baseline (the oracle), next to
    the reference as shipped (bf16) on the same prompts, with the export's gate for reduced
    precision: no further from fp32 than the reference, no flip far from its threshold."""
    from opencc_cm_contract.bundle_format import ClassifierManifest
    from opencc_cm_export.fidelity import fidelity, reduced_precision_gate

    spec = ClassifierManifest.read(bundle)
    thresholds, labels = np.asarray(spec.thresholds, dtype=np.float64), list(spec.labels)
    truth = np.asarray(oracle, dtype=np.float64)
    band = fidelity(truth, np.asarray(shipped, dtype=np.float64), thresholds, labels)
    out = {"baseline bf16 b1": band}
    for name, scores in paths.items():
        fid = fidelity(truth, np.asarray(scores, dtype=np.float64), thresholds, labels, band["max_abs_score_diff"])
        fid["gate_passed"], fid["gate_failures"] = reduced_precision_gate(fid)
        out[name] = fid
    return out


def run(args) -> dict:
    from opencc_cm_client.local_tokenizer import LocalTokenizer
    from opencc_cm_contract.bundle_format import TOKENIZER_FILE

    plan = Plan(**QUICK) if args.quick else Plan()
    for key in ("prompts", "batch16_prompts", "warmup", "min_requests", "requests_per_client", "seed"):
        if getattr(args, key, None) is not None:
            setattr(plan, key, getattr(args, key))
    if args.concurrency:
        plan.concurrency = tuple(int(x) for x in args.concurrency.split(","))
    if args.concurrent_paths:
        plan.concurrent_paths = tuple(x for x in args.concurrent_paths.split(",") if x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = Path(args.bundle)
    tokenizer_path = str(bundle / TOKENIZER_FILE)
    usd = args.usd_per_hour
    started = time.time()
    cpu = CpuAccounting()
    load_before = os.getloadavg()
    report: dict = {"command": " ".join(["python -m opencc_cm_benchmarks.serving_benchmark", *args.argv]),
                    "quick": bool(args.quick), "machine": machine_info(), "usd_per_hour": usd,
                    "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.__dict__.items()},
                    "loadavg_at_start": load_before, "notes": []}

    # -- workload ---------------------------------------------------------------------------
    tok = LocalTokenizer(tokenizer_path)
    count = lambda text: len(tok.encode([text])[0]) if text else 0  # noqa: E731
    texts = bells_o_prompts(count, plan.prompts, seed=plan.seed, tail_share=plan.tail_share,
                            short_tokens=plan.short_tokens, tail_tokens=plan.tail_tokens)
    # warm-up: other short prompts (another seed), never timed
    warm = bells_o_prompts(count, max(1, plan.warmup), seed=plan.seed + 1000, tail_share=0,
                           short_tokens=plan.short_tokens)
    tokens = [count(t) for t in texts]
    b16_n = min(plan.batch16_prompts, len(texts))
    report["workload"] = {
        "prompts": len(texts), "warmup_prompts": len(warm), "seed": plan.seed,
        "tokens_total": int(sum(tokens)), "tokens_mean": statistics.fmean(tokens),
        "tokens_p50": float(np.percentile(tokens, 50)), "tokens_p95": float(np.percentile(tokens, 95)),
        "tokens_max": int(max(tokens)), "long_share": sum(t >= LONG_TOKENS for t in tokens) / len(tokens),
        "long_threshold_tokens": LONG_TOKENS, "batch16_prompts": b16_n,
        "batch16_tokens": int(sum(tokens[:b16_n])),
        "generator": f"bells_o_prompts(tail_share={plan.tail_share:g}, short={plan.short_tokens}, "
                     f"tail={plan.tail_tokens}, seed={plan.seed})",
    }
    print(f"[workload] {len(texts)} prompts, mean {report['workload']['tokens_mean']:.1f} tokens, "
          f"max {max(tokens)}, {report['workload']['long_share']:.0%} with >= {LONG_TOKENS} tokens")
    configs: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="opencc-cm-bench-"))
    try:
        # -- 1. baseline --------------------------------------------------------------------
        cpu.mark("workload")
        ref = run_worker("reference", {"checkpoint": args.checkpoint, "base_model": args.base_model,
                                       "texts": texts, "warmup_texts": warm, "batch_size": 16,
                                       "batch16_prompts": b16_n}, scratch)
        cpu.mark("baseline")
        if ref["ref_tokens"] != tokens:
            report["notes"].append("the reference tokenizer counts differ from tokenizer.json on some prompts")
        configs.append(entry("baseline b1", "reference", "sequential", ref["b1_ms"], len(texts), sum(tokens),
                              ref["b1_wall_s"], usd, lengths=tokens, batch=1, clients=1))
        b16_batches = math.ceil(b16_n / 16)
        configs.append(entry("baseline b16", "reference", "batched", ref["b16_ms"], b16_n, sum(tokens[:b16_n]),
                              ref["b16_wall_s"], usd, batch=16, clients=1, requests=b16_batches,
                              padding_waste=1 - ref["b16_real_tokens"] / max(ref["b16_padded_cells"], 1)))
        # -- 2. ONNX Runtime alone ----------------------------------------------------------
        ort_res = run_worker("onnxruntime", {"bundle": str(bundle), "texts": texts, "warmup_texts": warm}, scratch)
        cpu.mark("onnxruntime")
        configs.append(entry("onnxruntime b1", "onnxruntime", "sequential", ort_res["b1_ms"], len(texts),
                              sum(tokens), ort_res["b1_wall_s"], usd, lengths=tokens, batch=1, clients=1))
        # -- 3. Triton ----------------------------------------------------------------------
        server_out = serve_and_measure(args, plan, bundle, tokenizer_path, texts, warm, tokens, scratch, usd)
        configs.extend(server_out["configs"])
        cpu.mark("triton")  # the server has exited: its CPU time is counted
        # -- 4. reduced precision: the reference as shipped (the band), then each path -----------
        reduced = [(p, b) for p, b in (("bf16", bundle if args.bf16 else None),
                                       ("int8", Path(args.int8_bundle) if args.int8_bundle else None)) if b]
        shipped, reduced_out = None, {}
        if reduced:
            shipped = run_worker("reference_shipped", {"checkpoint": args.checkpoint, "base_model": args.base_model,
                                                       "texts": texts, "warmup_texts": warm}, scratch)
            cpu.mark("baseline bf16")
            configs.append(entry("baseline bf16 b1", "reference", "sequential", shipped["b1_ms"], len(texts),
                                 sum(tokens), shipped["b1_wall_s"], usd, lengths=tokens, batch=1, clients=1,
                                 precision="bf16"))
        for precision, reduced_bundle in reduced:
            reduced_out[precision] = serve_reduced_precision(args, plan, precision, reduced_bundle, tokenizer_path,
                                                             texts, warm, tokens, scratch, usd)
            configs.extend(reduced_out[precision]["configs"])
            cpu.mark(f"triton {precision}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report["configs"] = configs
    report["memory_peak_rss_mib"] = {
        "baseline_process": ref["peak_rss_mib"], "onnxruntime_process": ort_res["peak_rss_mib"],
        "server_tree": server_out["memory"]["peak_mib"], "server_tree_after_load": server_out["memory"]["after_load_mib"],
        "server_by_process": server_out["memory"]["by_process"],
    }
    report["parity_max_abs_score_diff_vs_baseline_b1"] = {
        "onnxruntime": _max_diff(ort_res["b1_scores"], ref["b1_scores"]),
        "triton_ids": _max_diff(server_out["scores"]["ids"], ref["b1_scores"]),
        "triton_text": _max_diff(server_out["scores"]["text"], ref["b1_scores"]),
    }
    if shipped:
        report["fidelity_vs_fp32_oracle"] = reduced_fidelity(bundle, ref["b1_scores"], shipped["b1_scores"],
                                                             {f"triton ids {p} b1": o["scores"]
                                                              for p, o in reduced_out.items()})
    if server_out["server_tokens"] != tokens:
        report["notes"].append("the server's token counts differ from the workload's")
    report["load"] = {"baseline_load_s": ref["load_s"], "onnxruntime_session_s": ort_res["load_s"],
                      "server_ready_s": server_out["ready_s"], "torch_threads": ref["torch_threads"],
                      "onnxruntime_providers": ort_res["providers"]}
    report["ratios"] = ratios(configs, report.get("fidelity_vs_fp32_oracle"))
    report["cpu_accounting"] = cpu.result()
    report["loadavg_at_end"] = os.getloadavg()
    report["duration_s"] = time.time() - started
    report["started_unix"] = started
    for phase, acc in report["cpu_accounting"]["phases"].items():
        if acc["others_share_of_capacity"] > 0.05 and acc["wall_s"] > 1:
            report["notes"].append(f"other processes used {acc['others_share_of_capacity']:.0%} of the CPU "
                                   f"capacity during the {phase} phase: its timings are disturbed")
    write_reports(report, out)
    print(summary_text(report))
    return report








# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------










def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_benchmarks.serving_benchmark",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="classifier checkpoint folder (the baseline loads it)")
    p.add_argument("--base-model", help="base model folder")
    p.add_argument("--bundle", help="deploy bundle exported from that checkpoint")
    p.add_argument("--bf16", action="store_true",
                   help="also serve the bundle in bf16 (python-torch, CPU instance): 'triton ids bf16 b1/cN', "
                   "judged against the fp32 baseline next to the reference as shipped (bf16, also run)")
    p.add_argument("--int8-bundle", help="also serve this int8 bundle (export --precision int8 of the same "
                   "checkpoint) on python-ort: 'triton ids int8 b1/cN', judged like --bf16")
    p.add_argument("--out", help="folder for the JSON, markdown and PNG reports")
    p.add_argument("--quick", action="store_true", help="a handful of prompts: a smoke run (seconds on tiny)")
    p.add_argument("--prompts", type=int, help="timed prompts per batch-1 path (default 40; quick 6)")
    p.add_argument("--batch16-prompts", type=int, help="timed prompts of the baseline at batch 16 (default 32)")
    p.add_argument("--warmup", type=int, help="untimed prompts before each path (default 3)")
    p.add_argument("--concurrency", help="comma list of concurrent clients (default 1,4,16,64)")
    p.add_argument("--concurrent-paths", help="comma list of ids,text (default both)")
    p.add_argument("--requests-per-client", type=int, help="requests of a level: max(min, N x this) (default 2)")
    p.add_argument("--min-requests", type=int, help="at least this many requests per level (default 24)")
    p.add_argument("--seed", type=int)
    p.add_argument("--usd-per-hour", type=float, default=2.39, help="machine price for the cost column")
    p.add_argument("--repository", default=str(TEMPLATES), help="model repository holding the templates")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--queue-timeout-us", type=int, default=0, help="deploy's per-request queue timeout; 0 = its default")
    p.add_argument("--client-timeout-s", type=float, default=600.0, help="per-call gRPC deadline of the clients")
    p.add_argument("--server-log", help="keep the Triton log here (default: a temporary file)")
    p.add_argument("--render", metavar="JSON", help="only rewrite the markdown and PNG from an existing report")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-io", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        io = Path(args.worker_io)
        result = WORKERS[args.worker](json.loads((io / "in.json").read_text()))
        (io / "out.json").write_text(json.dumps(result))
        return 0
    if args.render:  # rewrite the markdown and the plot from a report (e.g. after a format change)
        path = Path(args.render)
        report = json.loads(path.read_text())
        report["ratios"] = ratios(report["configs"], report.get("fidelity_vs_fp32_oracle"))
        write_reports(report, Path(args.out) if args.out else path.parent)
        return 0
    missing = [k for k in ("checkpoint", "base_model", "bundle", "out") if not getattr(args, k)]
    if missing:
        parser().error("required: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    args.argv = argv
    # SIGTERM unwinds like Ctrl-C: children killed, server stopped, scratch repository removed.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
