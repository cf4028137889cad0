"""The TensorRT builder without TensorRT: op coverage of the exported graph against the stored
operator table, local-function inlining, precision rules of TensorRT 10 vs 11, profiles from the
bundle and the deployed repository, and the one-line error where TensorRT is missing."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from opencc_cm_export.__main__ import main as export_main
from opencc_cm_export.tensorrt_engine import (OP_TABLE, TensorRTUnavailable, deployed_max_batch, graph_precision,
                                              inline_functions, network_plan, op_types, profile_from_bundle,
                                              require_tensorrt, unsupported_ops)


def test_every_op_of_the_exported_graph_is_in_tensorrts_table(tiny_bundle, tmp_path):
    table = json.loads(OP_TABLE.read_text())
    assert table["tensorrt_version"] and table["source"] and table["commit"]
    path, model = inline_functions(tiny_bundle / "model.onnx", tmp_path / "inlined")
    opset = {o.domain or "": o.version for o in model.opset_import}[""]
    assert table["opset_min"] <= opset <= table["opset_max"]
    ops = {op for _, op in op_types(model)}
    assert {"Scan", "MatMul", "Softplus"} <= ops  # the DeltaNet Scan bodies are walked too
    assert unsupported_ops(model, table) == []
    # the check can fail: an op TensorRT's table marks N, and a custom-domain op
    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Unique", ["x"], ["y"]), helper.make_node("Foo", ["y"], ["z"], domain="com.example")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])]))
    assert unsupported_ops(bad, table) == ["Unique", "com.example::Foo"]


def test_local_functions_are_inlined_before_parsing(tmp_path):
    fn = helper.make_function("local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 18)])
    graph = helper.make_graph([helper.make_node("Twice", ["x"], ["y"], domain="local")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, functions=[fn],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    path, inlined = inline_functions(tmp_path / "m.onnx", tmp_path / "out")
    assert len(inlined.functions) == 0 and op_types(inlined) == {("", "Add")}
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Add"]


@pytest.mark.parametrize("major, graph, precision, plan", [
    (10, "fp32", "fp32", (False, None)),
    (10, "fp32", "fp16", (False, "FP16")),
    (10, "fp32", "bf16", (False, "BF16")),
    (10, "fp16", "fp16", (True, None)),
    (11, "fp32", "fp32", (True, None)),
    (11, "fp16", "fp16", (True, None)),
    (11, "bf16", "bf16", (True, None)),
])
def test_precision_plan_for_tensorrt_10_and_11(major, graph, precision, plan):
    assert network_plan(major, graph, precision) == plan


def test_tensorrt_11_refuses_builder_flag_precision():
    with pytest.raises(ValueError, match="TensorRT 11 has no FP16/BF16 builder flag.*--precision fp16"):
        network_plan(11, "fp32", "fp16")
    with pytest.raises(ValueError, match="the graph is bf16"):
        network_plan(10, "bf16", "fp16")


def test_graph_precision_reads_the_initializers(tiny_bundle):
    assert graph_precision(onnx.load(str(tiny_bundle / "model.onnx"))) == "fp32"


def test_profile_comes_from_the_bundle_and_the_deployed_max_batch(tiny_bundle, tmp_path):
    from opencc_cm_serving.deploy import main as deploy_main

    from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES as templates
    repo = tmp_path / "repo"
    assert deploy_main(["--bundle", str(tiny_bundle), "--repository", str(templates), "--output", str(repo),
                        "--target", "tensorrt", "--max-batch-size", "24"]) == 0
    profile = profile_from_bundle(tiny_bundle, deployed_max_batch(repo))
    low, opt, high = profile.shapes()["input_ids"]
    assert (low, opt, high) == ((1, 1), (16, 64), (24, 2048))  # tiny bundle: max_tokens 2048


def test_missing_tensorrt_is_one_clear_line(tiny_bundle, tmp_path, capsys):
    try:
        require_tensorrt()
    except TensorRTUnavailable:
        pass
    else:
        pytest.skip("TensorRT and a GPU are present here")
    code = export_main(["tensorrt", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "model.plan")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("cannot build a TensorRT engine here: ")
    assert not (tmp_path / "model.plan").exists()
