"""long_input_policy=windows: a long text becomes overlapping windows (more encoder rows than
texts) and comes back as one row per text with the max score per label."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import FLAGGED, LABEL_FLAGS, SCORES, TEXT_ENSEMBLE, TOKEN_COUNT
from opencc_cm_serving.text import split_windows

from serving_calls import classify_rows, classify_text, expected, expected_from_scores, served, text_inputs


@pytest.fixture(scope="module")
def windows_client(tmp_path_factory, bundle_dir):
    with served(bundle_dir, tmp_path_factory.mktemp("windows"), "--long-input-policy", "windows",
                native_steps=True) as (_, client):
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
    # the text's own tokens (overlaps once), not the tokens the windows scored
    assert sum(len(w) for w in windows) > len(ids)
    assert result[TOKEN_COUNT].ravel().tolist() == [len(short_ids := tokenizer.encode(short, add_special_tokens=False).ids),
                                                     len(ids), len(short_ids)]
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


def test_calibration_direct_call_on_a_windows_server_only_folds_real_windows(windows_client, spec):
    """Under windows, folding is legitimate only for full windows that start where the
    tokenizer starts them; three short rows folded into one text are refused."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    from opencc_cm_contract import ATTENTION_MASK, CALIBRATION_MODEL, LOGITS, TEXT_ROW, WINDOW_START

    def call(lengths, text_row, starts):
        width = max(lengths)
        mask = np.array([[1] * n + [0] * (width - n) for n in lengths], np.int64)
        arrays = {LOGITS: np.zeros((len(lengths), spec.num_labels), np.float32), ATTENTION_MASK: mask,
                  TEXT_ROW: np.array(text_row, np.int64)[:, None], WINDOW_START: np.array(starts, np.int64)[:, None]}
        inputs = []
        for name, array in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), "FP32" if name == LOGITS else "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return windows_client.infer(CALIBRATION_MODEL, inputs)

    m, step = spec.max_tokens, spec.max_tokens - spec.max_tokens // 8
    assert call([m, m, 3], [0, 0, 1], [0, step, 0]).as_numpy(TOKEN_COUNT).ravel().tolist() == [m + step, 3]
    for lengths, starts, problem in (([3, 3, 3], [0, 0, 0], "windows of a long text have exactly"),
                                     ([m, m, m], [0, 0, 0], "starts 0 tokens after"),
                                     ([m, m, m], [0, step + 1, 2 * step], f"expected 1 to {step}")):
        with pytest.raises(InferenceServerException) as info:
            call(lengths, [0, 0, 0], starts)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and problem in info.value.message()
