"""Run a Triton server on a model repository and wait until every model is READY.

``python -m opencc_cm_serving.launch --model-repository DIR --grpc-port P --metrics-port P
[--address 127.0.0.1] [--allow-http --http-port P]`` prints the endpoints once ready and shuts
the server down cleanly on SIGINT/SIGTERM. Tests use the ``TritonServer`` context manager
(``ServerSettings`` says how it runs).

HTTP is off unless asked for (``--allow-http``, ``ServerSettings(http=True)``): tritonserver
2.51's HTTP frontend parses a JSON body recursively, and one deeply nested body crashes the
whole server (serving/README.md, "Threat model"). Clients use gRPC.

Binary: ``tritonserver`` from PATH (NGC image, its own backends), else the one bundled in
``nvidia-pytriton``. For the bundled one a temporary backend folder ``python/`` is built
(libtriton_python.so, triton_python_backend_utils.py, the stub for this Python's version)
and ``LD_LIBRARY_PATH`` gets ``nvidia_pytriton.libs``. ``PYTHONPATH`` lists our packages and
numpy/onnxruntime/tokenizers; each model.py puts those entries on ``sys.path`` itself
because the backend stub ignores PYTHONPATH. Models load eagerly (model-control-mode none).
``--production`` adds TLS and admin protocols behind a key (``production.py``).
It stops the server and exits 3 when a Python-backend stub dies (Triton neither restarts it nor
marks its model unready) and, with ``--canary-interval``, when a classifier no longer classifies.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_PACKAGES = ("opencc_cm_serving", "opencc_cm_contract", "numpy", "tokenizers")
OPTIONAL_PACKAGES = ("onnxruntime",  # only the python-ort encoder needs it
                     "opencc_cm_export", "torch", "transformers", "safetensors", "fla")  # python-torch


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


def path_without_venv_bins(path: str) -> str:
    """``PATH`` less the ``bin`` folders of virtual environments (a folder whose parent holds a
    ``pyvenv.cfg``), for the server and its Python stubs.

    The pip server's stub embeds the system's libpython and finds its standard library from
    the first ``python3`` on ``PATH``. From an activated venv that is the venv's interpreter, so
    the stub loaded pyenv's 3.11.7 standard library into Debian's 3.11.2 libpython and
    ``import ssl`` failed (undefined symbol ``_PyModule_Add``): every model importing
    transformers (python-torch) failed to load. Our packages reach the stubs through
    ``PYTHONPATH`` (:func:`model_pythonpath`), not through ``PATH``."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d).parent / "pyvenv.cfg").is_file())


def _pytriton_root() -> Path:
    """The ``tritonserver`` folder of the ``nvidia-pytriton`` wheel, found without importing
    ``pytriton`` (its ``__init__`` imports pyzmq, sh, typer..., which the server does not need
    and a bare machine may lack)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.origin:
        raise RuntimeError("no tritonserver on PATH and the nvidia-pytriton package is not installed "
                           "(pip install nvidia-pytriton==0.7.0)")
    return Path(spec.origin).resolve().parent / "tritonserver"


def bundled_server_problem() -> str | None:
    """Why the pip-bundled server cannot run Python-backend models with this interpreter, or
    None: the binary, the Python backend and a stub for this Python version must be there, and
    the stub's shared libraries (this Python's ``libpython``) must resolve."""
    try:
        root = _pytriton_root()
    except RuntimeError as exc:
        return str(exc)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    for path in (root / "bin" / "tritonserver", root / "backends" / "python" / "libtriton_python.so", stub):
        if not path.is_file():
            return f"{path} is missing (the bundled server has no Python-backend stub for Python {version}?)"
    ldd = shutil.which("ldd")
    if ldd:
        libs = str(root.parent.parent / "nvidia_pytriton.libs")
        env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(p for p in (libs, os.environ.get("LD_LIBRARY_PATH", "")) if p))
        out = subprocess.run([ldd, str(stub)], capture_output=True, text=True, env=env).stdout
        missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
        if missing:
            return f"the Python {version} backend stub needs {', '.join(missing)}, not found on this machine"
    return None


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


def end_process_group(pgid: int) -> None:
    """SIGKILL what is left of a stopped server's process group (it started in its own session,
    so the group holds its Python-backend stubs and nothing else). A stub whose server died
    without stopping it would otherwise keep its memory until it notices."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# gRPC keepalive. Triton's defaults treat a client ping as "bad" when it comes less than 5 minutes
