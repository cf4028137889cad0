"""Run a Triton server on a model repository and wait until every model is READY.

``python -m opencc_cm_serving.launch --model-repository DIR --grpc-port P --http-port P
--metrics-port P [--address 127.0.0.1]`` prints the endpoints once ready and shuts the
server down cleanly on SIGINT/SIGTERM. Tests use the ``TritonServer`` context manager.

Binary: ``tritonserver`` from PATH (NGC image, its own backends), else the one bundled in
``nvidia-pytriton``. For the bundled one a temporary backend folder ``python/`` is built
(libtriton_python.so, triton_python_backend_utils.py, the stub for this Python's version)
and ``LD_LIBRARY_PATH`` gets ``nvidia_pytriton.libs``. ``PYTHONPATH`` lists our packages and
numpy/onnxruntime/tokenizers; each model.py puts those entries on ``sys.path`` itself
because the backend stub ignores PYTHONPATH. Models load eagerly (model-control-mode none).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REQUIRED_PACKAGES = ("opencc_cm_serving", "opencc_cm_client", "numpy", "tokenizers")
OPTIONAL_PACKAGES = ("onnxruntime",)  # only the python-ort encoder needs it


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def model_pythonpath() -> list[str]:
    """Folders that make our packages and model.py dependencies importable."""
    out: list[str] = []
    for name in REQUIRED_PACKAGES + OPTIONAL_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            if name in REQUIRED_PACKAGES:
                raise RuntimeError(f"package {name} is not importable; model.py files need it")
            continue
        folder = str(Path(spec.origin).resolve().parent.parent)
        if folder not in out:
            out.append(folder)
    return out


def _pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def build_python_backend(dest: Path) -> Path:
    """Backend folder for the pip-bundled server: ``dest/python/`` with the stub for this Python."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"no Python backend stub for Python {sys.version_info[:2]} in {stub.parent.parent}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(root / "backends" / "python" / name, python_dir / name)
    shutil.copy2(stub, python_dir / stub.name)
    (python_dir / stub.name).chmod(0o755)
    return dest


def _die_with_parent() -> None:  # runs in the child: SIGTERM it if the launcher dies
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class TritonServer:
    """A tritonserver child process; ``with TritonServer(repo) as s: s.grpc_url``."""

    def __init__(self, model_repository, grpc_port=0, http_port=0, metrics_port=0, address="127.0.0.1",
                 log_path=None, ready_timeout=180.0, model_control_mode="none", extra_args=(),
                 client_kwargs=None):
        """``extra_args`` go to tritonserver as is (e.g. TLS flags); ``client_kwargs`` configure the
        readiness probe's ``tritonclient.grpc`` client to match (ssl, certificates, headers...)."""
        self.repository = Path(model_repository).resolve()
        self.address = address
        self.grpc_port = grpc_port or free_port(address)
        self.http_port = http_port or free_port(address)
        self.metrics_port = metrics_port or free_port(address)
        self.log_path = Path(log_path) if log_path else None
        self.ready_timeout = ready_timeout
        self.model_control_mode = model_control_mode
        self.extra_args = list(extra_args)
        self.client_kwargs = dict(client_kwargs or {})
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log = None

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(model_pythonpath() + inherited)
        system = shutil.which("tritonserver")
        cmd = [system] if system else [str(_pytriton_root() / "bin" / "tritonserver")]
        if not system:
            self._tmp = tempfile.TemporaryDirectory(prefix="opencc-cm-triton-")
            cmd.append(f"--backend-directory={build_python_backend(Path(self._tmp.name))}")
            libs = str(_pytriton_root().parent.parent / "nvidia_pytriton.libs")
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libs, env.get("LD_LIBRARY_PATH", "")) if p)
        cmd += [
            f"--model-repository={self.repository}",
            f"--model-control-mode={self.model_control_mode}",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            f"--grpc-address={self.address}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.address}", f"--http-port={self.http_port}",
            f"--metrics-address={self.address}", f"--metrics-port={self.metrics_port}",
            *self.extra_args,
        ]
        return cmd, env

    def start(self) -> "TritonServer":
        """Start and wait until ready. The server is tied to the calling *thread* (it gets SIGTERM
        when that thread ends, so it never outlives a crashed launcher): start it from a thread
        that lives as long as the server should."""
        cmd, env = self.command_and_env()
        self._log = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
                                        preexec_fn=_die_with_parent, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Until the server and every model in the repository index are READY."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.ready_timeout
        with grpcclient.InferenceServerClient(self.grpc_url, **self.client_kwargs) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.process.returncode}{self._log_tail()}")
                try:
                    if client.is_server_ready():
                        models = client.get_model_repository_index().models
                        if models and all(client.is_model_ready(m.name) for m in models):
                            return
                except InferenceServerException:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"tritonserver not ready after {self.ready_timeout}s{self._log_tail()}")

    def _log_tail(self, chars: int = 4000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n--- server log tail ---\n" + self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if still running; returns the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.process.returncode
            self.process = None
        if self._log:
            self._log.close()
            self._log = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_serving.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-repository", required=True)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--address", default="127.0.0.1", help="bind address (0.0.0.0 to serve the network)")
    p.add_argument("--ready-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = TritonServer(args.model_repository, args.grpc_port, args.http_port, args.metrics_port,
                          address=args.address, ready_timeout=args.ready_timeout)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    print(f"launch: ready grpc={server.grpc_url} http={args.address}:{server.http_port} "
          f"metrics={args.address}:{server.metrics_port}", flush=True)
    while not stop.wait(0.5):
        if server.process.poll() is not None:
            print(f"launch: tritonserver exited with {server.process.returncode}", file=sys.stderr)
            return server.stop() or 1
    code = server.stop()
    print(f"launch: stopped (exit code {code})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
