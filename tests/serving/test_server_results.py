"""Scores through both ensembles equal the reference; batching never changes a result."""
from __future__ import annotations

import numpy as np
import pytest

from opencc_cm_contract import FLAGGED, LABEL_FLAGS, SCORES, TOKEN_COUNT

from serving_calls import classify_rows, classify_text, expected, prompts

ATOL = 1e-5


@pytest.fixture(scope="module")
def texts(tokenizer, spec):
    return prompts(tokenizer, spec.max_tokens, 24)


@pytest.fixture(scope="module")
def rows(tokenizer, texts):
    return [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]


def check(result, ref, rows):
    assert np.abs(result[SCORES] - ref[SCORES]).max() <= ATOL
    assert np.array_equal(result[LABEL_FLAGS], ref[LABEL_FLAGS])
    assert np.array_equal(result[FLAGGED], ref[FLAGGED])
    assert result[TOKEN_COUNT].ravel().tolist() == [len(r) for r in rows]


def test_text_ensemble_matches_reference(client, spec, texts, rows, reference_logits):
    assert len({len(r) for r in rows}) > 8, "prompts should span many lengths"
    result = classify_text(client, texts)
    check(result, expected(reference_logits(rows), spec.thresholds), rows)


def test_ids_ensemble_matches_reference(client, spec, rows, reference_logits):
    result = classify_rows(client, rows, spec.pad_token_id)
    check(result, expected(reference_logits(rows), spec.thresholds), rows)


def test_extra_client_padding_changes_nothing(client, spec, rows, reference_logits):
    result = classify_rows(client, rows[:5], spec.pad_token_id, width=spec.max_tokens + 7)
    check(result, expected(reference_logits(rows[:5]), spec.thresholds), rows[:5])


def test_mixed_batch_equals_one_by_one(client, texts):
    batch = classify_text(client, texts)
    for i, text in enumerate(texts):
        single = classify_text(client, [text])
        assert np.abs(single[SCORES][0] - batch[SCORES][i]).max() <= 1e-6
        assert np.array_equal(single[LABEL_FLAGS][0], batch[LABEL_FLAGS][i])


def test_text_equals_ids(client, spec, texts, rows):
    by_text = classify_text(client, texts)
    by_ids = classify_rows(client, rows, spec.pad_token_id)
    assert np.abs(by_text[SCORES] - by_ids[SCORES]).max() <= 1e-6
    for name in (LABEL_FLAGS, FLAGGED, TOKEN_COUNT):
        assert np.array_equal(by_text[name], by_ids[name])


def test_threshold_profiles_per_request(client, spec, texts, rows, reference_logits):
    logits = reference_logits(rows)
    assert not classify_text(client, texts, "nothing")[FLAGGED].any()
    assert classify_text(client, texts, "everything")[LABEL_FLAGS].all()
    mixed = classify_text(client, texts, "mixed")
    alternating = [float(i % 2) for i in range(spec.num_labels)]
    assert np.array_equal(mixed[LABEL_FLAGS], expected(logits, alternating)[LABEL_FLAGS])
    default = classify_text(client, texts, "default")
    check(default, expected(logits, spec.thresholds), rows)
    assert np.array_equal(classify_text(client, texts)[LABEL_FLAGS], default[LABEL_FLAGS])
