"""checkpoint -> reference oracle -> merged classifier -> ONNX -> parity -> deploy bundle."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from opencc_cm_contract.bundle_format import ONNX_FILE, TORCH_CONFIG_FILE, TORCH_WEIGHTS_FILE
from opencc_cm_contract.limits import DEFAULT_MAX_TOKENS

from .blocked_attention import DEFAULT_QUERY_BLOCK
from .bundle import write_bundle_manifest
from .classifier_graph import build_merged_classifier
from .int8_quantization import DEFAULT_METHOD, int8_parity, int8_summary, quantize_graph
from .onnx_export import PRECISIONS, export_onnx
from .parity import check_parity, onnx_runner, onnx_session
from .reference import ReferenceClassifier
from .torch_encoder import save_merged


FP32_SOURCE_DIR = "fp32-source"  # scratch folder of the fp32 graph an int8 export quantizes


class ParityError(AssertionError):
    """The exported graph does not reproduce the reference within tolerance."""


class ParityUnchecked(RuntimeError):
    """The graph was written but this machine's ONNX Runtime cannot run it (e.g. bf16 on CPU)."""


def export_bundle(checkpoint: str | Path, out: str | Path, *, base_model: str | Path | None = None,
                  precision: str = "fp32", max_tokens: int = DEFAULT_MAX_TOKENS,
                  parity_lengths=None, query_block: int | None = DEFAULT_QUERY_BLOCK, progress=print,
                  int8_method: str = DEFAULT_METHOD):
    """Export ``checkpoint`` into the bundle folder ``out`` and prove parity; return the report.

    ``query_block``: queries per block of the full-attention layers (memory linear in the
    length); None exports transformers' attention, which holds [batch, heads, seq, seq] scores
    (for side-by-side memory benchmarks only).

    ``precision="int8"``: the fp32 graph is exported, then its weight MatMuls quantized
    (``int8_method``, see :mod:`.int8_quantization`); no torch weights are written (the
    python-torch encoder does not run int8) and the parity record is :func:`int8_parity`'s.

    Raises :class:`ParityError` (after writing the graph, for inspection) when parity fails.
    """
    if precision == "int8":
        return _export_int8(checkpoint, Path(out), base_model=base_model, max_tokens=max_tokens,
                            parity_lengths=parity_lengths, query_block=query_block, progress=progress,
                            method=int8_method)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    progress(f"[load] reading checkpoint {checkpoint} (base model: {base_model or 'from manifest'})")
    reference = ReferenceClassifier.load(checkpoint, base_model=base_model, dtype=torch.float32)
    spec = reference.spec
    progress(f"[load] {spec.objective} head, {spec.num_labels} labels, LoRA r={spec.lora['r']} on "
             f"{len(spec.lora['target_modules'])} module kinds ({time.perf_counter() - started:.0f} s)")
    progress("[merge] merging the LoRA into the base weights")
    merged = build_merged_classifier(reference, keep_reference=True, dtype=PRECISIONS[precision],
                                     query_block=query_block)
    progress("[merge] full attention: " + (f"query blocks of {query_block}" if query_block
                                             else "transformers' attention ([heads, seq, seq] scores)"))
    vocab = int(reference.backbone.get_base_model().config.get_text_config().vocab_size)
    kwargs = {"lengths": parity_lengths} if parity_lengths else {}
    torch_parity = export_torch_weights(reference, merged, out, precision=precision, progress=progress, **kwargs)
    model_path = export_onnx(merged, out / ONNX_FILE, vocab=vocab, max_tokens=max_tokens,
                             progress=progress)
    del merged
    progress(f"[parity] {precision} ONNX Runtime vs the reference (unmerged PEFT, fp32)")
    try:
        session = onnx_session(model_path)
    except Exception as exc:  # onnxruntime raises its own types for unsupported graphs
        write_bundle_manifest(reference, out, max_tokens=max_tokens, precision=precision,
                              checkpoint=str(checkpoint), query_block=query_block,
                              parity={"passed": False, "reason": f"not checked: {exc}"},
                              torch_parity=torch_parity)
        raise ParityUnchecked(f"{model_path} written, but ONNX Runtime here cannot load it ({exc}); "
                              f"check parity where the {precision} graph runs (e.g. TensorRT on the GPU)") from exc
    report = check_parity(reference, onnx_runner(session), precision=precision, progress=progress, **kwargs)
    progress(report.summary())
    write_bundle_manifest(reference, out, max_tokens=max_tokens, precision=precision,
                          checkpoint=str(checkpoint), parity=parity_record(report), torch_parity=torch_parity,
                          query_block=query_block)
    if not report.passed:
        raise ParityError(report.summary())
    if not torch_parity["passed"]:
        raise ParityError(f"torch weights ({TORCH_WEIGHTS_FILE}): max |score diff| "
                          f"{torch_parity['max_abs_score_diff']:.3e}, decision agreement "
                          f"{torch_parity['decision_agreement']:.4f}")
    progress(f"[done] bundle in {out} ({time.perf_counter() - started:.0f} s)")
    return report


