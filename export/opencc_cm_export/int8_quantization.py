"""int8 weights for the CPU: the fp32 export graph's weight MatMuls rewritten to run on VNNI.

Two ONNX Runtime rewrites, chosen by ``method``:

- ``dynamic``: ``onnxruntime.quantization.quantize_dynamic``, per-channel signed int8 weights,
  activations quantized per call (``DynamicQuantizeMatMul`` / ``MatMulInteger``). Only MatMuls
  whose weight is a constant initializer are touched (``MatMulConstBOnly``); Scan bodies are
  entered (``EnableSubgraph``) so that nothing constant inside them is skipped unknowingly.
- ``nbits``: ``MatMulNBitsQuantizer`` with 8 bits, symmetric blocks and ``accuracy_level=4``
  (int8 activations, int8 dot products).

Which weight MatMul computes what comes from the exporter's name scopes on each node
(``text_model.layers.N.linear_attn.in_proj_b``...): :data:`KEEP_FP32` names the module kinds
left in fp32 (the Gated DeltaNet gate and beta projections, tiny and feeding exponentials and
sigmoids). The classification head is a ``Gemm`` and RMSNorms are elementwise ops: neither is a
MatMul, so both stay fp32.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path

import numpy as np

METHODS = ("dynamic", "nbits")
DEFAULT_METHOD = "nbits"
KEEP_FP32 = ("in_proj_a", "in_proj_b")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "MatMulIntegerToFloat")
NBITS_BLOCK = 32
NBITS_ACCURACY_LEVEL = 4


class QuantizationError(RuntimeError):
    """The graph could not be quantized as asked (unknown method or module kind, nothing quantized)."""


def _module_path(node) -> str:
    """The torch module a node was traced from, e.g. ``text_model.layers.0.linear_attn.in_proj_b``."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
            modules = [s for s in scopes if s]
            return modules[-2] if len(modules) >= 2 else (modules[0] if modules else "")
    return ""


def weight_matmuls(model) -> dict[str, str]:
    """``{node name: module path}`` of the top graph's MatMuls whose second input is a weight."""
    inits = {i.name for i in model.graph.initializer}
    return {n.name: _module_path(n) for n in model.graph.node
            if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in inits}


def nodes_kept(model, keep=KEEP_FP32) -> list[str]:
    """The weight MatMuls whose module kind (last part of the module path) is in ``keep``."""
    found = weight_matmuls(model)
    kinds = {path.rsplit(".", 1)[-1] for path in found.values()}
    unknown = sorted(set(keep) - kinds)
    if unknown:
        raise QuantizationError(f"module kind(s) {unknown} to keep in fp32 are not among the graph's weight "
                                f"MatMuls ({sorted(kinds)})")
    return sorted(name for name, path in found.items() if path.rsplit(".", 1)[-1] in keep)


