"""An int8 bundle served end to end: the tiny checkpoint exported with ``--precision int8``,
deployed on python-ort, served by a real Triton server, called through the client. The client
sees the published precision, and the served scores lie within the band the export reported
against the fp32 oracle."""
from __future__ import annotations

import numpy as np
import pytest

from opencc_cm_client import ClassifierClient
from opencc_cm_contract import IDS_ENSEMBLE, TEXT_ENSEMBLE
from opencc_cm_contract.bundle_format import ClassifierManifest
from opencc_cm_export.synthetic_checkpoint import calibration_prompts

from integration_support import deploy_tiny

# ONNX Runtime's kernels may round differently at another batch composition than the export's
# parity batches (the int8 rewrite quantizes activations per row and block, so no score depends
# on its neighbours beyond that rounding).
ROUNDING = 1e-4


@pytest.fixture(scope="module")
def int8_server(tiny_int8_bundle, tmp_path_factory):
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    passed = ClassifierManifest.read(tiny_int8_bundle).parity["passed"]
    extra = () if passed else ("--allow-unverified-bundle",)
    repo = deploy_tiny(tiny_int8_bundle, tmp_path_factory.mktemp("int8-repo") / "repo", *extra)
    with TritonServer(repo, ServerSettings(log_path=tmp_path_factory.mktemp("log") / "server.log", ready_timeout=120)) as server:
        yield server


def test_client_sees_int8_and_scores_within_the_reported_band(int8_server, tiny_int8_bundle, tiny_reference):
    spec = ClassifierManifest.read(tiny_int8_bundle)
    band = spec.parity["max_abs_score_diff"]
    texts = calibration_prompts()  # among the export's parity prompts
    oracle = tiny_reference.scores(texts)
    with ClassifierClient(int8_server.grpc_url, tokenizer=tiny_int8_bundle / "tokenizer.json") as client:
        for ensemble in (IDS_ENSEMBLE, TEXT_ENSEMBLE):
            assert client.server_info(ensemble).precision == "int8"
        served = np.array([[r.score for r in c.labels] for c in client.classify(texts)])
    diff = np.abs(served - oracle).max()
    assert 0 < diff <= band + ROUNDING, (diff, band)
