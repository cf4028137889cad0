"""One request must not leave a classifier out of service unseen: two classifiers in one server
(the toy bundle deployed unprefixed and as ``jailbreak_``).

Triton 2.51 computes a request's byte size as element count x item size in 64-bit arithmetic:
``input_ids`` / ``attention_mask`` of shape [1, 2**61] with empty contents wrap to 0 bytes and
pass its size check. The Python-backend stub builds a numpy array for every input while it
receives the request, before any ``model.py`` code runs; numpy refuses the shape (``array is
too big``), the exception escapes the stub's C++ code and the stub terminates. A model cannot
refuse it (``pb_utils.Tensor`` offers no shape before ``as_numpy()``, and the stub has built
the array already). Inputs whose config dims are all fixed apart from the batch (``text``
[B, 1], ``text_row``, ``window_start``) are safe: Triton refuses any other shape and the batch
is bounded by ``max_batch_size``. Every input with a variable dim (``-1``) is exposed.

Triton then neither restarts the stub nor marks the model unready. What contains it is
supervision: the launcher watches every stub process and exits 3 as soon as one dies, and its
canary (also ``python -m opencc_cm_serving.production canary --model-repository``) classifies
with every classifier in the repository, so a hung or dead prefixed classifier is seen too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from opencc_cm_contract import (ATTENTION_MASK, CALIBRATION_MODEL, ENCODER_MODEL, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL,
                                INPUT_IDS, LOGITS, TEXT, TEXT_ROW, TOKENIZER_MODEL, WINDOW_START)
from opencc_cm_serving.launch import ServerSettings, TritonServer, free_port
from opencc_cm_serving.canary import canary

from reliability_tools import remove_leaked_regions, stub_shm_regions, stubs
from serving_calls import deploy_native_steps, deploy_to

JB = "jailbreak_"
WRAPS = 2 ** 61  # x 8 bytes per INT64 = 2**64: Triton's byte-size check sees 0 bytes
UNHEALTHY = "is not healthy"


@pytest.fixture(scope="module")
def two_classifiers(rel_bundle, tmp_path_factory):
    """Two python-ort classifiers, each with the native targets' ids_preprocess and calibration
    beside it (called directly below)."""
    repo = deploy_to(rel_bundle, tmp_path_factory.mktemp("outage") / "repo", "python-ort")
    deploy_native_steps(rel_bundle, repo)
    deploy_to(rel_bundle, repo, "python-ort", "--model-prefix", JB)
    return deploy_native_steps(rel_bundle, repo, "--model-prefix", JB)


def raw_infer(url: str, model: str, tensors) -> tuple[str, str]:
    """One gRPC ModelInfer built by hand (tritonclient's InferInput checks shapes against the data):
    ``tensors`` = [(name, datatype, shape, raw bytes)]; returns (status code name, message)."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, datatype, shape, data in tensors:
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.extend(shape)
        request.raw_input_contents.append(data)
    with grpc.insecure_channel(url) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
            return "OK", ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()


def wrapping_ids(shape=(1, WRAPS)):
    return [(INPUT_IDS, "INT64", shape, b""), (ATTENTION_MASK, "INT64", shape, b"")]


def test_impossible_shapes_kill_stubs_and_only_supervision_sees_it(two_classifiers, rel_spec, tmp_path):
    from opencc_cm_serving.launch import dead_stubs, python_stubs

    labels = rel_spec.num_labels
    row = np.zeros((1, 1), np.int64).tobytes()
    calibration_call = [(LOGITS, "FP32", (1, labels), np.zeros((1, labels), np.float32).tobytes()),
                        (ATTENTION_MASK, "INT64", (1, WRAPS), b""), (TEXT_ROW, "INT64", (1, 1), row),
                        (WINDOW_START, "INT64", (1, 1), row)]
    hostile = {  # model called -> (inputs, the model whose stub receives them)
        JB + IDS_ENSEMBLE: (wrapping_ids(), JB + ENCODER_MODEL),           # through the ensemble
        JB + CALIBRATION_MODEL: (calibration_call, JB + CALIBRATION_MODEL),  # composing models called directly
        IDS_PREPROCESS_MODEL: (wrapping_ids((2, WRAPS // 2)), IDS_PREPROCESS_MODEL),
    }
    settings = ServerSettings(log_path=tmp_path / "server.log", ready_timeout=180, extra_args=["--exit-timeout-secs=3"])
    with TritonServer(two_classifiers, settings) as server:
        pid, url = server.process.pid, server.grpc_url
        regions = stub_shm_regions(pid)
        watched = python_stubs(pid)
        assert sorted(watched.values()) == sorted(stubs(pid)), "python_stubs finds every stub psutil finds"
        assert canary(url, prefixes=["", JB]) == (True, f"ok (classify_text, {JB}classify_text)")
        # Fixed dims bound the text input: Triton refuses the shape, the tokenizer's stub lives.
        text_code, text_why = raw_infer(url, TOKENIZER_MODEL, [(TEXT, "BYTES", (1, WRAPS), b"")])
        answers = {model: raw_infer(url, model, inputs) for model, (inputs, _) in hostile.items()}
        time.sleep(1.0)
        dead = dead_stubs(pid, watched)
        with grpcclient.InferenceServerClient(url) as client:
            ready = {m.name: client.is_model_ready(m.name) for m in client.get_model_repository_index().models}
            server_ready = client.is_server_ready()
        ok_default, _ = canary(url, prefixes=[""])
        ok_all, why_all = canary(url, prefixes=["", JB])
        probe = [sys.executable, "-m", "opencc_cm_serving.production", "canary", "--url", url, "--timeout", "10"]
        cli_all = subprocess.run(probe + ["--model-repository", str(two_classifiers)], capture_output=True,
                                 text=True, timeout=120)
        cli_index = subprocess.run(probe, capture_output=True, text=True, timeout=120)  # the index lists both
        cli_default = subprocess.run(probe + ["--model-prefix", ""], capture_output=True, text=True, timeout=120)
    remove_leaked_regions(regions)
    print(f"\n[outage] text [1, 2**61]: {text_code} {text_why[:100]}")
    for model, (code, why) in answers.items():
        print(f"[outage] {model} with a [.., 2**61] tensor: {code} {why[:100]}")
    print(f"[outage] dead stubs: {dead}; server ready {server_ready}, models ready: {sorted(set(ready.values()))}")
    print(f"[outage] canary default only: ok={ok_default}; every classifier: ok={ok_all} ({why_all})")
    assert text_code == "INVALID_ARGUMENT" and "unexpected shape for input 'text'" in text_why
    for model, (code, why) in answers.items():
        assert code != "OK", model  # never an answer
    died = {entry.split(" (")[0] for entry in dead}
    assert died == {stub for _, stub in hostile.values()}, dead
    assert all(UNHEALTHY in why for _, why in answers.values())
    # Triton 2.51: the dead models stay READY (the gap supervision covers), so readiness cannot be the probe.
    assert server_ready and all(ready.values())
    # The default classifier still answers; the jailbreak one does not, and only a canary over every
    # classifier in the repository says so.
    assert ok_default and cli_default.returncode == 0
    assert not ok_all and why_all.startswith(f"{JB}classify_text: ") and UNHEALTHY in why_all
    assert cli_all.returncode == 1 and f"canary: FAILED: {JB}classify_text" in cli_all.stderr, cli_all.stderr
    assert cli_index.returncode == 1 and f"canary: FAILED: {JB}classify_text" in cli_index.stderr, cli_index.stderr


def _launch(repository, tmp_path, *extra):
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(repository),
           "--grpc-port", str(ports[0]), "--metrics-port", str(ports[2]),
           "--ready-timeout", "240", "--log-file", str(tmp_path / "server.log"), *extra]
    stderr = open(tmp_path / "launch.err", "w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line, deadline = "", time.monotonic() + 300
    while time.monotonic() < deadline and "launch: ready" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "launcher exited before ready"
    import psutil

    server_pid = psutil.Process(proc.pid).children()[0].pid
    return proc, stderr, f"127.0.0.1:{ports[0]}", server_pid


def _end(proc, stderr, regions, leftover=()) -> str:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in leftover:  # a stopped stub outlives its server: end it here
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    remove_leaked_regions(regions)
    stderr.seek(0)
    return stderr.read()


def test_launcher_exits_when_a_prefixed_classifiers_stub_dies(two_classifiers, tmp_path):
    proc, stderr, url, server_pid = _launch(two_classifiers, tmp_path, "--canary-interval", "1",
                                            "--canary-failures", "2")
    regions = stub_shm_regions(server_pid)
    seen = None
    try:
        code_sent, why = raw_infer(url, JB + IDS_ENSEMBLE, wrapping_ids())
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 180:  # generous: the shared machine is loaded
            if seen is None and "stub died" in (tmp_path / "launch.err").read_text():
                seen = time.monotonic() - t0
            time.sleep(0.1)
        code = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        err = _end(proc, stderr, regions)
    print(f"\n[outage] {JB}{IDS_ENSEMBLE} [1, 2**61]: {code_sent} {why[:80]}; the launcher reported the dead stub "
          f"{seen if seen is None else round(seen, 1)} s after that answer, exited {code} after {took:.1f} s "
          "(server stop included)")
    print("[outage] " + "\n[outage] ".join(err.strip().splitlines()))
    assert code == 3
    assert f"Python-backend stub died: {JB}{ENCODER_MODEL} (stub pid" in err and "Stopping the server" in err


def test_launcher_canary_covers_every_classifier(two_classifiers, tmp_path):
    """A stub that hangs (SIGSTOP) is alive to the process watch; the canary over every classifier
    in the repository sees ``jailbreak_classify_text`` stop answering."""
    proc, stderr, url, server_pid = _launch(two_classifiers, tmp_path, "--canary-interval", "1",
                                            "--canary-failures", "2")
    regions = stub_shm_regions(server_pid)
    hung = stubs(server_pid)[JB + ENCODER_MODEL]
    try:
        hung.suspend()
        t0 = time.monotonic()
        code = proc.wait(timeout=180)
        took = time.monotonic() - t0
    finally:
        err = _end(proc, stderr, regions, leftover=[hung.pid])
    print(f"\n[outage] {JB}{ENCODER_MODEL} stub stopped (SIGSTOP); launcher exited {code} {took:.1f} s later")
    print("[outage] " + "\n[outage] ".join(err.strip().splitlines()))
    assert code == 3
    assert f"launch: canary failed (2/2): {JB}classify_text: " in err and "stopping the server" in err
