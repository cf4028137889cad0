"""The serving benchmark (`python -m opencc_cm_benchmarks.serving_benchmark`) runs end to end in
its --quick form on the tiny checkpoint: reference, ONNX Runtime and a real Triton server, so
that the command never rots. Checks that the reports exist and hold sane numbers, never timings."""
from __future__ import annotations

import json
import math

import pytest

from opencc_cm_contract.latency import latency_summary
from opencc_cm_benchmarks.report import REPORT_JSON, REPORT_MD, REPORT_PNG
from opencc_cm_benchmarks.serving_benchmark import main
from opencc_cm_benchmarks.workload import bells_o_prompts


def test_prompts_have_the_bells_o_profile_and_are_deterministic():
    count = lambda text: len(text.split())  # noqa: E731 - one "token" per word is enough here
    a = bells_o_prompts(count, 40, seed=3, tail_share=0.05, short_tokens=(8, 36), tail_tokens=(256, 300))
    assert a == bells_o_prompts(count, 40, seed=3, tail_share=0.05, short_tokens=(8, 36), tail_tokens=(256, 300))
    lengths = [count(t) for t in a]
    assert sum(n >= 256 for n in lengths) == 2  # exactly round(40 x 5%)
    assert all(8 <= n <= 36 for n in lengths if n < 256)
    assert a != bells_o_prompts(count, 40, seed=4, tail_share=0.05)


def test_latency_summary_has_the_cards_interval():
    s = latency_summary([10.0, 12.0, 14.0])
    assert s["mean_ms"] == pytest.approx(12.0) and s["p50_ms"] == pytest.approx(12.0)
    assert s["ci95_half_ms"] == pytest.approx(1.96 * 2.0 / math.sqrt(3))
    assert latency_summary([]) == {"n": 0}


def test_quick_serving_benchmark_writes_sane_reports(tiny_checkpoint, tiny_bundle, tmp_path):
    out = tmp_path / "bench"
    assert main(["--checkpoint", str(tiny_checkpoint["classifier"]), "--base-model", str(tiny_checkpoint["base_model"]),
                 "--bundle", str(tiny_bundle), "--out", str(out), "--quick"]) == 0
    for name in (REPORT_JSON, REPORT_MD, REPORT_PNG):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / REPORT_PNG).stat().st_size < 300_000

    report = json.loads((out / REPORT_JSON).read_text())
    names = {c["name"] for c in report["configs"]}
    assert {"baseline b1", "baseline b16", "onnxruntime b1", "triton ids b1", "triton text b1",
            "triton ids c1", "triton ids c4", "triton text c1", "triton text c4"} <= names
    workload = report["workload"]
    assert workload["prompts"] > 0 and workload["tokens_total"] > 0 and workload["tokens_max"] >= 256
    for c in report["configs"]:
        lat, thr = c["latency"], c["throughput"]
        assert lat["n"] > 0 and c.get("errors", 0) == 0, c["name"]
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"], c["name"]
        assert lat["min_ms"] <= lat["mean_ms"] <= lat["max_ms"]
        assert thr["prompts_per_s"] > 0 and thr["tokens_per_s"] > 0 and thr["usd_per_1m_tokens"] > 0
        assert math.isclose(thr["usd_per_1m_tokens"], 2.39 / 3600 / thr["tokens_per_s"] * 1e6, rel_tol=1e-9)
    # Triton's statistics: every request reached the encoder; batches never exceed the requests.
    for c in report["configs"]:
        if c["path"].startswith("triton"):
            enc = c["triton"]["encoder"]
            assert enc["inference_count"] >= c["latency"]["n"] and 1 <= enc["execution_count"] <= enc["inference_count"]
            assert sum(b["executions"] for b in enc["batches"].values()) == enc["execution_count"]
            assert sum(int(size) * b["executions"] for size, b in enc["batches"].items()) == enc["inference_count"]
    # Same model everywhere: fp32 scores agree with the reference.
    assert all(0 <= d < 1e-4 for d in report["parity_max_abs_score_diff_vs_baseline_b1"].values())
    mem = report["memory_peak_rss_mib"]
    assert mem["baseline_process"] > 0 and mem["onnxruntime_process"] > 0
    assert mem["server_tree"] >= mem["server_tree_after_load"] > 0
    assert any(k.startswith("python stub: encoder") for k in mem["server_by_process"])
    ratios = report["ratios"]
    assert ratios["batch1_mean_latency_speedup[triton ids b1]"] > 0
    assert ratios["throughput_ratio[best concurrent / baseline b16]"] > 0
    assert set(ratios["targets"]) == {"grpc_batch1_latency_at_least_2x", "concurrent_throughput_at_least_2x_baseline_b16",
                                      "fp32_grpc_batch1_latency_at_least_3.5x"}  # no reduced-precision row here
    md = (out / REPORT_MD).read_text()
    assert "| config |" in md and "baseline b16" in md and "triton ids c4" in md and REPORT_PNG in md

    # --render rewrites the markdown and the plot from the JSON alone.
    (out / REPORT_MD).unlink()
    (out / REPORT_PNG).unlink()
    assert main(["--render", str(out / REPORT_JSON)]) == 0
    assert (out / REPORT_MD).read_text() == md and (out / REPORT_PNG).is_file()


