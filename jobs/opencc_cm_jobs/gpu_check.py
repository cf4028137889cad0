"""The whole GPU proof in one run: fidelity and speed of the python-torch encoder.

    make gpu-check            # = scripts/gpu-check.sh: the GPU machine's python3, this tree's packages on PYTHONPATH
    python -m opencc_cm_jobs.gpu_check --out DIR [--quick]

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
Before any work it prints the plan: each phase, and whether it will run or why it cannot here
(no CUDA, fla-core not importable, no tritonclient, no server stub for this Python...). A phase
that cannot run, or that the time budget no longer covers, is recorded as "not run: why".
Fidelity gate of every variant: max |score diff| and flips against the fp32 oracle, next to the
reference as shipped (HF bf16) on the same prompts; "within the reference's band" when it is no
further from fp32 than the reference and every flip's oracle score lies within that distance of
its threshold.
Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``. ``--quick`` (a rerun after a
failure, ~4 minutes): fewer prompts, only the reference, the CUDA-graph variant and gRPC.
``--device cpu --size tiny`` is the dry run the tests do, through ``scripts/gpu-check.sh`` under
an interpreter with only the GPU machine's packages (no CUDA graphs, no fla: those phases say so).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from opencc_cm_contract.buckets import bucket_list, powers_of_two
from opencc_cm_contract.latency import latency_summary
from opencc_cm_contract.text_rules import pad_right

from opencc_cm_export.bundle import write_bundle_manifest
from opencc_cm_export.classifier_graph import build_merged_classifier
from opencc_cm_export.fidelity import fidelity
from opencc_cm_export.gated_delta_export import gated_delta_rule
from opencc_cm_export.parity import check_parity
from opencc_cm_export.reference import ReferenceClassifier, activate
from opencc_cm_export.synthetic_checkpoint import calibration_prompts, checkpoint_paths, write_synthetic_checkpoint
from opencc_cm_export.torch_encoder import TorchEncoder, TorchEncoderSettings, load_merged, save_merged

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


PHASES = ("torch_weights_fp32_parity", "reference_as_shipped_bf16", "ours_bf16_eager_torch_rule",
          "ours_bf16_eager_fla", "ours_bf16_fla_cuda_graphs", "ours_fp16_fla_cuda_graphs", "triton_grpc")
QUICK_PHASES = ("torch_weights_fp32_parity", "reference_as_shipped_bf16", "ours_bf16_fla_cuda_graphs", "triton_grpc")


def _import_problem(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or None."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a version check failing at import
        return f"{module} not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def triton_problem() -> str | None:
    """Why the gRPC phase cannot run here, or None: the client library (tritonclient.grpc, our
    protobuf messages) and a server (tritonserver on PATH, or the pip-bundled one with a stub for
    this Python)."""
    import shutil

    for module in ("tritonclient.grpc", "opencc_cm_client.results"):
        problem = _import_problem(module)
        if problem:
            return problem + " (carry it: make gpu-wheels)"
    if shutil.which("tritonserver"):
        return None
    from opencc_cm_serving.launch import bundled_server_problem

    problem = bundled_server_problem()
    return f"{problem} (carry nvidia-pytriton: make gpu-wheels)" if problem else None


def plan(device: torch.device, quick: bool, triton: str) -> dict[str, str | None]:
    """Phase -> None (it will run) or why it cannot run here; printed before any work."""
    cuda = device.type == "cuda"
    out: dict[str, str | None] = {name: None for name in PHASES}
    if not cuda:
        out["ours_bf16_eager_fla"] = "fla-core needs a CUDA device (this one is cpu)"
    elif importlib.util.find_spec("fla") is None:
        out["ours_bf16_eager_fla"] = "fla-core is not installed (carry it: make gpu-wheels)"
    else:
        out["ours_bf16_eager_fla"] = _import_problem("fla.ops.gated_delta_rule")
    out["triton_grpc"] = "--triton off" if triton == "off" else triton_problem()
    if quick:
        out.update({name: "--quick" for name in PHASES if name not in QUICK_PHASES})
    return out


def print_plan(steps: dict[str, str | None], device: torch.device) -> None:
    graphs = "" if device.type == "cuda" else " (no CUDA graphs on the CPU: bucket padding only)"
    print("[gpu-check] plan:", flush=True)
    for name, why in steps.items():
        state = f"cannot run: {why}" if why else "will run" + (graphs if "cuda_graphs" in name else "")
        print(f"[gpu-check]   {name}: {state}", flush=True)


class Budget:
    """Runs phases while time is left; a phase that fails or cannot run records why."""

    def __init__(self, seconds: float, report: dict, save=None):
        """``save(report)`` runs after every phase: if the machine's hard limit stops the run,
        the report of the phases done so far is on disk."""
        self.deadline, self.report, self.save = time.perf_counter() + seconds, report, save
        self.report.setdefault("phase_seconds", {})

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, fn, *, need_s: float = 0.0, blocked: str | None = None):
        if blocked:
            self.report[name] = f"not run: {blocked}"
            print(f"[gpu-check] {name}: {self.report[name]}", flush=True)
            return None
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
        if self.save is not None:
            self.save(self.report)
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
    return latency_summary(ms), scores


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
    return latency_summary(ms), latency_summary(short), scores


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


def triton_phase(bundle: Path, out: Path, texts: list[str], device: torch.device, dtype: str, truth, thresholds,
                 labels, calls_per_client: int = 8, ref_distance: float | None = None) -> dict:
    """Deploy the python-torch target from the bundle, start the pip tritonserver, measure gRPC
    (the plan checked beforehand that the client library and a server are there)."""
    from opencc_cm_client import ClassifierClient, ConnectionOptions
    from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES, DeploySettings, deploy
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = out / "triton-repo"
    templates = CHECKOUT_TEMPLATES
    kind = "gpu" if device.type == "cuda" else "cpu"
    deploy(DeploySettings(bundle=bundle, repository=templates, output=repo, target="python-torch",
                          instance_kind=kind, torch_dtype=dtype, length_buckets=bucket_list(powers_of_two(16, 512)),
                          max_batch_size=64, pad_to_buckets="on"))
    result: dict = {}
    with TritonServer(repo, ServerSettings(log_path=out / "tritonserver.log", ready_timeout=300)) as server:
        with ClassifierClient(server.grpc_url, tokenizer=bundle / "tokenizer.json") as client:
            for text in texts[:5]:
                client.classify([text])
            ms, scores = [], []
            for text in texts:
                t0 = time.perf_counter()
                res = client.classify([text])[0]
                ms.append((time.perf_counter() - t0) * 1000)
                scores.append([label.score for label in res.labels])
            result["grpc_batch1_client_tokenizes"] = latency_summary(ms)
            result["fidelity_vs_fp32_oracle"] = fidelity(truth, np.asarray(scores, dtype=np.float32),
                                                         thresholds, labels, ref_distance)

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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="real-shape", choices=["tiny", "real-shape"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true",
                   help="a rerun in what is left of a loan (~4 min): fewer prompts, reference + CUDA graphs + gRPC")
    p.add_argument("--prompts", type=int, help="prompts per phase (default 200, --quick 64)")
    p.add_argument("--budget-s", type=float, help="stop starting phases after this many seconds (default 400, --quick 190)")
    p.add_argument("--throughput-s", type=float, help="seconds per throughput batch size (default 4, --quick 1)")
    p.add_argument("--triton", choices=("auto", "off"), default="auto")
    p.add_argument("--grpc-calls", type=int, help="batch-64 calls per client (4 clients) in the gRPC phase (default 8, --quick 2)")
    args = p.parse_args(argv)
    for name, full, quick in (("prompts", 200, 64), ("budget_s", 400.0, 190.0), ("throughput_s", 4.0, 1.0),
                              ("grpc_calls", 8, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print(f"[gpu-check] --device {args.device} but torch {torch.__version__} sees no CUDA device: "
              "every phase needs it; nothing run", flush=True)
        return 2
    steps = plan(device, args.quick, args.triton)
    print_plan(steps, device)
    t0 = time.perf_counter()
    report: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu (dry run)",
                    "torch": torch.__version__, "size": args.size, "prompts": args.prompts, "quick": args.quick,
                    "plan": {name: why or "will run" for name, why in steps.items()}}
    import transformers

    report["transformers"] = transformers.__version__
    try:
        import fla
        report["fla_core"] = getattr(fla, "__version__", "present")
    except Exception as exc:  # noqa: BLE001
        report["fla_core"] = f"not importable: {type(exc).__name__}: {exc}"
    budget = Budget(args.budget_s, report, save=lambda r: write_report(r, out, partial=True))

    paths = checkpoint(out / f"checkpoint-{args.size}", args.size)
    report["phase_seconds"]["checkpoint"] = round(time.perf_counter() - t0, 2)

    # 1. fp32 oracle
    started = time.perf_counter()
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
    report["phase_seconds"]["oracle_fp32"] = round(time.perf_counter() - started, 2)

    # 2. bundle files + fp32 parity of the torch weights through the runner
    bundle = out / "bundle"
    bundle.mkdir(exist_ok=True)
    budget.run("torch_weights_fp32_parity", lambda: make_torch_bundle(ref32, bundle, device, pad, report["device"],
                                                                       str(paths["classifier"])))
    ref32 = None  # free the fp32 copy before the timed phases
    reset_peak(device)

    # 3. the reference as shipped
    def reference():
        ref = ReferenceClassifier.load(paths["classifier"], base_model=paths["base_model"], dtype=torch.bfloat16,
                                       device=device)
        latency, ref_scores = time_reference(ref, texts)
        return {"batch1": latency, "fidelity_vs_fp32_oracle": fidelity(truth, ref_scores, thresholds, labels),
                "peak_gpu_memory_gib": peak_memory(device), "gated_delta": "transformers' own torch rule"}

    budget.run("reference_as_shipped_bf16", reference, need_s=30, blocked=steps["reference_as_shipped_bf16"])
    ref_distance = _get(report, "reference_as_shipped_bf16", "fidelity_vs_fp32_oracle", "max_abs_score_diff")

    # 4. ours
    models: dict[str, torch.nn.Module] = {}
    for name, dtype, settings in encoder_variants(cuda):
        def run_variant(name=name, dtype=dtype, settings=settings):
            return encoder_variant(name, dtype, settings, bundle, device, pad, rows, models,
                                   (truth, thresholds, labels, ref_distance), args.throughput_s)

        budget.run(name, run_variant, need_s=20, blocked=steps[name])
    models.clear()

    # 5. Triton gRPC
    budget.run("triton_grpc", lambda: triton_phase(bundle, out, texts, device, "bf16" if cuda else "fp32",
                                                   truth, thresholds, labels, args.grpc_calls, ref_distance),
               need_s=60, blocked=steps["triton_grpc"])

    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(report, out)
    print((out / "gpu_check.md").read_text())
    return 0


def write_report(report: dict, out: Path, partial: bool = False) -> None:
    """``gpu_check.json`` and ``gpu_check.md``; a partial one (after each phase) says so."""
    report["complete"] = not partial
    report["targets"] = targets_met(report, judged=not report["device"].startswith("cpu"))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def checkpoint(folder: Path, size: str) -> dict[str, Path]:
    """The seeded synthetic checkpoint (same bytes every run): reused when a complete one is
    already in ``folder`` (a rerun in the same loan skips the slowest CPU phase), else written."""
    done = folder / "complete"
    paths = checkpoint_paths(folder)
    if done.is_file():
        print(f"[checkpoint] {size}: reusing {folder}", flush=True)
        return paths
    paths = write_synthetic_checkpoint(folder, size, progress=print)
    done.write_text("written by gpu_check\n")
    return paths


def make_torch_bundle(ref32: ReferenceClassifier, bundle: Path, device, pad: int, where: str, checkpoint: str) -> dict:
    """The merged torch weights the python-torch encoder serves, read back through its runner and
    parity-checked in fp32 against the oracle; writes the bundle's classifier.json."""
    merged = build_merged_classifier(ref32, keep_reference=True)
    save_merged(merged, bundle)
    del merged
    enc = TorchEncoder(bundle, TorchEncoderSettings(device=str(device), dtype="fp32", gated_delta="torch",
                                                    pad_to_buckets="off", cuda_graphs="off"), pad_id=pad)
    rep = check_parity(ref32, enc, precision="fp32", progress=lambda *_: None)
    record = {"max_abs_score_diff": rep.max_abs_diff, "decision_agreement": rep.decision_agreement,
              "tolerance": rep.tolerance, "passed": rep.passed, "where": f"gpu check on {where}"}
    write_bundle_manifest(ref32, bundle, max_tokens=2048, precision="fp32", checkpoint=checkpoint,
                          parity={"passed": False, "reason": "gpu check: no ONNX graph exported"},
                          torch_parity=record)
    return record


