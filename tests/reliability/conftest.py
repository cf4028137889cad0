"""Fixtures for the reliability tests (overload, faults, bad input at scale, production config).

They reuse the serving tests' toy bundle (tests/serving/toy_bundle.py: fast, with an exact
numpy reference) and run the real tritonserver on 127.0.0.1. ``rel_server`` is one server for
the session with a deliberately small queue (``QUEUE_SIZE`` per model) so that bursts overflow;
fault tests start their own servers. Every request loop is bounded in count and time.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serving"))  # toy_bundle, serving_calls
sys.path.insert(0, str(HERE))                     # reliability_tools

from reliability_tools import PROFILES, QUEUE_SIZE, Reference  # noqa: E402
from serving_calls import deploy_to  # noqa: E402
from toy_bundle import make_toy_bundle  # noqa: E402


@pytest.fixture(scope="session")
def rel_bundle(tmp_path_factory) -> Path:
    return make_toy_bundle(tmp_path_factory.mktemp("rel-bundle"))


@pytest.fixture(scope="session")
def rel_spec(rel_bundle):
    from opencc_cm_serving.bundle import load_classifier

    return load_classifier(rel_bundle / "classifier.json")


@pytest.fixture(scope="session")
def rel_profiles_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rel-profiles") / "profiles.json"
    path.write_text(json.dumps({"profiles": PROFILES}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def reference(rel_bundle, rel_spec) -> Reference:
    from opencc_cm_serving.text import load_tokenizer

    profiles = {name: tuple(values[label] for label in rel_spec.labels) for name, values in PROFILES.items()}
    return Reference(rel_bundle, rel_spec, load_tokenizer(rel_bundle / "tokenizer.json"), profiles)


@pytest.fixture(scope="session")
def rel_repository(tmp_path_factory, rel_bundle, rel_profiles_file) -> Path:
    return deploy_to(rel_bundle, tmp_path_factory.mktemp("rel-deploy") / "repo", "python-ort",
                     "--profiles", str(rel_profiles_file), "--max-queue-size", str(QUEUE_SIZE))


@pytest.fixture(scope="session")
def rel_server(rel_repository, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    log = tmp_path_factory.mktemp("rel-server") / "tritonserver.log"
    with TritonServer(rel_repository, ServerSettings(log_path=log, ready_timeout=120)) as running:
        yield running


@pytest.fixture(scope="session")
def rel_client(rel_server):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(rel_server.grpc_url) as c:
        yield c
