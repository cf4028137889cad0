"""The overhead benchmark (`python -m opencc_cm_benchmarks.overhead`, `make bench-overhead`) runs
end to end with short durations: null encoder deployed through the normal deploy command, real
servers, stock aio clients, every mode (null, floor, stub timing, cProfile). Checks that the
reports exist and are consistent, never timings."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from opencc_cm_benchmarks.overhead import (ENSEMBLES, ONE_HOP_ENSEMBLE, PYTHON_MODELS, REPORT_JSON, REPORT_MD, main,
                                           null_encoder_graph)


def test_null_encoder_has_the_encoder_tensors_and_returns_zeros():
    sess = ort.InferenceSession(null_encoder_graph(11).SerializeToString(), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [("input_ids", "tensor(int64)"), ("attention_mask", "tensor(int64)")]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("logits", "tensor(float)")]
    ids = np.ones((3, 7), np.int64)
    (logits,) = sess.run(None, {"input_ids": ids, "attention_mask": ids})
    assert logits.shape == (3, 11) and logits.dtype == np.float32 and not logits.any()


def test_overhead_benchmark_writes_sane_reports(tiny_bundle, tmp_path):
    out = tmp_path / "overhead"
    assert main(["--bundle", str(tiny_bundle), "--out", str(out), "--duration-s", "1", "--warmup-s", "0.5",
                 "--clients", "1,4", "--prompts", "6", "--profile"]) == 0
    report = json.loads((out / REPORT_JSON).read_text())
    md = (out / REPORT_MD).read_text()
    assert set(report["modes"]) == {"null", "floor", "stub-timing", "cprofile"}
    assert len(report["loadavg_at_start"]) == 3 and report["machine"]["nproc"] >= 1

    seen = set()
    for mode, res in report["modes"].items():
        for lv in res["levels"]:
            seen.add((mode, lv["ensemble"], lv["clients"]))
            lat, name = lv["latency"], f"{mode} {lv['ensemble']} c{lv['clients']}"
            assert lv["errors"] == 0 and lv["requests"] > 0 and lv["requests_per_s"] > 0, name
            assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"], name
            # CPU time is read in 10 ms ticks: a short smoke level may read 0, never a negative or missing figure
            assert lv["server_cpu_s"]["total"] >= 0 and lv["client_cpu_s"]["total"] >= 0, name
            # every stub of the server tree is accounted by its model name
            assert any(k.startswith("python stub: encoder") for k in lv["server_cpu_s"]), name
            ens = lv["triton"][lv["ensemble"]]
            # the statistics window holds the recorded requests plus at most the ones in flight when it opened
            assert lv["requests"] <= ens["success_count"] <= lv["requests"] + lv["clients"], name
            for model, s in lv["triton"].items():
                if model != lv["ensemble"]:
                    assert 1 <= s["execution_count"] <= s["inference_count"], (name, model)
                    assert sum(b["executions"] for b in s["batches"].values()) == s["execution_count"], (name, model)
                    assert s["fail_count"] == 0, (name, model)
    for ensemble in ENSEMBLES:
        for mode in ("null", "floor"):
            assert {(mode, ensemble, 1), (mode, ensemble, 4)} <= seen
    assert ("floor", ONE_HOP_ENSEMBLE, 1) in seen and ("null", ONE_HOP_ENSEMBLE, 1) not in seen
    # the null server runs the real models, the floor the empty ones: the ids ensemble's steps (python-ort:
    # validation and calibration folded into the encoder, one Python-backend hop)
    null_ids = next(lv for lv in report["modes"]["null"]["levels"] if lv["ensemble"] == "classify_ids")
    assert set(null_ids["triton"]) == {"classify_ids", "encoder"}
    one_hop = next(lv for lv in report["modes"]["floor"]["levels"] if lv["ensemble"] == ONE_HOP_ENSEMBLE)
    assert set(one_hop["triton"]) == {ONE_HOP_ENSEMBLE, "floor_1hop"}

    # stub timing: execute() time measured inside each stub, never more than Triton's compute_infer
    timed = next(lv for lv in report["modes"]["stub-timing"]["levels"] if lv["ensemble"] == "classify_text" and lv["clients"] == 1)
    assert {"tokenizer", "encoder"} <= set(timed["stub_timing"])
    for model, t in timed["stub_timing"].items():
        if t["requests"]:
            assert t["execute_calls"] >= 1 and t["execute_ns"] > 0, model
    attr = report["attribution"]
    a = attr["stub-timing classify_text"]
    for model in ("tokenizer", "encoder"):
        assert a["steps"][model]["execute_body"] > 0 and a["steps"][model]["compute_infer"] > 0, model
    assert {"null classify_ids", "null classify_text", "floor classify_ids", f"floor {ONE_HOP_ENSEMBLE}"} <= set(attr)
    for row in attr.values():
        assert row["ensemble_ms"] > 0 and row["client_mean_ms"] > 0 and row["steps"]
    # cProfile dumps from every Python model of the repository; rows from the steps of the ensembles
    top = report["modes"]["cprofile"]["cprofile_top"]
    assert set(top) == set(PYTHON_MODELS)
    assert all(top[m] and top[m][0]["calls"] > 0 for m in ("tokenizer", "encoder"))

    assert "| mode | ensemble | clients |" in md and "classify_ids_1hop" in md and "cProfile" in md
    assert "load average" in md
