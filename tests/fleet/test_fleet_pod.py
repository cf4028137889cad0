"""The cpu overlay's pod run offline against the real pip-bundled tritonserver (conftest ``pod``):
its probes pass, fail when they should, the autoscaler's metrics exist in the real scrape,
deploy's perf_analyzer inputs are valid requests, and SIGTERM drains and exits cleanly.
The SIGTERM test stops the pod, so it stays the last test of this file."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import yaml

from fleet_support import FLEET, OVERLAYS, one

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
PROMQL_METRIC = re.compile(r"\b(nv_[a-z0-9_]+)\b")


def adapter_rules() -> list[dict]:
    values = yaml.safe_load((FLEET / "prometheus-adapter" / "values.yaml").read_text())
    return values["rules"]["custom"]


def scrape(url: str) -> dict[str, list[tuple[str, float]]]:
    """{metric name: [(labels, value), ...]} from a Prometheus text scrape."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line.strip())
        if match and not line.startswith("#"):
            out.setdefault(match.group(1), []).append((match.group(2) or "", float(match.group(3))))
    return out


def tls_client(pod):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(pod.grpc_url, ssl=True, root_certificates=str(pod.pki / "ca.crt"))


def run_probe(argv, timeout_s):
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 5)
    return done, time.monotonic() - start


