"""The launcher CLI: waits for readiness, prints the endpoint, stops cleanly on SIGINT."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import tritonclient.grpc as grpcclient

from opencc_cm_serving.launch import free_port

from serving_calls import classify_text


def test_cli_serves_and_stops_on_sigint(repository):
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(repository),
           "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
           "--ready-timeout", "90"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline, line = time.monotonic() + 100, ""
        while time.monotonic() < deadline and "launch: ready" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "launcher exited before ready"
        assert f"grpc=127.0.0.1:{grpc_port}" in line
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            assert classify_text(client, ["hello"])["scores"].shape[0] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "launch: stopped (exit code 0)" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