def test_quick_benchmark_serves_bf16_and_int8_beside_fp32_judged_against_the_fp32_baseline(
        tiny_checkpoint, tiny_bundle, tiny_int8_bundle, tmp_path):
    from opencc_cm_contract.bundle_format import ClassifierManifest

    out = tmp_path / "bench"
    assert main(["--checkpoint", str(tiny_checkpoint["classifier"]), "--base-model", str(tiny_checkpoint["base_model"]),
                 "--bundle", str(tiny_bundle), "--out", str(out), "--quick", "--concurrency", "2",
                 "--concurrent-paths", "ids", "--bf16", "--int8-bundle", str(tiny_int8_bundle)]) == 0
    report = json.loads((out / REPORT_JSON).read_text())
    configs = {c["name"]: c for c in report["configs"]}
    for precision in ("bf16", "int8"):
        for name in (f"triton ids {precision} b1", f"triton ids {precision} c2"):
            c = configs[name]
            assert c["precision"] == precision and c["path"] == "triton-ids", name
            assert c["latency"]["n"] > 0 and c.get("errors", 0) == 0, name
            assert c["triton"]["encoder"]["inference_count"] >= c["latency"]["n"], name
    assert configs["baseline bf16 b1"]["precision"] == "bf16" and configs["baseline bf16 b1"]["path"] == "reference"
    assert configs["triton ids int8 b1"]["bundle_gate_passed"] == ClassifierManifest.read(tiny_int8_bundle).parity["passed"]
    assert configs["triton ids bf16 b1"]["bundle_gate_passed"] is True  # the fp32 bundle passed its parity

    fid = report["fidelity_vs_fp32_oracle"]
    assert set(fid) == {"baseline bf16 b1", "triton ids bf16 b1", "triton ids int8 b1"}
    band = fid["baseline bf16 b1"]["max_abs_score_diff"]
    for name in ("triton ids bf16 b1", "triton ids int8 b1"):
        f = fid[name]
        # reduced precision moves the scores, but not far on this model
        assert 0 < f["max_abs_score_diff"] < 0.2 and f["reference_max_abs_score_diff"] == band, name
        assert f["gate_passed"] == (not f["gate_failures"]), name
        assert f["gate_passed"] == (f["max_abs_score_diff"] <= band and not any(
            x["oracle_distance_to_threshold"] >= 0.05 for x in f["flips"])), name
    assert 0 < band < 0.2

    ratios = report["ratios"]
    for name in ("triton ids bf16 b1", "triton ids int8 b1"):
        assert ratios[f"batch1_mean_latency_speedup[{name}]"] > 0
    assert ratios["throughput_ratio[best ids bf16 concurrent / best ids fp32 concurrent]"] > 0
    targets = ratios["targets"]
    assert targets["reduced_precision_within_the_reference_band"] == all(
        fid[n]["gate_passed"] for n in ("triton ids bf16 b1", "triton ids int8 b1"))
    assert {"reduced_precision_batch1_latency_at_least_6x", "reduced_precision_throughput_at_least_2x_fp32",
            "fp32_grpc_batch1_latency_at_least_3.5x"} <= set(targets)
    md = (out / REPORT_MD).read_text()
    assert "Reduced precision: fidelity against the fp32 oracle" in md and "triton ids int8 c2" in md