def test_probes_pass_within_their_timeouts(pod):
    triton = next(c for c in pod.deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton")
    for kind, argv in pod.probes.items():
        done, elapsed = run_probe(argv, triton[kind]["timeoutSeconds"])
        print(f"\n[fleet] {kind}: exit {done.returncode} in {elapsed:.2f} s: {(done.stdout + done.stderr).strip()}")
        assert done.returncode == 0 and "canary: ok" in done.stdout, (kind, done.stderr)
        assert elapsed < triton[kind]["timeoutSeconds"], f"{kind} took {elapsed:.1f} s"


def test_probe_fails_against_the_wrong_ca_and_http_is_off(pod):
    argv = [str(pod.pki / "other-ca.crt") if a.endswith("/ca.crt") else a for a in pod.probes["livenessProbe"]]
    done, _ = run_probe(argv, 10)
    assert done.returncode == 1 and "canary: FAILED" in done.stderr, done
    with pytest.raises(OSError):  # --production: nothing listens on the declared http port
        socket.create_connection(("127.0.0.1", pod.http_port), timeout=2).close()


def test_autoscaler_metrics_exist_in_a_real_scrape(pod, rendered):
    from opencc_cm_serving.canary import canary

    ok, why = canary(pod.grpc_url, dict(ssl=True, root_certificates=str(pod.pki / "ca.crt")))  # a real request
    assert ok, why
    metrics = scrape(pod.metrics_url)
    names = sorted(n for n in metrics if n.startswith("nv_"))
    print(f"\n[fleet] Triton metric names in the scrape ({len(names)}): {', '.join(names)}")
    rules = adapter_rules()
    used = set()
    for rule in rules:
        used |= set(PROMQL_METRIC.findall(rule["seriesQuery"])) | set(PROMQL_METRIC.findall(rule["metricsQuery"]))
        assert re.fullmatch(rule["name"]["matches"].strip("^$"), PROMQL_METRIC.findall(rule["seriesQuery"])[0])
    assert used, "the adapter rules name no Triton metric"
    for name in sorted(used):
        series = [labels for labels, _ in metrics.get(name, [])]
        assert any('model="encoder"' in labels for labels in series), f"{name}{{model=\"encoder\"}} not in the scrape"
    success = dict(metrics["nv_inference_request_success"])
    assert any(v >= 1 for labels, v in metrics["nv_inference_request_success"] if 'model="encoder"' in labels), success
    # every metric each overlay's HPA asks for is served by one adapter rule
    served = {rule["name"]["as"] for rule in rules}
    for overlay in OVERLAYS:
        hpa = one(rendered[overlay], "HorizontalPodAutoscaler")
        asked = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
        assert asked and asked <= served, (overlay, asked - served)
    print(f"[fleet] adapter rules read {sorted(used)}; HPA metrics {sorted(served)}")


def test_perf_analyzer_inputs_are_valid_requests(pod, tmp_path):
    """deploy's perf_analyzer files: each text entry and its ids entry give the same scores
    from the real server (so the ids and masks are the client's tokenization of real texts)."""
    import tritonclient.grpc as grpcclient

    from opencc_cm_contract import IDS_ENSEMBLE, SCORES, TEXT_ENSEMBLE
    from opencc_cm_serving.deploy import PERF_TEXTS, main as deploy_main

    code = deploy_main(["--bundle", str(pod.bundle), "--repository", str(FLEET.parent / "model_repository"),
                        "--output", str(tmp_path / "repo"), "--perf-input-dir", str(tmp_path / "perf")])
    assert code == 0
    text_data = json.loads((tmp_path / "perf" / f"{TEXT_ENSEMBLE}.json").read_text(encoding="utf-8"))["data"]
    ids_data = json.loads((tmp_path / "perf" / f"{IDS_ENSEMBLE}.json").read_text(encoding="utf-8"))["data"]
    assert len(text_data) == len(ids_data) >= 8
    assert {e["text"]["content"][0] for e in text_data} <= set(PERF_TEXTS)
    with tls_client(pod) as client:
        for text_entry, ids_entry in zip(text_data, ids_data):
            text = np.array([[text_entry["text"]["content"][0].encode()]], dtype=object)
            t = grpcclient.InferInput("text", [1, 1], "BYTES")
            t.set_data_from_numpy(text)
            by_text = client.infer(TEXT_ENSEMBLE, [t]).as_numpy(SCORES)
            inputs = []
            for name in ("input_ids", "attention_mask"):
                entry = ids_entry[name]
                array = np.asarray(entry["content"], dtype=np.int64).reshape([1, *entry["shape"]])
                tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            by_ids = client.infer(IDS_ENSEMBLE, inputs).as_numpy(SCORES)
            assert np.array_equal(by_text, by_ids), text_entry


def test_sigterm_settles_every_request_and_exits_within_the_grace_period(pod):
    """What the kubelet does after preStop: SIGTERM to PID 1 (tini forwards it to the launcher),
    here with 800 requests in flight. Every request settles: answered correctly or refused with
    a status the client library retries (UNAVAILABLE "Server is stopping" or NOT_FOUND "no
    available versions"); none is wrong or lost, and tritonserver exits by itself (exit code 0)
    well inside the grace period left after preStop. Triton does NOT drain ensembles: requests
    between two steps are refused too (observed: from 0 to a few hundred of the 800 were still
    answered after the signal, depending on timing), so the zero-loss property of a rollout
    rests on preStop (no new connections) plus client retries on another replica."""
    import tritonclient.grpc as grpcclient

    spec = pod.deployment["spec"]["template"]["spec"]
    budget = spec["terminationGracePeriodSeconds"] - spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    sent = 800  # below the 1024-request queues, so no "Exceeds maximum queue size"
    with tls_client(pod) as client:
        text = np.array([[b"a short benign prompt about bread"]], dtype=object)
        t = grpcclient.InferInput("text", [1, 1], "BYTES")
        t.set_data_from_numpy(text)
        expected = client.infer("classify_text", [t]).as_numpy("scores")
        results = []
        for _ in range(sent):
            client.async_infer("classify_text", [t],
                               lambda result, error: results.append((time.monotonic(), result, error)))
        while not results:
            time.sleep(0.0005)
        signalled, done_before = time.monotonic(), len(results)
        pod.proc.send_signal(signal.SIGTERM)
        code = pod.proc.wait(budget)
        elapsed = time.monotonic() - signalled
        deadline = time.monotonic() + 10
        while len(results) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
    answered = [(when, r) for when, r, e in results if e is None]
    after = sum(1 for when, _ in answered if when > signalled)
    refused = [(e.status(), e.message()) for _, _, e in results if e is not None]
    kinds = sorted({f"{status} {'in ensemble: ' if 'in ensemble' in message else ''}"
                    f"{message.split('] ')[-1][:40]}" for status, message in refused})
    worst = max(float(np.abs(r.as_numpy("scores") - expected).max()) for _, r in answered)
    print(f"\n[fleet] SIGTERM with {sent} requests in flight ({done_before} done at the signal): launcher exit {code} "
          f"after {elapsed:.2f} s (budget {budget} s); {len(answered)} answered ({after} after the signal), "
          f"{len(refused)} refused: {kinds}; max |score - batch-1 score| {worst:.2e}")
    assert len(results) == sent, "every request settles"
    assert worst <= 1e-5, "no wrong answer (batched runs differ from batch 1 in float rounding only)"
    for status, message in refused:
        assert (status, "Server is stopping" in message or "no available versions" in message) in {
            ("StatusCode.UNAVAILABLE", True), ("StatusCode.NOT_FOUND", True)}, (status, message)
    assert code == 0 and "launch: stopped (exit code 0)" in pod.log.read_text(), pod.log.read_text()[-2000:]
    assert elapsed < budget
