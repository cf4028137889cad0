"""The launcher CLI: waits for readiness, prints the endpoint, stops cleanly on SIGINT; HTTP
only when asked for (tritonserver 2.51's HTTP frontend crashes on one deeply nested JSON body)."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tritonclient.grpc as grpcclient

from opencc_cm_contract import TEXT_ENSEMBLE
from opencc_cm_serving.launch import free_port

from serving_calls import classify_text, nested_infer_body





def launch(repository, *extra) -> tuple[subprocess.Popen, str]:
    """The launcher CLI started on free ports; returns the process and its ``launch: ready`` line."""
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(repository),
           "--ready-timeout", "90", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline, line = time.monotonic() + 100, ""
    while time.monotonic() < deadline and "launch: ready" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            pytest.fail("launcher exited before ready")
    return proc, line


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_cli_serves_and_stops_on_sigint(repository):
    """Defaults: gRPC only. A port given with --http-port is not served without --allow-http, so
    the nested body that crashes Triton's HTTP frontend cannot reach it."""
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    proc, line = launch(repository, "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                        "--metrics-port", str(metrics_port))
    try:
        assert f"grpc=127.0.0.1:{grpc_port}" in line and "http=off" in line, line
        assert refused(http_port), "HTTP must be off unless --allow-http"
        with pytest.raises(ConnectionRefusedError):
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            conn.request("POST", f"/v2/models/{TEXT_ENSEMBLE}/infer", body=nested_infer_body(),
                         headers={"Content-Type": "application/json"})
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            assert classify_text(client, ["hello"])["scores"].shape[0] == 1
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "launch: stopped (exit code 0)" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_serves_http_only_when_asked(repository):
    grpc_port, http_port = free_port(), free_port()
    proc, line = launch(repository, "--grpc-port", str(grpc_port), "--metrics-port", str(free_port()),
                        "--allow-http", "--http-port", str(http_port))
    try:
        assert f"http=127.0.0.1:{http_port}" in line, line
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()  # what the launcher printed after the ready line
        assert "HTTP is on" in rest and "deeply nested JSON body" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_command_keeps_http_off_unless_asked(tmp_path):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    default = TritonServer(tmp_path, ServerSettings(http_port=free_port()))
    cmd, _ = default.command_and_env()
    assert "--allow-http=false" in cmd and not any(a.startswith("--http-port") for a in cmd)
    assert default.http_port is None
    opted = TritonServer(tmp_path, ServerSettings(http=True))
    cmd, _ = opted.command_and_env()
    assert "--allow-http=false" not in cmd and f"--http-port={opted.http_port}" in cmd
    # each server names its stubs' /dev/shm regions with a prefix of its own (stop() removes them)
    assert f"--backend-config=python,shm-region-prefix-name={opted.shm_prefix}" in cmd
    assert default.shm_prefix != opted.shm_prefix
    for unstarted in (default, opted):
        unstarted.stop()  # removes the backend folder command_and_env built


def test_server_path_leaves_out_virtualenv_bins(tmp_path, monkeypatch):
    """From an activated venv the pip server's stub found the venv's python3 first on PATH and
    loaded a mismatched standard library (python-torch models failed on ``import ssl``)."""
    from opencc_cm_serving.launch import TritonServer, path_without_venv_bins

    venv, plain = tmp_path / "venv", tmp_path / "tools"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (plain / "bin").mkdir(parents=True)
    path = os.pathsep.join([str(venv / "bin"), str(plain / "bin"), "/usr/bin"])
    assert path_without_venv_bins(path) == os.pathsep.join([str(plain / "bin"), "/usr/bin"])
    monkeypatch.setenv("PATH", path + os.pathsep + os.environ["PATH"])
    _, env = TritonServer(tmp_path).command_and_env()
    assert str(venv / "bin") not in env["PATH"].split(os.pathsep) and str(plain / "bin") in env["PATH"]


def test_stub_watch_sees_a_stub_process_end(tmp_path):
    """``python_stubs`` finds a parent's stub processes by their command line (``<stub>
    <repository>/<model>/<version>/model.py``); ``dead_stubs`` names the one that ended, reaped
    or still a zombie."""
    import shutil

    from opencc_cm_serving.launch import STUB_NAME, dead_stubs, python_stubs

    procs = {}
    for model in ("jailbreak_encoder", "tokenizer"):
        script = tmp_path / "repo" / model / "1" / "model.py"
        script.parent.mkdir(parents=True)
        script.write_text("import time\ntime.sleep(60)\n")
        # argv[0] is the stub's path, as when tritonserver starts it; a Python interpreter runs it
        procs[model] = subprocess.Popen([str(tmp_path / STUB_NAME), str(script)], executable=sys.executable)
    other = subprocess.Popen([shutil.which("sleep"), "60"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(found := python_stubs(os.getpid())) < 2:  # until both exec'd
            time.sleep(0.05)
        assert found == {p.pid: model for model, p in procs.items()}
        assert dead_stubs(os.getpid(), found) == []
        procs["jailbreak_encoder"].kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not dead_stubs(os.getpid(), found):
            time.sleep(0.05)
        pid = procs["jailbreak_encoder"].pid
        assert dead_stubs(os.getpid(), found) == [f"jailbreak_encoder (stub pid {pid})"]  # a zombie: not reaped yet
        procs["jailbreak_encoder"].wait()
        assert dead_stubs(os.getpid(), found) == [f"jailbreak_encoder (stub pid {pid})"]  # reaped: gone
    finally:
        for proc in (*procs.values(), other):
            proc.kill()
            proc.wait()
