"""Faults: a server restart under traffic, a killed Python-backend stub, broken artifacts.

Observed with the pip-bundled tritonserver 2.51 (documented in serving/README.md, "Failure
modes"):
- restart: calls in flight when the server stops finish; calls arriving while it stops fail
  NOT_FOUND "... has no available versions" (the ensembles unload first), UNAVAILABLE, or
  (rarely) CANCELLED for a call the server was still holding;
  while it is down UNAVAILABLE; on the same ports the clients reconnect by themselves, and
  the client library (retries on UNAVAILABLE) sees no error at all.
- a killed stub is NOT restarted: every request through that model fails INTERNAL "Stub
  process '<model>_0_0' is not healthy." (in-flight ones after ~2 s), while the server AND
  the model still report READY. Recovery is a server restart; the launcher watches the stub
  processes and exits 3 when one dies so that a supervisor restarts it. Stopping
  such a server waits for the full --exit-timeout-secs and leaks the dead stub's /dev/shm
  region (removed here).
- a broken artifact: the model fails to load, the log says why, tritonserver exits 1 and the
  launcher's error names the model and the problem; with --exit-on-error=false the server
  stays live but not ready, and the index shows the model UNAVAILABLE with the reason.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from opencc_cm_client import ClassifierClient, ClassifierError, ConnectionOptions, RetryPolicy
from opencc_cm_contract import (ENCODER_MODEL, IDS_ENSEMBLE, TEXT_ENSEMBLE,
                                       TOKENIZER_MODEL)
from opencc_cm_serving.launch import ServerSettings, TritonServer, free_port
from opencc_cm_serving.canary import canary

from reliability_tools import (Tally, classify_outcome, fire_cases, make_cases, remove_leaked_regions,
                               stub_shm_regions, stubs)
from serving_calls import params

FAST_EXIT = ["--exit-timeout-secs=3"]  # a server with a dead stub waits this long before exiting
UNHEALTHY = "is not healthy"


def channel_kwargs() -> dict:
    """The client library's channel settings (bounded reconnect backoff)."""
    return dict(channel_args=ConnectionOptions().channel_args())


# --- (a) restart under traffic --------------------------------------------------------------------
def test_restart_mid_stream(rel_repository, reference, tmp_path):
    ports = dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    cases = make_cases(reference, 24, seed=3)
    phase = {"name": "before"}
    tally, lib_tally, lock, stop = Tally(), Tally(), threading.Lock(), threading.Event()
    lib_retries: list[int] = []
    first = TritonServer(rel_repository, ServerSettings(log_path=tmp_path / "first.log", **ports)).start()
    url = first.grpc_url

    def raw_worker(w: int):
        with grpcclient.InferenceServerClient(url, **channel_kwargs()) as client:
            for n in range(5000):  # bounded by count and by the stop event / time below
                if stop.is_set():
                    return
                case = cases[(w * 5 + n) % len(cases)]
                at = phase["name"]
                try:
                    kind, detail = classify_outcome(client.infer(case.model, case.inputs(), client_timeout=3,
                                                                 parameters=params(case.profile)), None, case.ref)
                except InferenceServerException as exc:
                    kind, detail = classify_outcome(None, exc, case.ref)
                    time.sleep(0.05)
                with lock:
                    tally.add((at, kind), detail)

    def library_worker():
        options = ConnectionOptions(timeout_s=5, retry=RetryPolicy(attempts=60, initial_backoff_s=0.1,
                                                                   max_backoff_s=0.5))
        with ClassifierClient(url, options=options) as client:
            expected = client.classify(["the model review"])[0]
            for _ in range(2000):
                if stop.is_set():
                    break
                at = phase["name"]
                try:
                    got = client.classify(["the model review"])[0]
                    kind = "ok" if got == expected else "WRONG"
                except ClassifierError as exc:
                    kind = exc.code
                with lock:
                    lib_tally.add((at, kind))
            lib_retries.append(client.retries)

    second = TritonServer(rel_repository, ServerSettings(log_path=tmp_path / "second.log", **ports))
    threads = [threading.Thread(target=raw_worker, args=(w,), daemon=True) for w in range(3)]
    threads.append(threading.Thread(target=library_worker, daemon=True))
    try:
        for th in threads:
            th.start()
        time.sleep(1.5)
        phase["name"] = "stopping"
        t0 = time.monotonic()
        code = first.stop()
        phase["name"] = "down"
        time.sleep(0.5)
        phase["name"] = "restarting"
        second.start()  # this (the main) thread: the server's life is tied to its starting thread
        downtime = time.monotonic() - t0
        phase["name"] = "after"
        time.sleep(2.0)
    finally:
        stop.set()
        for th in threads:
            th.join(20)
        first.stop()
        second.stop()
    print(f"\n[restart] first server stopped with exit code {code}; down {downtime:.1f} s until the second was ready")
    print(tally.table("[restart] raw tritonclient calls (phase, outcome)"))
    print(lib_tally.table(f"[restart] ClassifierClient with retries (phase, outcome); retries {lib_retries}"))
    kinds = {kind for (_, kind) in tally.counts}
    assert "WRONG" not in kinds and ("after", "WRONG") not in lib_tally.counts
    assert kinds <= {"ok", "UNAVAILABLE", "NOT_FOUND", "CANCELLED", "DEADLINE_EXCEEDED"}, tally.table("unexpected")
    # Triton cancels calls it still holds when it stops (the client library retries them); a call
    # is tallied under the phase it started in, so such a call may read "before"
    assert all(at in ("before", "stopping") for (at, kind) in tally.counts if kind == "CANCELLED"), \
        tally.table("CANCELLED outside the first server's stop")
    if "NOT_FOUND" in kinds:  # while stopping, Triton unloads the ensembles first
        assert all("has no available versions" in tally.examples[k] for k in tally.counts if k[1] == "NOT_FOUND")
    assert tally.counts[("before", "ok")] > 0 and tally.counts[("after", "ok")] > 0
    assert lib_tally.counts[("after", "ok")] > 0
    assert {kind for (_, kind) in lib_tally.counts} == {"ok"}, "with retries the client rides through the restart"


