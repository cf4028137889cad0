"""Fixtures for the serving tests: a deploy bundle, a filled repository, a real Triton server.

``bundle_dir`` is the toy bundle (toy_bundle.py) unless ``OPENCC_CM_BUNDLE`` names a real
exported bundle folder; ``reference_logits`` then falls back to ONNX Runtime run row by row
on the unpadded ids. The server is the real tritonserver, bound to 127.0.0.1 on free ports,
one per test session.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from opencc_cm_contract import SCORES

from opencc_cm_serving.bundle import load_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper modules, whatever the import mode

from serving_calls import deploy_native_steps, deploy_to  # noqa: E402
from toy_bundle import make_toy_bundle, toy_logits  # noqa: E402


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    real = os.environ.get("OPENCC_CM_BUNDLE")
    return Path(real) if real else make_toy_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def spec(bundle_dir):
    return load_classifier(bundle_dir / "classifier.json")


@pytest.fixture(scope="session")
def tokenizer(bundle_dir):
    from opencc_cm_serving.text import load_tokenizer

    return load_tokenizer(bundle_dir / "tokenizer.json")


@pytest.fixture(scope="session")
def reference_logits(bundle_dir):
    """``f(rows: list[list[int]]) -> float64 [rows, labels]`` on unpadded rows."""
    if not os.environ.get("OPENCC_CM_BUNDLE"):
        return lambda rows: toy_logits(bundle_dir, rows)
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(rows):
        out = []
        for row in rows:
            ids = np.asarray([row], dtype=np.int64)
            out.append(session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
        return np.asarray(out, dtype=np.float64)

    return run


@pytest.fixture(scope="session")
def profiles_file(tmp_path_factory, spec) -> Path:
    """Profiles ``everything`` (all 0.0), ``nothing`` (all 1.0) and ``mixed`` (0.0 / 1.0 alternating)."""
    labels = spec.labels
    profiles = {
        "everything": {label: 0.0 for label in labels},
        "nothing": {label: 1.0 for label in labels},
        "mixed": {label: float(i % 2) for i, label in enumerate(labels)},
    }
    path = tmp_path_factory.mktemp("profiles") / "profiles.json"
    path.write_text(json.dumps({"profiles": profiles}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def repository(tmp_path_factory, bundle_dir, profiles_file) -> Path:
    """The python-ort classifier, and beside it the native targets' ids_preprocess and calibration
    (the tests call each composing model directly)."""
    repo = deploy_to(bundle_dir, tmp_path_factory.mktemp("deploy") / "repo", "python-ort",
                     "--profiles", str(profiles_file))
    return deploy_native_steps(bundle_dir, repo, "--profiles", str(profiles_file))


@pytest.fixture(scope="session")
def server(repository, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    log = tmp_path_factory.mktemp("server") / "tritonserver.log"
    with TritonServer(repository, ServerSettings(log_path=log, ready_timeout=120)) as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


@pytest.fixture
def stays_ready(client):
    """After the test: the server is ready and still classifies (a bad request sank nothing)."""
    from serving_calls import classify_text

    yield
    assert client.is_server_ready()
    assert classify_text(client, ["still serving"])[SCORES].shape[0] == 1
