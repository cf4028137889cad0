"""The OpenCC HTTP service benchmark (benchmarks/opencc_http/bench_opencc_http.py, `make
bench-opencc-http`) runs end to end with a few requests: real Triton server, `opencc-cm
serve-http` as a child process, both paths answered. Checks the reports, never timings."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "opencc_http" / "bench_opencc_http.py"


def test_the_benchmark_writes_both_reports(tiny_bundle, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_opencc_http", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    assert bench.main(["--bundle", str(tiny_bundle), "--out", str(out), "--requests", "8", "--rounds", "1",
                       "--clients", "2"]) == 0
    report = json.loads((out / "opencc_http_benchmark.json").read_text())
    assert {k: v["n"] for k, v in report["modes"].items()} == {"grpc_seq": 8, "http_seq": 8, "grpc_conc": 16, "http_conc": 16}
    for summary in report["modes"].values():
        assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert set(report["added_ms"]) == {"batch1_p50", "batch1_p99", "c2_p50", "c2_p99"}
    assert set(report["cpu_ms_per_request_batch1"]) == {"grpc_client", "http_client", "service"}
    assert "HTTP /check" in (out / "opencc_http_benchmark.md").read_text()
