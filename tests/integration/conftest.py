"""End to end: the tiny generated checkpoint, exported, deployed and served by a real Triton
server on loopback, called through the client library, and compared with the reference oracle."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from integration_support import SERVED_TARGETS, deploy_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_profiles(tiny_bundle, tmp_path_factory) -> Path:
    labels = json.loads((tiny_bundle / "classifier.json").read_text())["labels"]
    path = tmp_path_factory.mktemp("profiles") / "profiles.json"
    path.write_text(json.dumps({"profiles": {"nothing": {label: 1.0 for label in labels},
                                             "everything": {label: 0.0 for label in labels}}}))
    return path


@pytest.fixture(scope="session")
def tiny_server(tiny_bundle, tiny_profiles, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    repo = deploy_tiny(tiny_bundle, tmp_path_factory.mktemp("tiny-repo") / "repo", "--profiles", str(tiny_profiles))
    with TritonServer(repo, ServerSettings(log_path=tmp_path_factory.mktemp("log") / "server.log", ready_timeout=120)) as server:
        yield server


@pytest.fixture(scope="session", params=list(SERVED_TARGETS))
def served_target(request):
    """``(target, server)`` for each encoder target the pip server runs: the fidelity tests run
    once per target (python-ort reuses ``tiny_server``)."""
    if request.param == "python-ort":
        yield request.param, request.getfixturevalue("tiny_server")
        return
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    tmp = request.getfixturevalue("tmp_path_factory")
    repo = deploy_tiny(request.getfixturevalue("tiny_bundle"), tmp.mktemp(f"{request.param}-repo") / "repo",
                       "--profiles", str(request.getfixturevalue("tiny_profiles")), target=request.param)
    with TritonServer(repo, ServerSettings(log_path=tmp.mktemp("log") / f"server-{request.param}.log", ready_timeout=180)) as server:
        yield request.param, server
