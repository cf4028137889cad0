"""The fairness benchmark (``python -m opencc_cm_benchmarks.fairness_benchmark``) runs end to end
on the tiny bundle with short durations and a small max_tokens: a real server, long clients
that keep sending even when refused, the probe. Checks the report's shape and bookkeeping,
never timings."""
from __future__ import annotations

import json

from opencc_cm_benchmarks.fairness_benchmark import main


def test_fairness_benchmark_writes_a_consistent_report(tiny_bundle, tmp_path):
    out = tmp_path / "fairness.json"
    code = main(["--bundle", str(tiny_bundle), "--max-tokens", "512", "--long-clients", "2", "--seconds", "3",
                 "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == (0 if report["target_met"] else 1)
    assert report["max_tokens"] == 512 and report["long_clients"] == 2
    assert report["t_long_s"] > 0 and report["long_requests_done"] > 0
    assert all(isinstance(n, int) and n > 0 for n in report["long_requests_refused"].values())
    for phase in ("probe_alone", "probe_loaded"):
        assert report[phase]["n"] > 0 and 0 < report[phase]["p50_ms"] <= report[phase]["p99_ms"]
    loaded = report["probe_loaded"]
    assert loaded["p99_ms"] <= loaded["max_ms"] and abs(loaded["max_ms"] - max(loaded["slowest_ms"])) <= 0.05
    assert report["target_ms"] == 2000 * report["t_long_s"] + report["probe_alone"]["p99_ms"]
    assert isinstance(loaded["errors"], list) and isinstance(report["probe_alone"]["errors"], list)
    assert report["target_met"] == (loaded["p99_ms"] < report["target_ms"] and not loaded["errors"])
