"""A real Triton server serving both classifiers (content moderation, and the jailbreak detector
under ``jailbreak_``), each with the threshold profiles ``nothing`` (no label can fire) and
``everything`` (every label fires), for the OpenCC-compatible service's tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "integration")]

from http_service_support import JAILBREAK  # noqa: E402
from integration_support import deploy_tiny  # noqa: E402


def forcing_profiles(bundle: Path, out: Path) -> Path:
    labels = json.loads((bundle / "classifier.json").read_text())["labels"]
    out.write_text(json.dumps({"profiles": {"nothing": {label: 1.0 for label in labels},
                                            "everything": {label: 0.0 for label in labels}}}))
    return out


@pytest.fixture(scope="session")
def two_classifier_repo(tiny_bundle, tiny_jailbreak_bundle, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("opencc-http")
    repo = deploy_tiny(tiny_bundle, tmp / "repo", "--profiles", str(forcing_profiles(tiny_bundle, tmp / "cm.json")))
    deploy_tiny(tiny_jailbreak_bundle, repo, "--model-prefix", JAILBREAK,
                "--profiles", str(forcing_profiles(tiny_jailbreak_bundle, tmp / "jb.json")))
    return repo


@pytest.fixture(scope="session")
def both(two_classifier_repo, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    log = tmp_path_factory.mktemp("opencc-http-log") / "server.log"
    with TritonServer(two_classifier_repo, ServerSettings(log_path=log, ready_timeout=180)) as server:
        yield server
