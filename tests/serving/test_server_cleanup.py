"""What hostile input leaves behind. Once a server is stopped: a Python-backend stub killed by
hostile input (or anything else) must not leave its /dev/shm region (memory: /dev/shm is tmpfs)
nor any process. While it runs: refused compression bombs must not pile up in tritonserver.

Real tritonserver: the session's, and instances of their own where a stub gets killed."""
from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import ENCODER_MODEL, SCORES, TEXT_ENSEMBLE
from opencc_cm_serving.launch import ServerSettings, TritonServer, python_stubs

from serving_calls import classify_text, nested_infer_body, text_inputs

MIB = 1 << 20

SHM = Path("/dev/shm")
def stubs_of(pid: int) -> dict[str, psutil.Process]:
    """The server's Python-backend stubs by model name (the launcher's rule, ``launch.python_stubs``)."""
    return {model: psutil.Process(stub) for stub, model in python_stubs(pid).items()}


def dead_or_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_end(procs, within_s: float = 10.0) -> bool:
    """Whether every process is gone (or a zombie) within ``within_s``: SIGKILL takes effect
    asynchronously, so a process killed a moment ago may still show as running."""
    deadline = time.monotonic() + within_s
    while not all(dead_or_zombie(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(dead_or_zombie(p) for p in procs)


@pytest.mark.parametrize("crash", ["encoder stub", "encoder stub, then the server"])
def test_stop_leaves_no_stub_region_or_process(repository, tmp_path, crash):
    """A killed stub, and a server that dies without stopping its stubs (SIGKILL here; a SIGSEGV
    in Triton's HTTP frontend did the same), leave regions only the launcher can remove."""
    server = TritonServer(repository, ServerSettings(log_path=tmp_path / "server.log", extra_args=["--exit-timeout-secs=3"]))
    server.start()
    try:
        stubs = stubs_of(server.process.pid)
        # each stub's command line names its region (<prefix><uuid>), created by the server in /dev/shm
        regions = {arg for proc in stubs.values() for arg in proc.cmdline()[2:3] if (SHM / arg).is_file()}
        assert ENCODER_MODEL in stubs and len(regions) == len(stubs), (sorted(stubs), sorted(regions))
        victim = stubs[ENCODER_MODEL]
        os.kill(victim.pid, signal.SIGKILL)
        assert all_end([victim])  # a zombie: tritonserver does not reap it
        if crash.endswith("the server"):
            server.process.kill()
            server.process.wait(10)
    finally:
        code = server.stop()
    left = sorted(r for r in regions if (SHM / r).exists())
    all_end(stubs.values())
    alive = [name for name, proc in stubs.items() if not dead_or_zombie(proc)]
    print(f"\n[cleanup] {crash} killed: {len(stubs)} stubs, {len(regions)} regions; server exit code {code}; "
          f"regions left after stop(): {len(left)}; stubs alive: {alive}")
    assert not left, f"{len(left)} of {len(regions)} stub regions left in /dev/shm: {left}"
    assert not alive


def anon_rss(pid: int) -> int:
    """A process's private (anonymous) resident memory: not /dev/shm pools, not mapped files."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def test_refused_compression_bombs_do_not_pile_up_in_tritonserver(server, client, spec):
    """Five gzip requests (~32 KiB each) inflating to 32 MiB texts, refused by the tokenizer.
    With Triton's default pool of reused gRPC request objects the bombs stayed in them (several
    times the inflated size kept, growing with the number of bombs); without the pool
    tritonserver keeps less than two bombs' worth."""
    bomb_mib, bombs = 32, 5
    text = b"a" * (bomb_mib * MIB)
    assert len(gzip.compress(text)) < 64 * 1024
    pid = server.process.pid
    classify_text(client, ["warm up"])
    before = anon_rss(pid)
    for _ in range(bombs):
        with pytest.raises(InferenceServerException) as refused:
            client.infer(TEXT_ENSEMBLE, text_inputs([text]), compression_algorithm="gzip", client_timeout=120)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and "max_text_bytes" in refused.value.message()
    assert classify_text(client, ["still serving"])[SCORES].shape == (1, spec.num_labels)
    kept = (anon_rss(pid) - before) / MIB
    print(f"\n[bombs] {bombs} x {bomb_mib} MiB inflated: tritonserver anonymous RSS +{kept:.0f} MiB kept")
    assert kept < 2 * bomb_mib, f"+{kept:.0f} MiB kept after {bombs} refused {bomb_mib} MiB requests"


def test_the_nested_http_body_kills_an_http_server_and_stop_leaves_nothing(repository, tmp_path):
    """Why HTTP is off unless asked for: with --allow-http, one 200 KB inference body nested
    100,000 levels deep kills tritonserver 2.51 (SIGSEGV in its HTTP frontend; 10,000 levels are
    answered). stop() still leaves no stub region or process behind."""
    import http.client

    server = TritonServer(repository, ServerSettings(log_path=tmp_path / "server.log", http=True)).start()
    crashed = None
    try:
        stubs = stubs_of(server.process.pid)
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        conn.request("POST", f"/v2/models/{TEXT_ENSEMBLE}/infer", body=nested_infer_body(10_000),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.request("POST", f"/v2/models/{TEXT_ENSEMBLE}/infer", body=nested_infer_body(100_000),
                         headers={"Content-Type": "application/json"})
            conn.getresponse()
        conn.close()
        crashed = server.process.wait(30)
    finally:
        server.stop()
    print(f"\n[nested HTTP body] tritonserver exit code {crashed}")
    assert crashed == -signal.SIGSEGV, "if Triton survives this body, serving/README.md's HTTP guidance can change"
    assert not server.shm_regions() and all_end(stubs.values())
