"""The encoder profiler runs on the tiny bundle: ONNX Runtime's per-operator times inside one run
and torch's, each adding up to about the run they profile."""
from __future__ import annotations

import json

import pytest

from opencc_cm_benchmarks.profile_encoders import main, parse_shape


def test_profiles_the_graph_and_the_torch_runner_by_operator(tiny_bundle, tmp_path):
    out = tmp_path / "profile.json"
    assert main(["--bundle", str(tiny_bundle), "--torch-dtype", "fp32", "--shapes", "1x8", "2x70",
                 "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    graph = report["onnx"][str(tiny_bundle / "model.onnx")]
    assert set(graph) == {"1x8", "2x70"}
    for shape, r in graph.items():
        ops = {o["op"] for o in r["by_op"]}
        assert "MatMul" in ops and r["nodes"] > 0, shape
        # the nodes' time lies inside the run (at most twice: were a Scan's body reported beside it)
        assert 0 < r["kernel_ms"] <= 2 * r["profiled_run_ms"], shape
    torch_run = report["torch"]["by_shape"]["2x70"]
    assert any(o["op"] in ("aten::mm", "aten::addmm", "aten::linear") for o in torch_run["by_op"])
    assert 0 < torch_run["aten_self_ms"] <= 2 * torch_run["profiled_run_ms"]  # one calling thread, 2 workers


def test_a_malformed_shape_is_refused_naming_it():
    with pytest.raises(SystemExit, match="shape '35': expected ROWSxTOKENS"):
        parse_shape("35")
