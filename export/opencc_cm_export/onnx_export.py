"""Export the merged classifier to ONNX with dynamic batch and sequence axes that stay dynamic.

One declarative spec (:data:`GRAPH_INPUTS`, :data:`GRAPH_OUTPUTS`) names the tensors and their
symbolic axes; the export asserts the saved graph still has them symbolic (the stock exporter
can silently fix the sequence length to the example's).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, LOGITS

from .classifier_graph import MergedClassifier
from .gated_delta_export import export_friendly_gated_delta

BATCH, SEQ, LABELS = "batch", "seq", "labels"
GRAPH_INPUTS = {INPUT_IDS: (BATCH, SEQ), ATTENTION_MASK: (BATCH, SEQ)}  # INT64
GRAPH_OUTPUTS = {LOGITS: (BATCH, LABELS)}  # FP32, labels fixed by the head
OPSET = 18
EXTERNAL_DATA_ABOVE_BYTES = 1 << 30  # protobuf caps one file at 2 GB; stay well under
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ExportError(RuntimeError):
    """The exported graph does not have the promised interface."""


def example_inputs(vocab: int, query_block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of different lengths, right padded, longer than one DeltaNet chunk (64) and
    than two attention query blocks: with a single block (or chunk) in the example,
    ``torch.export`` specialises the count to 1 and with it the sequence length."""
    gen = torch.Generator().manual_seed(0)
    length = max(70, 2 * query_block + 7) if query_block else 70
    ids = torch.randint(0, vocab, (2, length), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 33:] = 0
    return ids, mask


def export_onnx(model: MergedClassifier, path: Path, *, vocab: int, max_tokens: int,
                max_batch: int = 1024, progress=print) -> Path:
    """Write ``path`` (plus ``path.data`` when large); return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    batch = torch.export.Dim(BATCH, min=1, max=max_batch)
    seq = torch.export.Dim(SEQ, min=1, max=max_tokens)
    dynamic = {name: {0: batch, 1: seq} for name in GRAPH_INPUTS}
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    external = n_bytes > EXTERNAL_DATA_ABOVE_BYTES
    progress(f"[export] tracing {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
             f"({n_bytes / 2**30:.2f} GiB, external data: {external}); this can take minutes")
    started = time.perf_counter()
    with export_friendly_gated_delta(), torch.no_grad():
        program = torch.onnx.export(
            model, example_inputs(vocab, getattr(model, "query_block", None)), input_names=list(GRAPH_INPUTS),
            output_names=list(GRAPH_OUTPUTS), dynamic_shapes=dynamic, dynamo=True,
            opset_version=OPSET, external_data=external, verbose=False)
    program.save(str(path), external_data=external)
    progress(f"[export] wrote {path} in {time.perf_counter() - started:.0f} s")
    check_graph_interface(path)
    return path


def check_graph_interface(path: Path) -> None:
    """Names, dtypes and symbolic axes of the saved graph, or :class:`ExportError`."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    problems = []
    for values, spec, dtype in ((graph.input, GRAPH_INPUTS, onnx.TensorProto.INT64),
                                (graph.output, GRAPH_OUTPUTS, onnx.TensorProto.FLOAT)):
        found = {v.name: v for v in values}
        if set(found) != set(spec):
            problems.append(f"tensors {sorted(found)} != expected {sorted(spec)}")
            continue
        for name, axes in spec.items():
            ttype = found[name].type.tensor_type
            if ttype.elem_type != dtype:
                problems.append(f"{name}: dtype {onnx.TensorProto.DataType.Name(ttype.elem_type)}")
            dims = list(ttype.shape.dim)
            for i, axis in enumerate(axes):
                if axis == LABELS:
                    continue
                if i >= len(dims) or not dims[i].dim_param:
                    fixed = dims[i].dim_value if i < len(dims) else "missing"
                    problems.append(f"{name}: axis {i} ({axis}) is fixed to {fixed}, not symbolic")
    if problems:
        raise ExportError(f"{path}: " + "; ".join(problems))