def _export_int8(checkpoint, out: Path, *, base_model, max_tokens: int, parity_lengths, query_block,
                 progress, method: str) -> dict:
    """fp32 graph -> int8 graph in ``out`` -> fidelity against the fp32 oracle next to the reference
    as shipped (bf16); returns the parity record."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    progress(f"[load] reading checkpoint {checkpoint} (base model: {base_model or 'from manifest'})")
    reference = ReferenceClassifier.load(checkpoint, base_model=base_model, dtype=torch.float32)
    merged = build_merged_classifier(reference, keep_reference=True, dtype=torch.float32, query_block=query_block)
    vocab = int(reference.backbone.get_base_model().config.get_text_config().vocab_size)
    for stale in (TORCH_WEIGHTS_FILE, TORCH_CONFIG_FILE):  # a bundle folder reused from an fp32 export
        (out / stale).unlink(missing_ok=True)
    source = out / FP32_SOURCE_DIR
    source.mkdir(exist_ok=True)
    fp32_graph = export_onnx(merged, source / ONNX_FILE, vocab=vocab, max_tokens=max_tokens, progress=progress)
    del merged
    try:
        quantization = quantize_graph(fp32_graph, out / ONNX_FILE, method=method, progress=progress)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    progress("[parity] int8 ONNX Runtime vs the fp32 oracle, next to the reference as shipped (bf16)")
    reference_bf16 = ReferenceClassifier.load(checkpoint, base_model=base_model, dtype=torch.bfloat16)
    record = int8_parity(reference, onnx_runner(onnx_session(out / ONNX_FILE)), reference_bf16,
                         lengths=parity_lengths, quantization=quantization)
    del reference_bf16
    progress(int8_summary(record))
    write_bundle_manifest(reference, out, max_tokens=max_tokens, precision="int8", checkpoint=str(checkpoint),
                          parity=record, torch_parity=None, query_block=query_block)
    if not record["passed"]:
        raise ParityError(int8_summary(record))
    progress(f"[done] bundle in {out} ({time.perf_counter() - started:.0f} s)")
    return record


def parity_record(report) -> dict:
    return {"max_abs_score_diff": report.max_abs_diff, "decision_agreement": report.decision_agreement,
            "tolerance": report.tolerance, "passed": report.passed,
            "cases": [asdict(c) for c in report.cases]}


def export_torch_weights(reference: ReferenceClassifier, merged, out: Path, *, precision: str,
                         progress=print, **parity_kwargs) -> dict:
    """Write the merged weights the ``python-torch`` encoder loads, read them back through the
    same loader and runner the server uses (CPU, eager, exact shapes), and check them against
    the oracle with the ONNX graph's probe set and tolerance. Returns the parity record."""
    from .torch_encoder import TorchEncoder, TorchEncoderSettings

    weights, _ = save_merged(merged, out)
    progress(f"[torch] wrote {weights} ({weights.stat().st_size / 2**20:.1f} MiB)")
    progress(f"[parity] {precision} torch weights (python-torch encoder, CPU eager) vs the reference")
    encoder = TorchEncoder(out, TorchEncoderSettings(device="cpu", dtype=precision, gated_delta="torch"),
                           pad_id=int(reference.tokenizer.pad_token_id), log=lambda line: progress(f"[torch] {line}"))
    report = check_parity(reference, encoder, precision=precision, progress=progress, **parity_kwargs)
    del encoder
    progress(report.summary())
    return parity_record(report)