# --- (b) a killed Python-backend stub -----------------------------------------------------------
@pytest.fixture
def stub_server(rel_repository, tmp_path):
    server = TritonServer(rel_repository, ServerSettings(log_path=tmp_path / "stub.log", extra_args=FAST_EXIT)).start()
    server.regions = stub_shm_regions(server.process.pid)
    try:
        yield server
    finally:
        server.stop()
        remove_leaked_regions(server.regions)


def test_killed_encoder_stub(stub_server, reference):
    server = stub_server
    client = grpcclient.InferenceServerClient(server.grpc_url)
    cases = make_cases(reference, 16, seed=5)  # 2 x max_queue_size in flight: some may be shed (UNAVAILABLE)
    assert all(kind == "ok" for kind, _ in fire_cases(client, cases[:4]))
    pid = server.process.pid
    stub = stubs(pid)[ENCODER_MODEL]

    # Requests in flight while the stub dies: answered correctly or with an error, none hang.
    outcomes: list = []
    firing = threading.Thread(target=lambda: outcomes.extend(fire_cases(client, cases, timeout_s=20)))
    firing.start()
    time.sleep(0.01)
    stub.kill()
    t0 = time.monotonic()
    firing.join(40)
    settled = time.monotonic() - t0
    in_flight = Tally()
    for kind, detail in outcomes:
        in_flight.add(kind, detail)

    # Afterwards: no self-repair within the observation window, readiness unchanged.
    after, ready = Tally(), set()
    for i in range(10):
        case = cases[i]
        try:
            kind, detail = classify_outcome(client.infer(case.model, case.inputs(), client_timeout=10), None, case.ref)
        except InferenceServerException as exc:
            kind, detail = classify_outcome(None, exc, case.ref)
        after.add(kind, detail)
        ready.add((client.is_server_live(), client.is_server_ready(), client.is_model_ready(ENCODER_MODEL),
                   client.is_model_ready(TEXT_ENSEMBLE)))
        time.sleep(0.3)
    alive_stubs = sorted(stubs(pid))
    ok, why = canary(server.grpc_url)
    with ClassifierClient(server.grpc_url, options=ConnectionOptions(retry=RetryPolicy(attempts=1))) as library:
        with pytest.raises(ClassifierError) as failure:
            library.classify(["does the library see it?"])
        gate = library.gate("and the gate?")
    print(f"\n[stub] SIGKILL encoder stub pid {stub.pid}; in-flight requests settled within {settled:.1f} s")
    print(in_flight.table("[stub] in-flight outcomes"))
    print(after.table("[stub] outcomes over the next 3 s"))
    print(f"[stub] (live, server ready, encoder ready, classify_text ready) seen: {sorted(ready)}; "
          f"stubs alive: {alive_stubs}")
    print(f"[stub] canary: ok={ok} ({why}); ClassifierClient: {failure.value.code}; gate escalates={gate.escalate}")
    client.close()
    assert len(outcomes) == len(cases), "every in-flight request must end"
    # DEADLINE_EXCEEDED: requests the encoder had admitted (answered from its scheduler thread through
    # a response sender) when its stub died: Triton 2.51 does not fail a dead stub's pending response
    # senders, so they end at the client's deadline (serving/README.md, failure modes); never wrong
    assert set(in_flight.counts) <= {"ok", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"} and in_flight.counts["WRONG"] == 0
    assert UNHEALTHY in in_flight.examples.get("INTERNAL", UNHEALTHY)
    assert "Exceeds maximum queue size" in in_flight.examples.get("UNAVAILABLE", "Exceeds maximum queue size")
    assert set(after.counts) == {"INTERNAL"} and UNHEALTHY in after.examples["INTERNAL"], "Triton did not restart it"
    assert ready == {(True, True, True, True)}, "readiness does not reflect a dead stub (documented gap)"
    assert ENCODER_MODEL not in alive_stubs
    assert not ok and UNHEALTHY in why
    assert failure.value.code == "INTERNAL" and gate.escalate  # fail closed

    # Recovery: restart the server.
    t0 = time.monotonic()
    code = server.stop()
    stopped = time.monotonic() - t0
    leaked = remove_leaked_regions(server.regions)
    server.start()
    restarted = time.monotonic() - t0
    with grpcclient.InferenceServerClient(server.grpc_url) as fresh:
        recovered = fire_cases(fresh, cases[:6])
    print(f"[stub] recovery: stop took {stopped:.1f} s (exit code {code}: exit timeout with the dead stub; "
          f"{len(leaked)} of {len(server.regions)} stub /dev/shm regions left behind, removed), "
          f"ready again after {restarted:.1f} s; {sum(k == 'ok' for k, _ in recovered)}/6 correct")
    assert all(kind == "ok" for kind, _ in recovered)


def test_launcher_exits_when_a_stub_dies(rel_repository, tmp_path):
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(rel_repository),
           "--grpc-port", str(ports[0]), "--metrics-port", str(ports[2]),
           "--ready-timeout", "90", "--canary-interval", "0.5", "--canary-failures", "2",
           "--log-file", str(tmp_path / "server.log")]
    stderr = open(tmp_path / "launch.err", "w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    regions: set[str] = set()
    try:
        line, deadline = "", time.monotonic() + 100
        while time.monotonic() < deadline and "launch: ready" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "launcher exited before ready"
        import psutil

        server_pid = psutil.Process(proc.pid).children()[0].pid
        regions = stub_shm_regions(server_pid)
        time.sleep(1.2)  # a few good canaries
        t0 = time.monotonic()
        stubs(server_pid)[ENCODER_MODEL].kill()  # in both ensembles' path
        code = proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leaked = remove_leaked_regions(regions)
    stderr.seek(0)
    err = stderr.read()
    print(f"\n[stub watch] launcher exited {code} {took:.1f} s after the encoder stub was killed; "
          f"/dev/shm regions left behind: {len(leaked)}")
    print("[stub watch] " + "\n[stub watch] ".join(err.strip().splitlines()))
    assert code == 3
    assert f"launch: Python-backend stub died: {ENCODER_MODEL} (stub pid" in err and "Stopping the server" in err


# --- (c) broken artifacts --------------------------------------------------------------------------
def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[:100])