def encoder_variants(cuda: bool) -> list[tuple[str, str, dict]]:
    graphs = "on" if cuda else "off"
    return [
        ("ours_bf16_eager_torch_rule", "bf16", dict(gated_delta="torch", pad_to_buckets="off", cuda_graphs="off")),
        ("ours_bf16_eager_fla", "bf16", dict(gated_delta="fla", pad_to_buckets="off", cuda_graphs="off")),
        ("ours_bf16_fla_cuda_graphs", "bf16", dict(gated_delta="auto", pad_to_buckets="on", cuda_graphs=graphs)),
        ("ours_fp16_fla_cuda_graphs", "fp16", dict(gated_delta="auto", pad_to_buckets="on", cuda_graphs=graphs)),
    ]


def encoder_variant(name: str, dtype: str, settings: dict, bundle: Path, device, pad: int, rows, models: dict,
                    oracle: tuple, throughput_s: float) -> dict | str:
    """One TorchEncoder setting: batch-1 latency, fidelity against the oracle (and the reference's
    band), bucket padding cost, throughput for the CUDA-graph variant, peak memory. ``models``
    keeps one loaded copy per dtype across variants."""
    truth, thresholds, labels, ref_distance = oracle
    reset_peak(device)
    if dtype not in models:
        models.clear()
        reset_peak(device)
        models[dtype] = load_merged(bundle, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype],
                                    device=device)
    log: list[str] = []
    started = time.perf_counter()
    try:
        enc = TorchEncoder(bundle, TorchEncoderSettings(device=str(device), dtype=dtype, length_buckets=powers_of_two(16, 512),
                                                        batch_buckets=powers_of_two(1, 64), **settings),
                           pad_id=pad, model=models[dtype], log=log.append)
    except Exception as exc:  # noqa: BLE001 - e.g. fla asked where it cannot run
        return f"not run: {exc}"
    result = {"settings": settings, "log": log, "cuda_graphs_captured": len(enc.graphs),
              "setup_seconds": round(time.perf_counter() - started, 2)}
    result["batch1_all"], result["batch1_le_64_tokens"], scores = time_encoder(enc, rows, pad)
    result["fidelity_vs_fp32_oracle"] = fidelity(truth, scores, thresholds, labels, ref_distance)
    if enc.pad_to_buckets:  # what padding into buckets costs: cells run per real token at batch 1
        real = sum(len(r) for r in rows)
        result["batch1_bucket_cells_per_real_token"] = round(sum(enc.padded_shape(1, len(r))[1] for r in rows) / real, 3)
    if name == "ours_bf16_fla_cuda_graphs":
        result["throughput_prompts_per_s"] = throughput(enc, rows, pad, seconds_each=throughput_s)
    result["peak_gpu_memory_gib"] = peak_memory(device)
    return result


