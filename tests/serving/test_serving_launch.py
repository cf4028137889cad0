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