BROKEN = {  # case: (break the repository, model that fails, the log's reason, ensembles that go down with it)
    "truncated_onnx": (lambda repo: _truncate(repo / ENCODER_MODEL / "1" / "model.onnx"),
                       ENCODER_MODEL, "Protobuf parsing failed", (TEXT_ENSEMBLE, IDS_ENSEMBLE)),
    "missing_classifier_json": (lambda repo: (repo / TOKENIZER_MODEL / "1" / "artifacts" / "classifier.json").unlink(),
                                TOKENIZER_MODEL, "cannot read classifier spec: [Errno 2] No such file",
                                (TEXT_ENSEMBLE,)),
    # the profiles the serving path reads: the Python-backend encoder calibrates (folded ensembles)
    "code_in_profiles_file": (lambda repo: (repo / ENCODER_MODEL / "1" / "artifacts" / "profiles.json").write_text(
                                  "__import__('os').system('touch PWNED')  # not JSON"),
                              ENCODER_MODEL, "cannot read threshold profiles: Expecting value",
                              (TEXT_ENSEMBLE, IDS_ENSEMBLE)),
}


class NoWaitServer(TritonServer):
    """Starts tritonserver without waiting for readiness (the test polls it)."""

    def wait_ready(self) -> None:
        return None


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_artifact(case, rel_repository, tmp_path):
    breaker, model, problem, down = BROKEN[case]
    repo = tmp_path / "repo"
    shutil.copytree(rel_repository, repo)
    breaker(repo)

    # The launcher (TritonServer.start, what `launch` prints): tritonserver exits 1, the error names why.
    with pytest.raises(RuntimeError) as failure:
        TritonServer(repo, ServerSettings(log_path=tmp_path / "exit.log", ready_timeout=60)).start()
    message = str(failure.value)
    assert message.startswith("tritonserver exited with 1\n")
    first_lines = message.split("--- server log tail ---")[0]
    assert f"failed to load '{model}' version 1" in first_lines and problem in first_lines

    # Kept up (--exit-on-error=false): live, not ready; the index says which model and why.
    server = NoWaitServer(repo, ServerSettings(log_path=tmp_path / "kept.log", extra_args=["--exit-on-error=false", *FAST_EXIT]))
    server.start()
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            deadline, broken = time.monotonic() + 60, None
            while time.monotonic() < deadline and broken is None:
                try:
                    index = {m.name: m for m in client.get_model_repository_index().models}
                    if index.get(model) is not None and index[model].state == "UNAVAILABLE":
                        broken = index[model]
                except InferenceServerException:
                    pass
                time.sleep(0.2)
            assert broken is not None, "the model never reported UNAVAILABLE"
            state = (client.is_server_live(), client.is_server_ready(), client.is_model_ready(model),
                     client.is_model_ready(TEXT_ENSEMBLE), client.is_model_ready(IDS_ENSEMBLE))
            with pytest.raises(InferenceServerException) as refused:
                client.infer(TEXT_ENSEMBLE, [grpcclient.InferInput("text", [1, 1], "BYTES")], client_timeout=5)
    finally:
        server.stop()
    print(f"\n[artifact:{case}] launcher: {first_lines.strip().splitlines()[1][:160]}")
    print(f"[artifact:{case}] kept up: (live, ready, {model} ready, ensembles ready) = {state}; "
          f"index reason: {broken.reason[:120]!r}; "
          f"inference: {refused.value.status()} {refused.value.message()[:80]!r}")
    # Strict readiness: the server is not ready; an ensemble is ready only if all its steps are.
    assert state == (True, False, False, TEXT_ENSEMBLE not in down, IDS_ENSEMBLE not in down)
    assert problem in broken.reason
    assert not list(repo.glob("*/1/PWNED")) and not Path("PWNED").exists()
    log = (tmp_path / "kept.log").read_text(errors="replace")
    assert f"failed to load '{model}'" in log and problem in log


def test_launcher_reports_a_broken_artifact(rel_repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(rel_repository, repo)
    _truncate(repo / ENCODER_MODEL / "1" / "model.onnx")
    cmd = [sys.executable, "-m", "opencc_cm_serving.launch", "--model-repository", str(repo),
           "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
           "--ready-timeout", "60", "--log-file", str(tmp_path / "server.log")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    print(f"\n[artifact:cli] exit {done.returncode}; stderr starts: {done.stderr[:300]!r}")
    assert done.returncode == 1
    assert done.stderr.startswith("launch: tritonserver exited with 1\nfailed to load 'encoder' version 1")
    assert "Protobuf parsing failed" in done.stderr.split("--- server log tail ---")[0]
