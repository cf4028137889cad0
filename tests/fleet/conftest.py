"""Fixtures for the fleet tests: rendered Kustomize overlays, and one real pod, run offline.

``rendered`` renders each overlay with ``kubectl kustomize`` (offline). ``pod`` plays the
cpu overlay's pod on this machine without Kubernetes: the toy bundle is deployed and packed
into a versioned archive, the rendered init container's command fetches it (from a file://
URL, sha256 checked), and the rendered Triton container's command and args start the real
pip-bundled tritonserver in the production configuration (TLS, HTTP off, admin key). Only
paths and port numbers are mapped to this machine; every flag is the manifest's own.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_support import FLEET, OVERLAYS, PathMap, container, one, render  # noqa: E402


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """The Secret opencc-cm-tls as the pod sees it (tls.crt, tls.key, ca.crt), with the SANs
    the Deployment's comment asks for (127.0.0.1: the probes and the launcher dial loopback;
    no wildcard address), made with trustme, and an unrelated CA for negative checks."""
    import trustme

    d = tmp_path_factory.mktemp("fleet-pki")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "opencc-cm.opencc-cm.svc", common_name="opencc-cm")
    cert.private_key_pem.write_to_path(str(d / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(d / "tls.crt"))
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    other.cert_pem.write_to_path(str(d / "other-ca.crt"))
    return d


@pytest.fixture(scope="session")
def pod(rendered, pki, tmp_path_factory):
    """The cpu overlay's pod, run offline (see the module docstring). Yields the mapped probe
    commands, the metrics URL, the gRPC URL, the launcher process and the archive's facts."""
    from model_repository_archive import pack
    from serving_calls import deploy_to
    from toy_bundle import make_toy_bundle
    from opencc_cm_serving.launch import free_port

    objects = rendered["cpu"]
    deployment = one(objects, "Deployment", "opencc-cm")
    d = tmp_path_factory.mktemp("fleet-pod")
    bundle = make_toy_bundle(d / "bundle")
    repo = deploy_to(bundle, d / "build" / "repository", "python-ort")
    archive = d / "store" / "opencc-cm-toy-v1-python-ort.tar.gz"
    sha256 = pack(repo, archive)

    admin = d / "admin"
    admin.mkdir()
    (admin / "admin-key").write_text(secrets.token_hex(32) + "\n")
    (admin / "admin-key").chmod(0o600)
    models, tmp = d / "models", d / "tmp"
    models.mkdir()
    tmp.mkdir()
    ports = {8000: free_port(), 8001: free_port(), 8002: free_port()}
    mapping = PathMap({"/etc/opencc-cm/tls": pki, "/etc/opencc-cm/admin": admin, "/models": models, "/tmp": tmp},
                      ports)

    # init container: the rendered command, env from the rendered ConfigMap with the URL/sha256
    # of this archive (an overlay would carry them the same way)
    init = container(deployment, "fetch-model-repository", init=True)
    cm_name = init["envFrom"][0]["configMapRef"]["name"]
    config_map = one(objects, "ConfigMap", cm_name)
    assert set(config_map["data"]) == {"MODEL_REPOSITORY_URL", "MODEL_REPOSITORY_SHA256"}
    env = {**os.environ, "MODEL_REPOSITORY_URL": archive.as_uri(), "MODEL_REPOSITORY_SHA256": sha256}
    script = {"/opt/opencc/bin/model_repository_archive.py": str(FLEET / "images" / "model_repository_archive.py")}
    init_cmd = mapping.command([script.get(a, a) for a in init["command"]])
    fetched = subprocess.run(init_cmd, env=env, capture_output=True, text=True, timeout=60)
    assert fetched.returncode == 0, fetched.stderr

    triton = container(deployment, "triton")
    cmd = mapping.command(triton["command"] + triton["args"])
    log = d / "launcher.log"
    out = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                            env={**env, "HOME": str(tmp)}, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "launch: ready" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"launcher (exit {proc.poll()}) not ready: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        probes = {kind: mapping.command(triton[kind]["exec"]["command"])
                  for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        yield SimpleNamespace(proc=proc, log=log, probes=probes, ports=ports, mapping=mapping, cmd=cmd,
                              grpc_url=f"127.0.0.1:{ports[8001]}", metrics_url=f"http://127.0.0.1:{ports[8002]}/metrics",
                              http_port=ports[8000], bundle=bundle, repository=models / "repository",
                              sha256=sha256, archive=archive, deployment=deployment, pki=pki,
                              admin_key=(admin / "admin-key").read_text().strip(), init_cmd=init_cmd, env=env)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
