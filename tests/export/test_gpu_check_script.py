"""The one-shot GPU check runs end to end on CPU (tiny size), so it is ready when a GPU is lent."""
import json

from opencc_cm_export.gpu_check import main


def test_gpu_check_runs_on_cpu_and_reports_parity(tmp_path):
    assert main(["--out", str(tmp_path), "--size", "tiny", "--device", "cpu", "--prompts", "12"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert 20 <= report["mean_tokens"] <= 120
    assert report["baseline_batch1"]["n"] > 0 and report["merged_eager_batch1"]["p50_ms"] > 0
    parity = report["parity_vs_fp32_reference"]
    # bf16 against the fp32 oracle: close, not exact; the report must carry real numbers.
    assert 0 < parity["merged_eager"]["max_abs_score_diff"] < 0.05
    assert report["merged_cuda_graphs_batch1"].startswith("not run")