def _get(report, *keys):
    cur = report
    for key in keys:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def targets_met(report: dict, judged: bool = True) -> dict:
    """The GPU route's targets (encoder latency, batch-64 throughput, gRPC latency), each with the
    measured value or null where not measured; ``met``
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
             *([] if report.get("complete", True) else
               ["**Partial report: written after the last phase that finished; the run did not end.**", ""]),
             "Plan: " + "; ".join(f"{k}: {v}" for k, v in report.get("plan", {}).items()), "",
             "| path | batch-1 p50 / p99 ms (all) | p50 ms (<= 64 tok) | max abs score diff vs fp32 oracle | flips "
             "| within the reference's band | peak GiB |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name in ("reference_as_shipped_bf16",) + tuple(v[0] for v in encoder_variants(False)) + ("triton_grpc",):
        r = report.get(name)
        if not isinstance(r, dict):
            lines.append(f"| {name} | {r} | | | | | |")
            continue
        b1 = r.get("batch1") or r.get("batch1_all") or r.get("grpc_batch1_client_tokenizes") or {}
        short = r.get("batch1_le_64_tokens") or {}
        f = r.get("fidelity_vs_fp32_oracle") or {}
        band = "(the reference)" if name == "reference_as_shipped_bf16" else f.get("within_reference_band", "n/a")
        lines.append(f"| {name} | {b1.get('p50_ms', float('nan')):.2f} / {b1.get('p99_ms', float('nan')):.2f} | "
                     f"{short.get('p50_ms', float('nan')):.2f} | {f.get('max_abs_score_diff', float('nan')):.3e} | "
                     f"{f.get('decision_flips')}/{f.get('decisions')} | {band} | {r.get('peak_gpu_memory_gib')} |")
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
