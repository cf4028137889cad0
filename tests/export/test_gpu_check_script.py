"""The GPU proof command (make gpu-check) runs end to end on CPU (tiny checkpoint): every phase
either produces real numbers or says why it did not run, and JSON + markdown are written."""
import json

from opencc_cm_export.gpu_check import main


def test_gpu_check_dry_run_on_cpu(tmp_path):
    assert main(["--out", str(tmp_path), "--size", "tiny", "--device", "cpu", "--prompts", "8",
                 "--throughput-s", "0.2", "--grpc-calls", "1"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "Dry run on the CPU" in (tmp_path / "gpu_check.md").read_text()
    assert report["torch_weights_fp32_parity"]["passed"]  # the bundle the Triton phase serves
    ref = report["reference_as_shipped_bf16"]
    assert ref["batch1"]["n"] == 8
    # bf16 against the fp32 oracle: close, not exact; the report carries real numbers.
    assert 0 < ref["fidelity_vs_fp32_oracle"]["max_abs_score_diff"] < 0.05
    for name in ("ours_bf16_eager_torch_rule", "ours_bf16_fla_cuda_graphs", "ours_fp16_fla_cuda_graphs"):
        ours = report[name]
        assert ours["batch1_all"]["p50_ms"] > 0
        f = ours["fidelity_vs_fp32_oracle"]
        assert 0 < f["max_abs_score_diff"] < 0.05 and f["decisions"] == 8 * 11
        for flip in f["flips"]:  # each flip carries its distance to the threshold
            assert flip["oracle_distance_to_threshold"] >= 0
    assert report["ours_bf16_eager_fla"].startswith("not run: gated_delta=fla asked, but fla-core needs a CUDA device")
    graphs = report["ours_bf16_fla_cuda_graphs"]
    assert graphs["cuda_graphs_captured"] == 0  # CPU: bucket padding without graphs
    assert 1.0 < graphs["batch1_bucket_cells_per_real_token"] < 2.0  # the price of padding to powers of 2
    assert "batch1_bucket_cells_per_real_token" not in report["ours_bf16_eager_torch_rule"]
    assert set(graphs["throughput_prompts_per_s"]) == {"1", "8", "16", "32", "64"}
    assert any("the project's torch rule" in line for line in graphs["log"])
    grpc = report["triton_grpc"]  # the pip server runs here, so the gRPC phase runs too
    assert grpc["grpc_batch1_client_tokenizes"]["n"] == 8 and not grpc["grpc_batch64_errors"]
    assert grpc["fidelity_vs_fp32_oracle"]["max_abs_score_diff"] <= 1e-5  # fp32 on CPU
    assert all(t["met"] is None for t in report["targets"].values())  # CPU figures judge nothing
