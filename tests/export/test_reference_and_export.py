"""The oracle, the merged graph, the export-friendly DeltaNet rule and the exported ONNX agree."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, LOGITS
from opencc_cm_export.blocked_attention import blocked_causal_attention
from opencc_cm_contract.bundle_format import ClassifierManifest
from opencc_cm_export.classifier_graph import build_merged_classifier
from opencc_cm_export.gated_delta_export import (scan_chunk_gated_delta_rule,
                                                 unit_lower_triangular_inverse)
from opencc_cm_export.onnx_export import ExportError, check_graph_interface
from opencc_cm_export.parity import check_parity, onnx_runner, onnx_session, probe_batches
from opencc_cm_export.reference import activate


def test_right_padding_gives_exactly_the_unpadded_scores(tiny_reference):
    texts = ["short", "a somewhat longer prompt about chemistry " * 4, "x"]
    batched = tiny_reference.scores(texts)
    alone = np.concatenate([tiny_reference.scores([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-6)


def test_block_inverse_inverts_unit_lower_triangular_systems():
    torch.manual_seed(0)
    strict = torch.randn(5, 64, 64).tril(-1) * 0.3
    product = unit_lower_triangular_inverse(strict) @ (strict + torch.eye(64))
    assert (product - torch.eye(64)).abs().max() < 1e-4


@pytest.mark.parametrize("seq", [1, 2, 63, 64, 65, 200])
def test_scan_rule_equals_transformers_chunk_rule(seq):
    from transformers.models.qwen3_5.modeling_qwen3_5 import torch_chunk_gated_delta_rule

    torch.manual_seed(seq)
    q, k = torch.randn(2, seq, 4, 16), torch.randn(2, seq, 4, 16)
    v, g, beta = torch.randn(2, seq, 4, 16), -torch.rand(2, seq, 4), torch.rand(2, seq, 4)
    stock, _ = torch_chunk_gated_delta_rule(q, k, v, g=g, beta=beta, use_qk_l2norm_in_kernel=True)
    ours, _ = scan_chunk_gated_delta_rule(q, k, v, g=g, beta=beta, use_qk_l2norm_in_kernel=True)
    assert (stock - ours).abs().max() < 1e-6


def _full_attention(query, key, value, mask2d, scaling):
    """The textbook computation: repeat K/V per query head, [B, H, S, S] scores, causal + padding."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    seq = query.shape[2]
    scores = (query @ key.transpose(-1, -2)) * scaling
    allowed = torch.ones(seq, seq, dtype=torch.bool).tril()[None, None] & mask2d.bool()[:, None, None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return (torch.softmax(scores, dim=-1) @ value).transpose(1, 2)


@pytest.mark.parametrize("seq, block", [(1, 64), (63, 64), (64, 64), (65, 64), (300, 64), (129, 16), (40, 256)])
def test_blocked_attention_equals_full_attention(seq, block):
    """GQA (8 query heads on 2 KV heads), causal, right padding, rows spanning several blocks."""
    torch.manual_seed(seq)
    query, key, value = torch.randn(3, 8, seq, 16), torch.randn(3, 2, seq, 16), torch.randn(3, 2, seq, 16)
    mask = torch.ones(3, seq, dtype=torch.int64)
    mask[1, seq // 2 + 1:] = 0
    mask[2, 1:] = 0
    ours = blocked_causal_attention(query, key, value, mask, 0.25, query_block=block)
    expected = _full_attention(query, key, value, mask, 0.25)
    assert ours.shape == (3, seq, 8, 16)
    assert torch.isfinite(ours).all()
    assert (ours - expected).abs().max() < 1e-5


@pytest.mark.parametrize("query_block", [None, 64])
def test_merged_classifier_matches_the_unmerged_oracle(tiny_reference, query_block):
    merged = build_merged_classifier(tiny_reference, query_block=query_block)
    for name, ids, mask in probe_batches(tiny_reference, lengths=(1, 65, 130, 300)):
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.no_grad():
            ours = activate(merged(ids_t, mask_t), "sigmoid")
        oracle = activate(tiny_reference.logits_from_ids(ids_t, mask_t), "sigmoid")
        assert (ours - oracle).abs().max() < 1e-5, name


def test_exported_bundle_passed_parity_and_is_complete(tiny_bundle):
    manifest = ClassifierManifest.read(tiny_bundle)
    assert manifest.parity["passed"] and manifest.parity["max_abs_score_diff"] <= 1e-5
    assert manifest.parity["decision_agreement"] == 1.0
    assert manifest.labels[6] == "Information Integrity" and len(manifest.thresholds) == 11
    assert {"model.onnx", "tokenizer.json", "classifier.json"} <= {p.name for p in tiny_bundle.iterdir()}


def test_export_with_small_query_blocks_keeps_parity_on_rows_of_many_blocks(tiny_checkpoint, tmp_path):
    """Rows of 300-1100 tokens through 64-query blocks (up to 18 blocks, a partial last one),
    alone and right padded in one batch: the export's own parity check against the oracle."""
    from opencc_cm_export.export_pipeline import export_bundle

    report = export_bundle(tiny_checkpoint["classifier"], tmp_path, base_model=tiny_checkpoint["base_model"],
                           max_tokens=2048, query_block=64, parity_lengths=(1, 64, 65, 300, 1100),
                           progress=lambda *_: None)
    assert report.passed and report.max_abs_diff <= 1e-5
    assert {c.shape for c in report.cases} >= {(1, 1100), (5, 1100)}
    assert ClassifierManifest.read(tmp_path).attention_query_block == 64
    graph = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False).graph
    layer_types = tiny_reference_layer_types(tiny_checkpoint)
    # One Scan per layer: the DeltaNet chunk recurrence and the attention query blocks.
    assert sum(node.op_type == "Scan" for node in graph.node) == len(layer_types)
    assert not any(node.op_type == "Softmax" for node in graph.node)  # only inside the block loop
    assert "full_attention" in layer_types


def tiny_reference_layer_types(tiny_checkpoint):
    import json

    config = json.loads((tiny_checkpoint["base_model"] / "config.json").read_text())
    return config.get("text_config", config)["layer_types"]


def test_exported_graph_keeps_batch_and_sequence_dynamic(tiny_bundle, tiny_reference):
    check_graph_interface(tiny_bundle / "model.onnx")
    run = onnx_runner(onnx_session(tiny_bundle / "model.onnx"))
    rng = np.random.default_rng(1)
    for batch, seq in [(1, 1), (5, 3), (2, 700), (9, 64)]:  # none of these is the export example
        ids = rng.integers(0, 1000, size=(batch, seq), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[0, seq // 2 + 1:] = 0
        logits = run(ids, mask)
        oracle = tiny_reference.logits_from_ids(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        assert logits.shape == (batch, 11)
        assert np.abs(activate(torch.from_numpy(logits), "sigmoid").numpy()
                      - activate(torch.from_numpy(oracle), "sigmoid").numpy()).max() <= 1e-5


def test_parity_check_catches_a_graph_without_the_lora(tiny_reference, tiny_checkpoint):
    """A wrong merge (here: no LoRA at all) must fail parity, so the check can fail."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint["base_model"], dtype=torch.float32)

    def without_lora(ids, mask):
        with torch.no_grad():
            hidden = base.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
            last = mask.shape[1] - 1 - np.flip(mask, 1).argmax(1)
            return tiny_reference.head(hidden[torch.arange(len(ids)), torch.from_numpy(last.copy())]).numpy()

    report = check_parity(tiny_reference, without_lora, lengths=(1, 64), progress=lambda *_: None)
    assert not report.passed and report.max_abs_diff > 1e-3


def test_interface_check_rejects_a_fixed_sequence_axis(tmp_path):
    def value(name, dtype, dims):
        return helper.make_tensor_value_info(name, dtype, dims)

    graph = helper.make_graph(
        [helper.make_node("Cast", [INPUT_IDS], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["f"], [LOGITS], keepdims=1),
         helper.make_node("Identity", [ATTENTION_MASK], ["unused"])],
        "fixed", [value(INPUT_IDS, TensorProto.INT64, ["batch", 70]),
                  value(ATTENTION_MASK, TensorProto.INT64, ["batch", 70])],
        [value(LOGITS, TensorProto.FLOAT, ["batch", 1])])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match="axis 1 \\(seq\\) is fixed to 70"):
        check_graph_interface(path)


def test_fp16_export_keeps_dynamic_axes_and_close_scores(tiny_checkpoint, tmp_path):
    """The GPU precision: same interface, scores within the fp16 tolerance, same decisions here."""
    from opencc_cm_export.export_pipeline import export_bundle

    report = export_bundle(tiny_checkpoint["classifier"], tmp_path, base_model=tiny_checkpoint["base_model"],
                           precision="fp16", max_tokens=1024, parity_lengths=(1, 65), progress=lambda *_: None)
    check_graph_interface(tmp_path / "model.onnx")
    assert report.passed and 0 < report.max_abs_diff <= 2e-2
    assert ClassifierManifest.read(tmp_path).precision == "fp16"