def op_counts(path: str | Path) -> dict[str, int]:
    """Op types of a saved graph, Scan bodies included."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = collections.Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(model.graph)
    return dict(counts)


def quantize_graph(source: str | Path, out: str | Path, *, method: str = DEFAULT_METHOD,
                   keep=KEEP_FP32, exclude_nodes=(), block_size: int = NBITS_BLOCK,
                   accuracy_level: int = NBITS_ACCURACY_LEVEL, progress=print) -> dict:
    """Write the int8 graph of the fp32 graph ``source`` to ``out`` (+ ``out.data`` when the
    source has external data). Returns what was done: method, nodes kept in fp32, op counts.
    ``block_size`` and ``accuracy_level`` apply to ``nbits`` (level 4: int8 activations and dot
    products; 1: the int8 weights dequantized to fp32 for an fp32 product)."""
    import onnx

    if method not in METHODS:
        raise QuantizationError(f"unknown int8 method {method!r}; expected one of {METHODS}")
    source, out = Path(source), Path(out)
    external = source.with_name(source.name + ".data").exists()
    model = onnx.load(str(source))
    excluded = sorted(set(nodes_kept(model, keep)) | set(exclude_nodes))
    total = len(weight_matmuls(model))
    for stale in (out, out.with_name(out.name + ".data")):
        stale.unlink(missing_ok=True)
    progress(f"[int8] {method}: {total - len(excluded)} of {total} weight MatMuls to int8, "
             f"{len(excluded)} kept fp32 ({', '.join(keep) or 'none by kind'})")
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(model, out, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                         use_external_data_format=external,
                         extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        # it logs one INFO line per node of the graph (tens of thousands at real shape)
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=True,
                                         accuracy_level=accuracy_level, nodes_to_exclude=excluded,
                                         op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), external)
    del model
    counts = op_counts(out)
    integer = sum(counts.get(op, 0) for op in INTEGER_OPS)
    if not integer:
        raise QuantizationError(f"{out}: no MatMul was quantized ({counts})")
    progress(f"[int8] wrote {out}: {integer} integer MatMuls, {counts.get('MatMul', 0)} fp32 MatMuls left")
    settings = {"block_size": block_size, "accuracy_level": accuracy_level} if method == "nbits" else {}
    return {"method": method, **settings, "kept_fp32_kinds": list(keep), "kept_fp32_nodes": excluded,
            "weight_matmuls": total, "integer_matmuls": integer}


def probe_scores(reference, run_graph, lengths=None) -> np.ndarray:
    """Scores of ``run_graph(input_ids, attention_mask) -> logits`` (or of the reference itself
    when ``run_graph`` is None) on the parity probe set plus the synthetic corpus's prompts, one
    row per prompt."""
    import torch

    from .parity import PROBE_LENGTHS, probe_batches
    from .reference import activate
    from .synthetic_checkpoint import calibration_prompts

    batches = [(ids, mask) for _, ids, mask in probe_batches(reference, lengths or PROBE_LENGTHS)]
    texts = calibration_prompts()
    for i in range(0, len(texts), 16):
        enc = reference.tokenizer(texts[i:i + 16], padding=True, return_tensors="np")
        batches.append((enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)))
    rows = []
    for ids, mask in batches:
        if run_graph is None:
            logits = reference.logits_from_ids(torch.from_numpy(ids), torch.from_numpy(mask))
        else:
            logits = torch.from_numpy(np.asarray(run_graph(ids, mask), dtype=np.float32))
        rows.append(activate(logits, reference.spec.activation).cpu().numpy())
    return np.concatenate(rows, axis=0)


def int8_parity(reference, run_graph, reference_bf16, *, lengths=None, quantization: dict | None = None) -> dict:
    """The int8 graph's parity record: its fidelity against the fp32 oracle (``reference``) next to
    the reference as shipped (``reference_bf16``, the same checkpoint in bf16) on the same prompts,
    and :func:`~.fidelity.reduced_precision_gate` as ``passed``."""
    from .fidelity import FLIP_MARGIN, fidelity, reduced_precision_gate

    spec = reference.spec
    thresholds = np.asarray([spec.thresholds[label] for label in spec.labels], dtype=np.float64)
    truth = probe_scores(reference, None, lengths)
    ref_fid = fidelity(truth, probe_scores(reference_bf16, None, lengths), thresholds, list(spec.labels))
    ours = fidelity(truth, probe_scores(reference, run_graph, lengths), thresholds, list(spec.labels),
                    ref_fid["max_abs_score_diff"])
    passed, reasons = reduced_precision_gate(ours)
    return {"max_abs_score_diff": ours["max_abs_score_diff"], "decision_agreement": ours["decision_agreement"],
            "tolerance": None, "passed": passed, "failures": reasons, "prompts": int(truth.shape[0]),
            "flip_margin": FLIP_MARGIN, "vs_fp32_oracle": ours,
            "reference_bf16_vs_fp32_oracle": {k: ref_fid[k] for k in (
                "max_abs_score_diff", "mean_abs_score_diff", "decision_flips", "decisions", "flips")},
            "quantization": quantization or {}}


def int8_summary(record: dict) -> str:
    ours, ref = record["vs_fp32_oracle"], record["reference_bf16_vs_fp32_oracle"]
    lines = [f"int8 vs fp32 oracle on {record['prompts']} prompts: max |score diff| {ours['max_abs_score_diff']:.3e}, "
             f"decision agreement {ours['decision_agreement']:.4f} ({ours['decision_flips']} flips)",
             f"reference as shipped (bf16) vs fp32 oracle: max |score diff| {ref['max_abs_score_diff']:.3e}, "
             f"{ref['decision_flips']} flips"]
    for f in ours["flips"]:
        lines.append(f"  flip: prompt {f['prompt']} {f['label']}: fp32 {f['oracle_score']:.4f}, int8 {f['score']:.4f}, "
                     f"threshold {f['threshold']:.4f} (fp32 distance {f['oracle_distance_to_threshold']:.4f})")
    lines.append("PASS" if record["passed"] else "FAIL: " + "; ".join(record["failures"]))
    return "\n".join(lines)
