"""End to end: the tiny generated checkpoint, exported, deployed and served by a real Triton
server on loopback, called through the client library, and compared with the reference oracle."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencc_cm_serving.deploy import main as deploy_main

TEMPLATES = Path(__file__).resolve().parents[2] / "model_repository"
MAX_BATCH = 8  # small, so that the client's splitting is exercised with few prompts


def deploy_tiny(bundle: Path, out: Path, *extra: str) -> Path:
    assert deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(out),
                        "--target", "python-ort", "--max-batch-size", str(MAX_BATCH), *extra]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_profiles(tiny_bundle, tmp_path_factory) -> Path:
    labels = json.loads((tiny_bundle / "classifier.json").read_text())["labels"]
    path = tmp_path_factory.mktemp("profiles") / "profiles.json"
    path.write_text(json.dumps({"profiles": {"nothing": {label: 1.0 for label in labels},
                                             "everything": {label: 0.0 for label in labels}}}))
    return path


@pytest.fixture(scope="session")
def tiny_server(tiny_bundle, tiny_profiles, tmp_path_factory):
    from opencc_cm_serving.launch import TritonServer

    repo = deploy_tiny(tiny_bundle, tmp_path_factory.mktemp("tiny-repo") / "repo", "--profiles", str(tiny_profiles))
    with TritonServer(repo, log_path=tmp_path_factory.mktemp("log") / "server.log", ready_timeout=120) as server:
        yield server
