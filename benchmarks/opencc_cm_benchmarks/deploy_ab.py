"""Two deployments of one bundle, A and B, measured side by side at batch 1 over the ids ensemble.

    python -m opencc_cm_benchmarks.deploy_ab --bundle artifacts/bundles/real-shape-fp32 \
        --a=--encoder-spinning=off --b=--encoder-spinning=on --out benchmarks/deploy_ab/spinning.json

Both servers run at once (each deployed with ``--target python-ort`` and its own extra deploy
arguments) and the prompts of ``make bench``'s workload (``bells_o_prompts``, seed 0) go to A and
B in turn, one request at a time, so a change of load on the machine hits both alike. Per
prompt the pair's difference is kept: the report gives each side's mean and p50, the paired
median of B - A, and B's mean speed-up over A; scores must agree within ``--max-score-diff``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--a", action="append", default=[], help="a deploy argument of side A (repeatable)")
    p.add_argument("--b", action="append", default=[], help="a deploy argument of side B (repeatable)")
    p.add_argument("--prompts", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2, help="passes over the prompts")
    p.add_argument("--max-score-diff", type=float, default=1e-4)
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)

    from opencc_cm_client import ClassifierClient
    from opencc_cm_client.local_tokenizer import LocalTokenizer
    from opencc_cm_contract.bundle_format import TOKENIZER_FILE
    from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES, main as deploy_main
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    from .workload import bells_o_prompts

    bundle = Path(args.bundle)
    tokenizer = str(bundle / TOKENIZER_FILE)
    tok = LocalTokenizer(tokenizer)
    texts = bells_o_prompts(lambda t: len(tok.encode([t])[0]) if t else 0, args.prompts)
    scratch = Path(tempfile.mkdtemp(prefix="opencc-cm-ab-"))
    sides = {"A": args.a, "B": args.b}
    report = {"bundle": str(bundle), "deploy_args": sides, "prompts": len(texts), "rounds": args.rounds,
              "load_average_start": os.getloadavg()}
    try:
        repos = {}
        for side, extra in sides.items():
            repos[side] = scratch / side
            try:
                code = deploy_main(["--bundle", str(bundle), "--repository", str(CHECKOUT_TEMPLATES), "--output",
                                    str(repos[side]), "--target", "python-ort", *extra])
            except SystemExit as exc:  # the command line refused an argument
                code = exc.code
            if code != 0:
                raise SystemExit(f"deploy of side {side} ({' '.join(extra)}) failed (exit {code})")
        with TritonServer(repos["A"], ServerSettings(log_path=scratch / "A.log", ready_timeout=900)) as a, \
                TritonServer(repos["B"], ServerSettings(log_path=scratch / "B.log", ready_timeout=900)) as b:
            clients = {"A": ClassifierClient(a.grpc_url, tokenizer=tokenizer),
                       "B": ClassifierClient(b.grpc_url, tokenizer=tokenizer)}
            for client in clients.values():
                client.classify(texts[:3])  # warm-up
            ms = {"A": [], "B": []}
            scores = {"A": [], "B": []}
            for r in range(args.rounds):
                for i, text in enumerate(texts):
                    order = ("A", "B") if (i + r) % 2 == 0 else ("B", "A")
                    for side in order:
                        t0 = time.perf_counter()
                        result = clients[side].classify([text])[0]
                        ms[side].append((time.perf_counter() - t0) * 1e3)
                        scores[side].append([x.score for x in result.labels])
            for client in clients.values():
                client.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    diff = float(np.abs(np.asarray(scores["A"]) - np.asarray(scores["B"])).max())
    report.update({
        side: {"mean_ms": statistics.fmean(v), "p50_ms": statistics.median(v), "samples_ms": [round(x, 2) for x in v]}
        for side, v in ms.items()})
    report["paired_median_b_minus_a_ms"] = statistics.median(np.subtract(ms["B"], ms["A"]).tolist())
    report["mean_speedup_b_over_a"] = report["A"]["mean_ms"] / report["B"]["mean_ms"]
    report["max_abs_score_diff"] = diff
    report["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"A {args.a}: mean {report['A']['mean_ms']:.1f} ms, p50 {report['A']['p50_ms']:.1f}")
    print(f"B {args.b}: mean {report['B']['mean_ms']:.1f} ms, p50 {report['B']['p50_ms']:.1f}")
    print(f"B over A: {report['mean_speedup_b_over_a']:.3f}x mean; paired median B - A "
          f"{report['paired_median_b_minus_a_ms']:+.1f} ms; max |score diff| {diff:.2e}")
    if diff > args.max_score_diff:
        print(f"FAIL: the two deployments' scores differ by {diff:.2e} (> {args.max_score_diff})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
