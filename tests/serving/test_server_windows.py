"""long_input_policy=windows: a long text becomes overlapping windows (more encoder rows than
texts) and comes back as one row per text with the max score per label."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import FLAGGED, LABEL_FLAGS, SCORES, TEXT_ENSEMBLE, TOKEN_COUNT
from opencc_cm_serving.launch import TritonServer
from opencc_cm_serving.text import split_windows

from serving_calls import classify_rows, classify_text, deploy_to, expected, expected_from_scores, text_inputs


@pytest.fixture(scope="module")
def windows_client(tmp_path_factory, bundle_dir):
    import tritonclient.grpc as grpcclient

    repo = deploy_to(bundle_dir, tmp_path_factory.mktemp("windows") / "repo", "python-ort",
                     "--long-input-policy", "windows")
    with TritonServer(repo, log_path=repo.parent / "tritonserver.log", ready_timeout=120) as server:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            yield client


def test_long_text_scores_max_over_windows(windows_client, spec, tokenizer, reference_logits):
    long_text = " ".join(["the model escalate review cyber café 中文"] * 30)
    short = "a short prompt"
    ids = tokenizer.encode(long_text, add_special_tokens=False).ids
    windows = split_windows(ids, spec.max_tokens, spec.max_tokens // 8)
    assert len(windows) >= 3
    result = classify_text(windows_client, [short, long_text, short])
    per_window = expected(reference_logits(windows), spec.thresholds)[SCORES]
    ref = expected_from_scores(per_window.max(axis=0, keepdims=True), spec.thresholds)
    assert result[SCORES].shape == (3, spec.num_labels)
    assert np.abs(result[SCORES][1] - ref[SCORES][0]).max() <= 1e-5
    assert np.array_equal(result[LABEL_FLAGS][1], ref[LABEL_FLAGS][0])
    assert result[TOKEN_COUNT].ravel().tolist()[1] == sum(len(w) for w in windows)
    short_ids = tokenizer.encode(short, add_special_tokens=False).ids
    short_ref = expected(reference_logits([short_ids]), spec.thresholds)
    for row in (0, 2):
        assert np.abs(result[SCORES][row] - short_ref[SCORES][0]).max() <= 1e-5
        assert result[FLAGGED][row, 0] == short_ref[FLAGGED][0, 0]


def test_too_many_windows_rejected(windows_client):
    text = "the model " * 800
    with pytest.raises(InferenceServerException) as info:
        windows_client.infer(TEXT_ENSEMBLE, text_inputs([text] * 3))
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "above max_batch_size 64" in info.value.message()
    assert windows_client.is_server_ready()


def test_ids_path_still_rejects_long_rows(windows_client, spec):
    with pytest.raises(InferenceServerException, match="above max_tokens"):
        classify_rows(windows_client, [[1] * (spec.max_tokens + 1)], spec.pad_token_id)
