"""The int8 export: integer MatMuls in the graph, the parity record it writes, the gate that
fails the export (exit 1), and the published precision in the manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest

from opencc_cm_contract.bundle_format import ONNX_FILE, ClassifierManifest, ManifestError
from opencc_cm_export.fidelity import FLIP_MARGIN, fidelity, reduced_precision_gate
from opencc_cm_export.int8_quantization import INTEGER_OPS, KEEP_FP32, op_counts, weight_matmuls


@pytest.fixture(scope="module")
def int8_export(tiny_checkpoint, tmp_path_factory):
    """``(exit code, bundle)`` of ``opencc-cm-export export --precision int8`` on the tiny checkpoint."""
    from opencc_cm_export.__main__ import main

    out = tmp_path_factory.mktemp("tiny-int8")
    code = main(["export", "--checkpoint", str(tiny_checkpoint["classifier"]), "--base-model",
                 str(tiny_checkpoint["base_model"]), "--out", str(out), "--precision", "int8", "--max-tokens", "2048"])
    return code, out


def test_int8_graph_runs_its_weight_matmuls_as_integer_ops(int8_export, tiny_checkpoint):
    import onnx

    _, bundle = int8_export
    counts = op_counts(bundle / ONNX_FILE)
    kept = weight_matmuls(onnx.load(str(bundle / ONNX_FILE)))  # fp32 MatMuls with a weight left in the graph
    assert kept and all(path.rsplit(".", 1)[-1] in KEEP_FP32 for path in kept.values()), kept
    # tiny config: every layer has its projections (4 DeltaNet or 4 attention, plus 3 MLP) as MatMuls
    config = json.loads((tiny_checkpoint["base_model"] / "config.json").read_text())
    text = config.get("text_config", config)
    kinds = text["layer_types"]
    expected = sum(5 + 3 if t == "linear_attention" else 4 + 3 for t in kinds)
    integer = sum(counts.get(op, 0) for op in INTEGER_OPS)
    assert integer + len(kept) == expected and integer > 0, counts
    assert not (bundle / "classifier.safetensors").exists()  # python-torch does not run int8


def test_int8_parity_record_reports_fidelity_next_to_the_reference(int8_export):
    code, bundle = int8_export
    spec = ClassifierManifest.read(bundle)
    assert spec.precision == "int8"
    parity = spec.parity
    ours, ref = parity["vs_fp32_oracle"], parity["reference_bf16_vs_fp32_oracle"]
    assert parity["max_abs_score_diff"] == ours["max_abs_score_diff"] > 0
    assert 0 < ref["max_abs_score_diff"] == ours["reference_max_abs_score_diff"]
    assert ours["decisions"] == parity["prompts"] * spec.num_labels
    assert parity["decision_agreement"] == 1 - ours["decision_flips"] / ours["decisions"]
    for flip in ours["flips"]:
        assert flip["oracle_distance_to_threshold"] == pytest.approx(abs(flip["oracle_score"] - flip["threshold"]))
    assert parity["quantization"]["integer_matmuls"] > 0
    # the record's verdict is the gate's, and the exit code follows it
    assert parity["passed"] == reduced_precision_gate(ours)[0]
    assert code == (0 if parity["passed"] else 1)


def _result(max_diff, flips=(), ref=0.04):
    """A fidelity result over a 4x1 score matrix with the given flips (oracle scores at a distance)."""
    truth = np.array([[0.5], [0.2], [0.9], [0.4]])
    other = truth.copy()
    other[3, 0] += max_diff  # the largest difference, no flip (0.4 + d stays below 0.5)
    for row, distance in flips:
        truth[row, 0] = 0.5 - distance
        other[row, 0] = 0.5 + 1e-3
    return fidelity(truth, other, np.array([0.5]), ["A"], ref)


def test_gate_fails_further_than_the_reference_or_a_flip_far_from_its_threshold():
    assert reduced_precision_gate(_result(0.03))[0]
    assert reduced_precision_gate(_result(0.03, flips=[(1, 0.002)]))[0]  # a flip on the threshold is tolerated
    passed, reasons = reduced_precision_gate(_result(0.05, ref=0.04))
    assert not passed and "further from fp32 than the reference" in reasons[0]
    far = _result(0.03, flips=[(1, FLIP_MARGIN + 0.01)], ref=0.1)
    passed, reasons = reduced_precision_gate(far)
    assert far["max_abs_score_diff"] <= 0.1 and not passed and "prompt 1 A" in reasons[0]


def test_export_exits_1_when_the_int8_graph_is_further_from_fp32_than_the_reference(tiny_checkpoint, tmp_path,
                                                                                     monkeypatch):
    """The case constructed: the reference as shipped loaded in fp32 (distance 0 from the oracle),
    so any int8 difference is further. The export writes the bundle for inspection, records
    passed false with the reason, and exits 1."""
    import torch

    from opencc_cm_export.__main__ import main
    from opencc_cm_export.reference import ReferenceClassifier

    load = ReferenceClassifier.load.__func__

    def load_in_fp32(cls, checkpoint, **kwargs):
        return load(cls, checkpoint, **{**kwargs, "dtype": torch.float32})

    monkeypatch.setattr(ReferenceClassifier, "load", classmethod(load_in_fp32))
    code = main(["export", "--checkpoint", str(tiny_checkpoint["classifier"]), "--base-model",
                 str(tiny_checkpoint["base_model"]), "--out", str(tmp_path), "--precision", "int8"])
    parity = json.loads((tmp_path / "classifier.json").read_text())["parity"]
    assert code == 1 and parity["passed"] is False and (tmp_path / ONNX_FILE).is_file()
    assert parity["reference_bf16_vs_fp32_oracle"]["max_abs_score_diff"] == 0.0
    assert "further from fp32 than the reference" in parity["failures"][0]


def test_unknown_precision_in_a_manifest_is_an_error_naming_it(int8_export):
    raw = json.loads((int8_export[1] / "classifier.json").read_text())
    raw["precision"] = "int4"
    with pytest.raises(ManifestError, match="unknown precision 'int4'"):
        ClassifierManifest.from_json(raw)


def test_nbits_block_size_and_accuracy_level_reach_every_integer_matmul(tiny_bundle, tmp_path):
    import onnx

    from opencc_cm_benchmarks.int8_cpu import parse_variant
    from opencc_cm_export.int8_quantization import quantize_graph

    method, keep, settings = parse_variant("nbits-b16-a1:in_proj_a,in_proj_b,down_proj")
    assert (method, keep, settings) == ("nbits", ("in_proj_a", "in_proj_b", "down_proj"),
                                        {"block_size": 16, "accuracy_level": 1})
    with pytest.raises(SystemExit, match="unknown option 'x3'"):
        parse_variant("nbits-x3:")
    done = quantize_graph(tiny_bundle / ONNX_FILE, tmp_path / "q.onnx", method=method, keep=keep,
                          progress=lambda *_: None, **settings)
    assert done["block_size"] == 16 and done["accuracy_level"] == 1
    nodes = [n for n in onnx.load(str(tmp_path / "q.onnx")).graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == done["integer_matmuls"] > 0
    for node in nodes:
        attrs = {a.name: a.i for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 16, 1), node.name
    kept = weight_matmuls(onnx.load(str(tmp_path / "q.onnx")))
    assert {path.rsplit(".", 1)[-1] for path in kept.values()} == set(keep)
