"""Memory a server keeps after refused compression bombs, per process and by kind.

    python benchmarks/memory/hostile_memory.py --repository model_repository [--bomb-mib 200] [--bombs 1]

For each configuration (the launcher's default, then Triton's own gRPC request pool of 8 via
``--grpc-infer-allocation-pool-size=8``) it starts a server with ``launch.TritonServer``, sends
``--bombs`` gzip requests whose text inflates to ``--bomb-mib`` MiB (each refused
INVALID_ARGUMENT "above max_text_bytes"), closes the connection, classifies one short text on a
new one, and prints RSS before / after for tritonserver (anonymous, file-backed, shared) and
each Python-backend stub, plus the size of the stubs' /dev/shm regions. Loopback only.
"""
from __future__ import annotations

import argparse
import gzip
import tempfile
from pathlib import Path

import numpy as np
import psutil
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import TEXT, TEXT_ENSEMBLE
from opencc_cm_serving.launch import ServerSettings, TritonServer

MIB = 1 << 20
STUB_NAME = "triton_python_backend_stub"
CONFIGS = {"launcher default (no request pool)": [], "Triton's request pool (8)": ["--grpc-infer-allocation-pool-size=8"]}


def text_input(text: bytes):
    data = np.array([[text]], dtype=np.object_)
    tensor = grpcclient.InferInput(TEXT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return [tensor]


def memory(server: TritonServer) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile", "RssShmem")):
            out["tritonserver " + line.split(":")[0]] = int(line.split()[1]) / 1024
    for proc in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if proc.name() == STUB_NAME:
                out[f"stub {Path(proc.cmdline()[1]).parent.parent.name} RSS"] = proc.memory_info().rss / MIB
        except (psutil.NoSuchProcess, IndexError):
            pass
    out["stub /dev/shm regions"] = sum(p.stat().st_size for p in server.shm_regions()) / MIB
    return out


def run(repository: Path, args: list[str], bomb_mib: int, bombs: int) -> tuple[dict, dict, str]:
    text = b"a" * (bomb_mib * MIB)
    log = Path(tempfile.mkdtemp(prefix="hostile-memory-")) / "tritonserver.log"
    with TritonServer(repository, ServerSettings(extra_args=args, ready_timeout=180, log_path=log)) as server:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            client.infer(TEXT_ENSEMBLE, text_input(b"warm up"))
            before = memory(server)
            refusal = ""
            for _ in range(bombs):
                try:
                    client.infer(TEXT_ENSEMBLE, text_input(text), compression_algorithm="gzip", client_timeout=300)
                    refusal = "answered"
                except InferenceServerException as exc:
                    refusal = f"{exc.status()}: {exc.message()[:90]}"
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            client.infer(TEXT_ENSEMBLE, text_input(b"after"))
        return before, memory(server), refusal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--bomb-mib", type=int, default=200)
    p.add_argument("--bombs", type=int, default=1)
    a = p.parse_args()
    print(f"{a.bombs} gzip request(s) of {len(gzip.compress(b'a' * (a.bomb_mib * MIB))) // 1024} KiB, "
          f"each inflating to {a.bomb_mib} MiB")
    for name, args in CONFIGS.items():
        before, after, refusal = run(a.repository, args, a.bomb_mib, a.bombs)
        print(f"\n{name}: {refusal}\n| memory (MiB) | before | after | kept |\n|---|---:|---:|---:|")
        for key in before:
            print(f"| {key} | {before[key]:.0f} | {after.get(key, 0):.0f} | {after.get(key, 0) - before[key]:+.0f} |")


if __name__ == "__main__":
    main()
