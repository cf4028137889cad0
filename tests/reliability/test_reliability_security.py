"""Security: the production configuration (TLS, admin protocols behind a key, model control
off, HTTP off) started through ``python -m opencc_cm_serving.launch --production``; threshold
profiles and request parameters that cannot reach files or code; per-request thresholds that
concurrent requests cannot change for each other."""
from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import trustme
from tritonclient.utils import InferenceServerException

from opencc_cm_client import ClassifierClient, ConnectionOptions, RetryPolicy, UnavailableError
from opencc_cm_contract import ENCODER_MODEL, HARM_CATEGORIES, TEXT_ENSEMBLE, TOKENIZER_MODEL
from opencc_cm_serving.deploy import main as deploy_main
from opencc_cm_serving.launch import ServerSettings, free_port
from opencc_cm_serving.production import ADMIN_PROTOCOLS, ProductionConfig, ProductionConfigError

from reliability_tools import MAX_TEXT_BYTES, Tally, fire_cases, make_cases, mismatch, result_dict
from serving_calls import TEMPLATES, params, text_inputs

RESTRICTED = "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
NO_MODEL_CONTROL = "explicit model load / unload is not allowed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it, and an unrelated CA (made by
    ``trustme``, in memory: no ``openssl`` binary needed)."""
    d = tmp_path_factory.mktemp("rel-pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    other.cert_pem.write_to_path(str(d / "other-ca.crt"))
    server = ca.issue_cert("127.0.0.1", "localhost", common_name="server")
    server.private_key_pem.write_to_path(str(d / "server.key"))
    (d / "server.crt").write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return d


@pytest.fixture(scope="module")
def production(rel_repository, pki, tmp_path_factory):
    """The production server, started by the launcher CLI (its own process; SIGINT at the end)."""
    d = tmp_path_factory.mktemp("rel-production")
    key = secrets.token_hex(32)
    (d / "admin.key").write_text(key + "\n")
    (d / "admin.key").chmod(0o600)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(rel_repository),
           "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
           "--ready-timeout", "90", "--log-file", str(d / "server.log"), "--production",
           "--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key"), "--tls-ca", str(pki / "ca.crt"),
           "--admin-key-file", str(d / "admin.key")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, deadline = "", time.monotonic() + 100
        while time.monotonic() < deadline and "launch: ready" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"production launcher exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
        assert "(production)" in line and "http=off" in line, line
        yield SimpleNamespace(url=f"127.0.0.1:{grpc_port}", http_port=http_port, key=key, log=d / "server.log",
                              tls=dict(ssl=True, root_certificates=str(pki / "ca.crt")), pki=pki, ready_line=line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_production_flags(pki):
    config = ProductionConfig(server_cert=pki / "server.crt", server_key=pki / "server.key", ca_cert=pki / "ca.crt",
                              admin_key="k" * 32)
    args = config.tritonserver_args()
    assert f"--grpc-restricted-protocol={','.join(ADMIN_PROTOCOLS)}:admin-key={'k' * 32}" in args
    assert "--grpc-use-ssl=true" in args and "--disable-auto-complete-config" in args
    settings = config.server_settings(ServerSettings(grpc_port=8101, log_path="server.log"))
    assert settings.model_control_mode == "none" and settings.http is False
    assert (settings.grpc_port, settings.log_path, settings.probe_headers) == (8101, "server.log", config.grpc_admin_headers)
    assert config.grpc_admin_headers == {"triton-grpc-protocol-admin-key": "k" * 32}
    mutual = ProductionConfig(server_cert=pki / "server.crt", server_key=pki / "server.key", ca_cert=pki / "ca.crt",
                              admin_key="k" * 32, mutual=True, allow_http=True)
    assert "--grpc-use-ssl-mutual=true" in mutual.tritonserver_args()
    assert any(a.startswith("--http-restricted-api=model-repository,") for a in mutual.tritonserver_args())
    bad = [dict(admin_key="short"), dict(admin_key="k" * 20 + ":x=y"), dict(admin_header="Admin Key"),
           dict(admin_key="k" * 32 + "\n"), dict(admin_header="admin-key\n"),  # "$" matches before a final newline
           dict(restricted=("inference",)), dict(restricted=("model-repository", "nonsense")),
           dict(server_cert=pki / "missing.crt"), dict(mutual=True, ca_cert=None)]
    for change in bad:
        kwargs = dict(server_cert=pki / "server.crt", server_key=pki / "server.key", ca_cert=pki / "ca.crt",
                      admin_key="k" * 32)
        with pytest.raises(ProductionConfigError):
            ProductionConfig(**{**kwargs, **change})


def test_launcher_refuses_incomplete_production_settings(rel_repository, pki, tmp_path):
    (tmp_path / "short.key").write_text("abc\n")
    base = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(rel_repository), "--production"]
    runs = {
        "no certificate": base,
        "short key": base + ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key"),
                             "--admin-key-file", str(tmp_path / "short.key")],
        "no key": base + ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")],
    }
    for name, cmd in runs.items():
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "OPENCC_CM_ADMIN_KEY"})
        print(f"\n[production] {name}: exit {done.returncode}: {done.stderr.strip()}")
        assert done.returncode == 2 and done.stderr.startswith("launch: production config:")


def _call(fn):
    try:
        out = fn()
        return "ok", out
    except InferenceServerException as exc:
        return str(exc.status()).replace("StatusCode.", ""), exc.message()


def test_admin_protocols_need_the_key_inference_does_not(production, reference):
    admin = {"triton-grpc-protocol-admin-key": production.key}
    wrong = {"triton-grpc-protocol-admin-key": "not-the-key-" + "x" * 20}
    calls = {
        "repository index (model-repository)": lambda c, h: c.get_model_repository_index(headers=h),
        "load model (model-repository)": lambda c, h: c.load_model(TOKENIZER_MODEL, headers=h),
        "unload model (model-repository)": lambda c, h: c.unload_model(ENCODER_MODEL, headers=h),
        "statistics": lambda c, h: c.get_inference_statistics(headers=h),
        "trace settings": lambda c, h: c.update_trace_settings(settings={"trace_rate": "1"}, headers=h),
        "log settings (logging)": lambda c, h: c.update_log_settings({"log_verbose_level": 1}, headers=h),
        "register system shared memory": lambda c, h: c.register_system_shared_memory("r", "/x", 8, headers=h),
        "model config": lambda c, h: c.get_model_config(TEXT_ENSEMBLE, headers=h),
        "model metadata": lambda c, h: c.get_model_metadata(TEXT_ENSEMBLE, headers=h),
        "server ready (health)": lambda c, h: c.is_server_ready(headers=h),
    }
    table = {}
    with grpcclient.InferenceServerClient(production.url, **production.tls) as client:
        for name, fn in calls.items():
            table[name] = {who: _call(lambda: fn(client, h)) for who, h in (("none", None), ("wrong", wrong))}
        for name, fn in calls.items():
            if "load" not in name and "shared memory" not in name and "settings" not in name:
                table[name]["key"] = _call(lambda: fn(client, admin))
        # with the key the admin protocols answer, but model control stays off
        table["load model (model-repository)"]["key"] = _call(lambda: client.load_model(TOKENIZER_MODEL, headers=admin))
        table["unload model (model-repository)"]["key"] = _call(
            lambda: client.unload_model(ENCODER_MODEL, headers=admin))
        cases = make_cases(reference, 6, seed=21)
        inference = fire_cases(client, cases)
        still_ready = client.is_model_ready(ENCODER_MODEL) and client.is_server_ready()
    print(f"\n[production] launcher: {production.ready_line.strip()}")
    for name, row in table.items():
        print(f"[production] {name:38s} " + "; ".join(f"{who}: {code} {str(msg)[:60]!r}" if code != "ok"
                                                       else f"{who}: ok" for who, (code, msg) in row.items()))
    print(f"[production] inference without the key: {[kind for kind, _ in inference]}")
    for name in ("repository index (model-repository)", "load model (model-repository)",
                 "unload model (model-repository)", "statistics", "trace settings", "log settings (logging)",
                 "register system shared memory"):
        for who in ("none", "wrong"):
            assert table[name][who] == ("UNAVAILABLE", RESTRICTED), (name, who, table[name][who])
    assert table["repository index (model-repository)"]["key"][0] == "ok"
    assert {m.state for m in table["repository index (model-repository)"]["key"][1].models} == {"READY"}
    assert table["statistics"]["key"][0] == "ok"
    for name in ("load model (model-repository)", "unload model (model-repository)"):
        code, message = table[name]["key"]
        assert code == "UNAVAILABLE" and NO_MODEL_CONTROL in message
    for name in ("model config", "model metadata", "server ready (health)"):
        assert all(code == "ok" for code, _ in table[name].values())
    assert [kind for kind, _ in inference] == ["ok"] * len(cases) and still_ready
    assert production.key not in production.log.read_text(errors="replace"), "the admin key must not be logged"


def test_tls_is_required_and_the_client_library_works(production):
    options = ConnectionOptions(ssl=True, root_certificates=production.tls["root_certificates"], timeout_s=10)
    with ClassifierClient(production.url, options=options) as client:
        first = client.classify(["over TLS, no admin key"])[0]
    no_retry = dict(retry=RetryPolicy(attempts=1), timeout_s=5)
    outcomes = {}
    other_ca = ConnectionOptions(ssl=True, root_certificates=str(production.pki / "other-ca.crt"), **no_retry)
    for name, options in (("untrusted CA", other_ca), ("plaintext", ConnectionOptions(**no_retry))):
        with ClassifierClient(production.url, options=options) as client:
            with pytest.raises(UnavailableError) as refused:
                client.classify(["should not get through"])
            outcomes[name] = refused.value.code
    with socket.socket() as sock:
        http = sock.connect_ex(("127.0.0.1", production.http_port))
    probe = [sys.executable, "-m", "opencc_cm_serving.production", "canary", "--url", production.url]
    canary_ok = subprocess.run(probe + ["--ca", production.tls["root_certificates"]], capture_output=True, text=True,
                               timeout=60)
    canary_bad = subprocess.run(probe + ["--ca", str(production.pki / "other-ca.crt"), "--timeout", "3"],
                                capture_output=True, text=True, timeout=60)
    assert canary_ok.returncode == 0 and canary_ok.stdout.startswith("canary: ok"), canary_ok.stderr
    assert canary_bad.returncode == 1 and "canary: FAILED" in canary_bad.stderr
    print(f"\n[production] ClassifierClient over TLS: {first.input_tokens} tokens scored; refused: {outcomes}; "
          f"HTTP port connect -> errno {http} (connection refused = {http == 111})")
    assert first.input_tokens > 0
    assert outcomes == {"untrusted CA": "UNAVAILABLE", "plaintext": "UNAVAILABLE"}
    assert http != 0, "HTTP must be off in production"


# --- threshold profiles and request parameters -------------------------------------------------------
def test_profile_names_cannot_reach_files_or_code(rel_client, reference, tmp_path):
    secret = "TOP-SECRET-" + secrets.token_hex(8)
    target = tmp_path / "secret.json"
    target.write_text(json.dumps({"profiles": {"leak": {label: 0.0 for label in HARM_CATEGORIES}}, "s": secret}))
    pwned = tmp_path / "PWNED"
    names = ["../x", "../../../../../../" + str(target).lstrip("/"), str(target), f"file://{target}",
             "artifacts/profiles.json", "../1/artifacts/profiles.json", "leak",
             f"__import__('os').system('touch {pwned}')", "{{7*7}}", "${profiles_file}", "default\\..\\strict",
             "strict/../default", "x" * 10_000, "y" * 1_000_000]
    tally = Tally()
    for name in names:
        code, message = _call(lambda: rel_client.infer(TEXT_ENSEMBLE, text_inputs(["the model"]),
                                                       parameters=params(name)))
        tally.add(code, message)
        assert code == "INVALID_ARGUMENT" and "unknown threshold_profile" in message, (name[:80], code, message)
        assert secret not in message and len(message) < 400
    # Keys naming config parameters or files are never read from requests: refused, naming the key.
    rows = reference.token_rows([b"the model"], MAX_TEXT_BYTES)
    odd = {"profiles_file": str(target), "artifact_dir": "/", "onnx_file": "/etc/passwd",
           "model_repository": str(tmp_path)}
    for key, value in odd.items():
        code, message = _call(lambda: rel_client.infer(TEXT_ENSEMBLE, text_inputs(["the model"]),
                                                       parameters={"threshold_profile": "strict", key: value}))
        assert code == "INVALID_ARGUMENT" and f"unknown request parameter {key!r}" in message, (key, code, message)
        assert secret not in message
    result = rel_client.infer(TEXT_ENSEMBLE, text_inputs(["the model"]), parameters={"threshold_profile": "strict"})
    print("\n" + tally.table(f"[params] {len(names)} path-like / code-like threshold_profile values"))
    print(f"[params] file/config-like request parameters {sorted(odd)}: refused INVALID_ARGUMENT naming the key")
    assert mismatch(result_dict(result), reference.for_rows(rows, "strict")) is None
    assert not pwned.exists()


def test_profiles_files_are_data_not_code(rel_bundle, tmp_path):
    labels = list(HARM_CATEGORIES)
    pwned = tmp_path / "PWNED"
    files = {
        "path-like name": json.dumps({"profiles": {"../x": {label: 0.5 for label in labels}}}),
        "code, not JSON": f"__import__('os').system('touch {pwned}')",
        "YAML-style tag": "!!python/object/apply:os.system ['touch PWNED']",
        "redefines default": json.dumps({"profiles": {"default": {label: 0.5 for label in labels}}}),
        "string threshold": json.dumps({"profiles": {"s": {**{label: 0.5 for label in labels}, "CBRN": "0.1"}}}),
        "threshold above 1": json.dumps({"profiles": {"s": {**{label: 0.5 for label in labels}, "CBRN": 7}}}),
        "unknown label": json.dumps({"profiles": {"s": {**{label: 0.5 for label in labels}, "../etc": 0.5}}}),
        "missing label": json.dumps({"profiles": {"s": {label: 0.5 for label in labels[1:]}}}),
    }
    for i, (name, text) in enumerate(files.items()):
        path = tmp_path / f"profiles-{i}.json"
        path.write_text(text)
        out, err = tmp_path / f"out-{i}", io.StringIO()
        with contextlib.redirect_stderr(err):
            code = deploy_main(["--bundle", str(rel_bundle), "--repository", str(TEMPLATES), "--output", str(out),
                                "--target", "python-ort", "--profiles", str(path)])
        print(f"\n[profiles] {name}: deploy exit {code}: {err.getvalue().strip().split(': ', 2)[-1][:150]}", end="")
        assert code == 2 and not out.exists() and err.getvalue().startswith("deploy: error:"), name
    assert not pwned.exists() and not Path("PWNED").exists()


def test_concurrent_requests_keep_their_own_thresholds(rel_client, reference):
    """Waves of requests with different profiles, batched together by the server, each get theirs."""
    profiles = (None, "strict", "lenient", "everything", "nothing", "default")
    cases = make_cases(reference, 60, seed=33, profiles=profiles)

    def calibration_counts():  # (requests handed over, execute() calls) of the model that calibrates:
        # the Python-backend encoder (calibration is folded into it on the python-ort target)
        stats = rel_client.get_inference_statistics(ENCODER_MODEL).model_stats[0]
        return stats.inference_stats.success.count, stats.execution_count

    requests0, executions0 = calibration_counts()
    tally = Tally()
    for wave in range(25):
        batch = [cases[(wave * 12 + i) % len(cases)] for i in range(12)]
        for (kind, detail), case in zip(fire_cases(rel_client, batch), batch):
            tally.add((case.profile or "none", kind), detail)
    requests1, executions1 = calibration_counts()
    print("\n" + tally.table("[isolation] 25 waves of 12 concurrent requests (profile, outcome)"))
    print(f"[isolation] the encoder (which calibrates) took {requests1 - requests0} requests in {executions1 - executions0} "
          "executions (requests with different profiles shared executions)")
    assert not any(kind == "WRONG" for _, kind in tally.counts)
    assert {kind for _, kind in tally.counts} <= {"ok", "UNAVAILABLE"}
    assert all(tally.counts[(p or "none", "ok")] > 0 for p in profiles)
    assert executions1 - executions0 < requests1 - requests0, "the server batched requests together"
    flags = result_dict(rel_client.infer(TEXT_ENSEMBLE, text_inputs(["the model"]), parameters=params("nothing")))
    assert not flags["flagged"].any() and np.all(flags["scores"] < 1.0)