# after the previous one while no data flows (and any ping while no call is open), and answer
# the third bad ping with GOAWAY "too_many_pings": every call on that connection fails
# UNAVAILABLE. A client pinging every 30 s therefore lost any call longer than ~90 s (an
# 8,192-token row on a CPU encoder takes that) and retried it, computing it twice. Here pings
# are welcome from 1 s apart, with or without calls; a ping flood still ends in GOAWAY.
GRPC_PING_POLICY = (
    "--grpc-keepalive-permit-without-calls=1",
    "--grpc-http2-min-recv-ping-interval-without-data=1000",
)


STUB_NAME = "triton_python_backend_stub"


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from ``/proc/<pid>/stat``; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        return state, int(ppid)
    except (OSError, ValueError):
        return None


def python_stubs(server_pid: int) -> dict[int, str]:
    """``{pid: model name}`` of the Python-backend stub processes that tritonserver ``server_pid``
    runs (Linux ``/proc``). A stub's command line is ``<stub> <repository>/<model>/<version>/<file>.py ...``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (_proc_state(int(entry.name)) or ("", -1))[1] != server_pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and Path(os.fsdecode(argv[0])).name == STUB_NAME:
            out[int(entry.name)] = Path(os.fsdecode(argv[1])).parent.parent.name
    return out


def dead_stubs(server_pid: int, stubs: dict[int, str]) -> list[str]:
    """Models of ``stubs`` whose stub process is gone (or a zombie): Triton 2.51 neither restarts
    a dead stub nor marks its model unready, so every later request to it fails."""
    dead = []
    for pid, model in stubs.items():
        state = _proc_state(pid)
        if state is None or state[0] in "ZX" or state[1] != server_pid:
            dead.append(f"{model} (stub pid {pid})")
    return dead


# Triton keeps up to 8 gRPC inference request/response objects for reuse (its default), each
# keeping the capacity of the largest request it carried: a few gzip-compressed requests that
# inflate to hundreds of MiB (refused by the models) left that much in tritonserver for good.
# Without the pool each object is freed after its call (BENCHMARKS.md, "Memory after hostile input").
GRPC_REQUEST_POOL = ("--grpc-infer-allocation-pool-size=0",)

SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class ServerSettings:
    """How ``TritonServer`` runs tritonserver; the launcher's command line and the tests build it.

    Where it listens (port 0: a free port on ``address``): ``grpc_port``, ``metrics_port``, and
    Triton's HTTP endpoint only with ``http`` (off by default: see the module docstring; without
    it ``http_port`` is ignored). ``log_path``: the server's log is appended there (else it goes
    to this console); a failed start then quotes its ``failed to load`` lines. ``ready_timeout``:
    seconds until the server and every model must be READY. ``extra_args`` go to tritonserver as
    is, after the defaults (e.g. TLS flags); ``client_kwargs`` configure the readiness probe's
    ``tritonclient.grpc`` client to match (ssl, certificates...); ``probe_headers`` go with each
    probe call (e.g. the key of a restricted protocol, since the probe lists the repository
    index). ``opencc_cm_serving.production`` sets those three and ``model_control_mode``."""

    address: str = "127.0.0.1"
    grpc_port: int = 0
    metrics_port: int = 0
    http: bool = False
    http_port: int = 0
    log_path: Path | None = None
    ready_timeout: float = 180.0
    model_control_mode: str = "none"
    extra_args: Sequence[str] = ()
    client_kwargs: Mapping[str, object] = field(default_factory=dict)
    probe_headers: Mapping[str, str] | None = None


class TritonServer:
    """A tritonserver child process; ``with TritonServer(repo, ServerSettings(log_path=...)) as s: s.grpc_url``."""

    def __init__(self, model_repository, settings: ServerSettings | None = None):
        """``grpc_port``, ``metrics_port`` and ``http_port`` (None unless HTTP is on) are the ports
        it listens on: the settings' own, or free ones picked here."""
        self.repository = Path(model_repository).resolve()
        self.settings = settings = settings or ServerSettings()
        self.grpc_port = settings.grpc_port or free_port(settings.address)
        self.http_port = (settings.http_port or free_port(settings.address)) if settings.http else None
        self.metrics_port = settings.metrics_port or free_port(settings.address)
        # The Python backend names each stub's /dev/shm region <prefix><uuid>. A prefix of this
        # server's own lets stop() remove the regions a dead stub or a killed server leaves behind.
        self.shm_prefix = f"opencc_cm_{os.getpid()}_{secrets.token_hex(6)}_"
        self.log_path = Path(settings.log_path) if settings.log_path else None
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log = None
        self._log_offset = 0

    @property
    def grpc_url(self) -> str:
        """Where this process reaches the server: loopback when it listens on every address
        (a certificate then needs ``IP:127.0.0.1``, not the wildcard)."""
        dial = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}.get(self.settings.address, self.settings.address)
        return f"{dial}:{self.grpc_port}"

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env["PATH"] = path_without_venv_bins(env.get("PATH", ""))
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
            f"--model-control-mode={self.settings.model_control_mode}",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            f"--grpc-address={self.settings.address}", f"--grpc-port={self.grpc_port}",
            *([f"--http-address={self.settings.address}", f"--http-port={self.http_port}"] if self.settings.http
              else ["--allow-http=false"]),
            f"--metrics-address={self.settings.address}", f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *GRPC_PING_POLICY,
            *GRPC_REQUEST_POOL,
            *self.settings.extra_args,
        ]
        return cmd, env

    def start(self) -> TritonServer:
        """Start and wait until ready. The server is tied to the calling *thread* (it gets SIGTERM
        when that thread ends, so it never outlives a crashed launcher): start it from a thread
        that lives as long as the server should."""
        cmd, env = self.command_and_env()
        self._log_offset = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
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

        deadline = time.monotonic() + self.settings.ready_timeout
        not_ready = ""
        with grpcclient.InferenceServerClient(self.grpc_url, **self.settings.client_kwargs) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.process.returncode}"
                                       f"{self._load_failures()}{self._log_tail()}")
                try:
                    headers = dict(self.settings.probe_headers) if self.settings.probe_headers else None
                    if client.is_server_ready(headers=headers):
                        models = client.get_model_repository_index(headers=headers).models
                        if models and all(client.is_model_ready(m.name, headers=headers) for m in models):
                            return
                    else:
                        models = client.get_model_repository_index(headers=headers).models
                    not_ready = "; not ready: " + ", ".join(
                        f"{m.name} {m.state or 'not loaded'}" + (f" ({m.reason})" if m.reason else "")
                        for m in models if m.state != "READY")
                except InferenceServerException as exc:
                    not_ready = f"; probe: {exc.message() or exc}"
                time.sleep(0.2)
        raise TimeoutError(f"tritonserver not ready after {self.settings.ready_timeout}s{not_ready}"
                           f"{self._load_failures()}{self._log_tail()}")

    def _load_failures(self) -> str:
        """The server log's ``failed to load`` lines: why a model did not load, first in errors."""
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            text = log.read().decode("utf-8", errors="replace")
        lines = [line.split("] ", 1)[-1].strip().strip('"')[:600]
                 for line in text.splitlines() if "failed to load" in line]
        return ("\n" + "\n".join(dict.fromkeys(lines))) if lines else ""

    def _log_tail(self, chars: int = 4000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n--- server log tail ---\n" + self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if still running; then end what the server left behind (stubs
        still alive in its process group, its stubs' /dev/shm regions). Returns the exit code."""
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
            end_process_group(self.process.pid)
            self.process = None
        self.remove_shm_regions()
        if self._log:
            self._log.close()
            self._log = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def shm_regions(self) -> list[Path]:
        """The /dev/shm regions of this server's Python-backend stubs (named with ``shm_prefix``)."""
        return sorted(SHM_DIR.glob(self.shm_prefix + "*"))

    def remove_shm_regions(self) -> list[Path]:
        """Unlink this server's stub regions; call once the server and its stubs are gone. The
        backend removes a region when its stub ends cleanly; a killed stub's region, or every
        region of a killed server, stays in /dev/shm (memory) until unlinked."""
        removed = []
        for path in self.shm_regions():
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_serving.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-repository", required=True)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--allow-http", action="store_true",
                   help="serve Triton's HTTP endpoint too (off by default: tritonserver 2.51 crashes on one deeply "
                        "nested JSON body; serving/README.md, threat model); with --production the admin APIs "
                        "there need the key")
    p.add_argument("--http-port", type=int, help="HTTP port, with --allow-http (default 8000)")
    p.add_argument("--address", default="127.0.0.1", help="bind address (0.0.0.0 to serve the network)")
    p.add_argument("--ready-timeout", type=float, default=600.0)
    p.add_argument("--log-file", help="append the server's log here (else it goes to this console); "
                                      "a failed start then quotes the log's 'failed to load' lines")
    prod = p.add_argument_group("production (opencc_cm_serving.production)")
    prod.add_argument("--production", action="store_true",
                      help="TLS on gRPC, admin protocols behind a key, model control off")
    prod.add_argument("--tls-cert", help="server certificate (PEM)")
    prod.add_argument("--tls-key", help="server private key (PEM)")
    prod.add_argument("--tls-ca", help="CA certificate: verifies the server for the readiness probe; "
                                       "with --tls-mutual, the CA client certificates must chain to")
    prod.add_argument("--tls-mutual", action="store_true", help="require client certificates (mTLS)")
    prod.add_argument("--admin-key-file", help="file holding the admin key (else $OPENCC_CM_ADMIN_KEY)")
    prod.add_argument("--admin-header", default="admin-key",
                      help="gRPC clients send it as metadata 'triton-grpc-protocol-<header>'")
    watch = p.add_argument_group("liveness (readiness does not see a dead Python-backend stub)",
                                 "the launcher stops the server and exits 3 as soon as a Python-backend stub dies; "
                                 "the canary classifies one text with every classifier in the repository")
    watch.add_argument("--canary-interval", type=float, default=0.0,
                       help="seconds between canary classifications; 0 = off")
    watch.add_argument("--canary-failures", type=int, default=3,
                       help="stop the server and exit 3 after this many failed canaries in a row")
    args = p.parse_args(argv)
    if args.http_port is not None and not args.allow_http:
        print(f"launch: --http-port {args.http_port} is not served: HTTP is off unless --allow-http", file=sys.stderr)
    settings = ServerSettings(address=args.address, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                              http=args.allow_http, http_port=args.http_port or 8000, log_path=args.log_file,
                              ready_timeout=args.ready_timeout)
    if args.production:
        from .production import ProductionConfig, ProductionConfigError

        try:
            production = dict(server_cert=args.tls_cert, server_key=args.tls_key, ca_cert=args.tls_ca,
                              mutual=args.tls_mutual, admin_header=args.admin_header, allow_http=args.allow_http)
            if not (args.tls_cert and args.tls_key):
                raise ProductionConfigError("--production needs --tls-cert and --tls-key")
            if args.admin_key_file:
                config = ProductionConfig.from_files(admin_key_file=args.admin_key_file, **production)
            else:
                config = ProductionConfig(admin_key=os.environ.get("OPENCC_CM_ADMIN_KEY", ""), **production)
        except ProductionConfigError as exc:
            print(f"launch: production config: {exc}", file=sys.stderr)
            return 2
        settings = config.server_settings(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = TritonServer(args.model_repository, settings)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    stubs = python_stubs(server.process.pid)  # at READY, before "ready" is printed (a zombie shows no command line)
    http = f"{args.address}:{server.http_port}" if settings.http else "off"
    print(f"launch: ready grpc={server.grpc_url} http={http} "
          f"metrics={args.address}:{server.metrics_port}" + (" (production)" if args.production else ""), flush=True)
    if settings.http:
        print("launch: HTTP is on: tritonserver 2.51's HTTP frontend crashes on one deeply nested JSON body; "
              "put in front of it only a proxy that refuses such bodies (serving/README.md, threat model)",
              flush=True)
    from .ingress import repository_request_cap

    cap = repository_request_cap(args.model_repository)
    if cap:
        print(f"launch: tritonserver 2.51 has no received-message-size limit (gRPC takes up to 2 GiB, gzip "
              f"inflated to that size): the ingress must refuse inference requests above {cap} bytes after "
              f"decompression (this repository's largest valid request; serving/README.md, threat model)", flush=True)
    from .canary import canary
    from .ingress import repository_classifiers

    # Every classifier in the repository is canaried (each "<prefix>classify_text"), and every
    # Python-backend stub is watched: a dead stub is final in Triton 2.51 (no restart, the model
    # stays READY), so the launcher stops the server (exit 3) for its supervisor to restart it.
    prefixes = repository_classifiers(args.model_repository) or [""]
    failures, next_canary = 0, time.monotonic() + args.canary_interval
    while not stop.wait(0.5):
        if server.process.poll() is not None:
            print(f"launch: tritonserver exited with {server.process.returncode}", file=sys.stderr)
            return server.stop() or 1
        dead = dead_stubs(server.process.pid, stubs)
        if dead:
            print(f"launch: Python-backend stub died: {', '.join(dead)}; Triton does not restart it and keeps the "
                  "model READY while every request to it fails INTERNAL. Stopping the server (a supervisor should "
                  "restart it)", file=sys.stderr, flush=True)
            server.stop()
            return 3
        if args.canary_interval > 0 and time.monotonic() >= next_canary:
            ok, why = canary(server.grpc_url, settings.client_kwargs, timeout_s=max(5.0, args.canary_interval),
                             prefixes=prefixes)
            failures = 0 if ok else failures + 1
            if failures:
                print(f"launch: canary failed ({failures}/{args.canary_failures}): {why}", file=sys.stderr, flush=True)
            if failures >= args.canary_failures:
                print("launch: stopping the server: it no longer classifies (a supervisor should restart it)",
                      file=sys.stderr, flush=True)
                server.stop()
                return 3
            next_canary = time.monotonic() + args.canary_interval
    code = server.stop()
    print(f"launch: stopped (exit code {code})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
