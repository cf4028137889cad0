"""What a server leaves behind once stopped: a Python-backend stub killed by hostile input (or
anything else) must not leave its /dev/shm region (memory: /dev/shm is tmpfs) nor any process.

Real tritonserver, its own instance (a stub gets killed)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from opencc_cm_contract import ENCODER_MODEL
from opencc_cm_serving.launch import TritonServer

SHM = Path("/dev/shm")
STUB_NAME = "triton_python_backend_stub"


def stubs_of(pid: int) -> dict[str, psutil.Process]:
    """The server's Python-backend stubs by model name (a stub's argv[1] is <repo>/<model>/<version>/model.py)."""
    out = {}
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if proc.name() == STUB_NAME:
                out[Path(proc.cmdline()[1]).parent.parent.name] = proc
        except (psutil.NoSuchProcess, IndexError):
            pass
    return out


def dead_or_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("crash", ["encoder stub", "encoder stub, then the server"])
def test_stop_leaves_no_stub_region_or_process(repository, tmp_path, crash):
    """A killed stub, and a server that dies without stopping its stubs (SIGKILL here; a SIGSEGV
    in Triton's HTTP frontend did the same), leave regions only the launcher can remove."""
    server = TritonServer(repository, log_path=tmp_path / "server.log", extra_args=["--exit-timeout-secs=3"])
    server.start()
    try:
        stubs = stubs_of(server.process.pid)
        # each stub's command line names its region (<prefix><uuid>), created by the server in /dev/shm
        regions = {arg for proc in stubs.values() for arg in proc.cmdline()[2:3] if (SHM / arg).is_file()}
        assert ENCODER_MODEL in stubs and len(regions) == len(stubs), (sorted(stubs), sorted(regions))
        victim = stubs[ENCODER_MODEL]
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not dead_or_zombie(victim) and time.monotonic() < deadline:  # tritonserver does not reap it
            time.sleep(0.05)
        assert dead_or_zombie(victim)
        if crash.endswith("the server"):
            server.process.kill()
            server.process.wait(10)
    finally:
        code = server.stop()
    left = sorted(r for r in regions if (SHM / r).exists())
    alive = [name for name, proc in stubs.items() if not dead_or_zombie(proc)]
    print(f"\n[cleanup] {crash} killed: {len(stubs)} stubs, {len(regions)} regions; server exit code {code}; "
          f"regions left after stop(): {len(left)}; stubs alive: {alive}")
    assert not left, f"{len(left)} of {len(regions)} stub regions left in /dev/shm: {left}"
    assert not alive
