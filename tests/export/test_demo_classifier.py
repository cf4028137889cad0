"""The demo classifier: its synthetic corpus, its deterministic training, and what it learned.

The trained checkpoint (session fixture ``demo_checkpoint``, about two minutes of CPU) must load
with the strict loader and classify the held-out test split clearly better than chance, and the
prompts ``make demo`` shows must get the verdicts the demo promises.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from opencc_cm_contract import HARM_CATEGORIES
from opencc_cm_export import demo_corpus
from opencc_cm_export.checkpoint_format import read_checkpoint
from opencc_cm_export.demo_training import DemoTraining, calibrate_thresholds, train_demo_checkpoint


def test_corpus_covers_every_category_and_severity_in_every_split():
    corpus = demo_corpus.build_corpus()
    cells = Counter((s.topic, s.severity, s.split) for s in corpus)
    for topic in HARM_CATEGORIES:
        for severity in demo_corpus.SEVERITIES:
            scenarios = demo_corpus.SCENARIOS[topic][severity]
            assert len(scenarios) >= 6, (topic, severity)
            for split in demo_corpus.SPLITS:  # at least one scenario, in all its wordings
                assert cells[(topic, severity, split)] >= demo_corpus.VARIANTS_PER_SCENARIO, (topic, severity, split)
    for split in demo_corpus.SPLITS:
        assert cells[("", demo_corpus.EVERYDAY, split)] >= 5 * demo_corpus.VARIANTS_PER_SCENARIO, split
    for s in corpus:
        expected = s.topic if s.severity in demo_corpus.HARMFUL_SEVERITIES else demo_corpus.BENIGN
        assert s.category == expected, s


def test_corpus_and_split_are_deterministic_and_disjoint():
    first, second = demo_corpus.build_corpus(), demo_corpus.build_corpus()
    assert first == second
    texts = {name: {s.text for s in demo_corpus.split(name)} for name in demo_corpus.SPLITS}
    assert sum(len(t) for t in texts.values()) == len({s.text for s in first}) == len(first)  # no duplicate
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]
    per_scenario = Counter((s.scenario, s.split) for s in first)  # stratified: 4 / 1 / 1 wordings each
    for scenario in {s.scenario for s in first}:
        assert [per_scenario[(scenario, name)] for name in demo_corpus.SPLITS] == [4, 1, 1], scenario
    with pytest.raises(ValueError, match="unknown split"):
        demo_corpus.split("dev")


def test_variants_vary_structure_and_length():
    phrase = demo_corpus.SCENARIOS["Cyber"]["harmful"][0]
    texts = demo_corpus.variants(phrase)
    assert len(set(texts)) == demo_corpus.VARIANTS_PER_SCENARIO
    assert all(phrase.lower() in t.lower() for t in texts)
    assert len({len(t) for t in texts}) >= 4


def test_calibration_keeps_the_target_recall_on_a_two_decimal_grid():
    rng = np.random.default_rng(0)
    categories = [c for c in HARM_CATEGORIES for _ in range(20)] + ["Benign"] * 40
    scores = rng.uniform(0.0, 1.0, size=(len(categories), len(HARM_CATEGORIES))).astype(np.float32)
    thresholds = calibrate_thresholds(scores, categories, 0.9)
    cats = np.array(categories)
    for j, label in enumerate(HARM_CATEGORIES):
        t = thresholds[label]
        assert round(t, 2) == t and 0.01 <= t <= 0.99
        own = scores[cats == label, j]
        assert (own >= t).mean() >= 0.9
        assert (own >= t + 0.01).mean() < 0.9 or t == 0.99  # the highest such threshold on the grid


def test_training_is_deterministic(tmp_path):
    cfg = DemoTraining(base_epochs=1, adapter_epochs=1, max_train_samples=64)
    a = train_demo_checkpoint(tmp_path / "a", cfg, progress=lambda *_: None)
    b = train_demo_checkpoint(tmp_path / "b", cfg, progress=lambda *_: None)
    for key, rel in (("base_model", "model.safetensors"), ("classifier", "adapter_model.safetensors"),
                     ("classifier", "classification_head.pt"), ("classifier", "thresholds.json"),
                     ("data", "test.jsonl")):
        assert (a[key] / rel).read_bytes() == (b[key] / rel).read_bytes(), rel


def test_trained_checkpoint_is_in_the_published_format(demo_checkpoint):
    clf = demo_checkpoint["classifier"]
    frame = json.loads((clf / "weight_frame.json").read_text())["classifier"]
    assert frame["thresholds"] is None and frame["objective"] == "multilabel"
    sidecar = json.loads((clf / "thresholds.json").read_text())["thresholds"]
    assert "Integrity & Quality violations" in sidecar and len(sidecar) == len(HARM_CATEGORIES)
    spec = read_checkpoint(clf, base_model=demo_checkpoint["base_model"])  # strict: thresholds required
    assert spec.labels == HARM_CATEGORIES and spec.objective == "multilabel"
    config = json.loads((demo_checkpoint["base_model"] / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    rows = [json.loads(line) for line in (demo_checkpoint["data"] / "test.jsonl").read_text().splitlines()]
    assert [(r["text"], r["category"]) for r in rows] == [(s.text, s.category) for s in demo_corpus.split("test")]


def _verdicts(reference, texts):
    scores = reference.scores(texts)
    return reference.decisions(scores)


def test_trained_classifier_beats_chance_on_the_test_split(demo_reference):
    test = demo_corpus.split("test")
    flags = _verdicts(demo_reference, [s.text for s in test])
    flagged = flags.any(axis=1)
    harmful = np.array([s.harmful for s in test])
    detection, fpr = flagged[harmful].mean(), flagged[~harmful].mean()
    assert detection >= 0.85 and fpr <= 0.1, (detection, fpr)
    everyday = np.array([s.severity == demo_corpus.EVERYDAY for s in test])
    assert flagged[everyday].mean() <= 0.1
    cats = np.array([s.category for s in test])
    for j, label in enumerate(HARM_CATEGORIES):  # each category detected, mostly by its own label
        assert flagged[cats == label].mean() >= 0.6, label
        assert flags[cats == label, j].mean() >= 0.5, label


def test_demo_prompts_get_the_intended_verdicts(demo_reference):
    from opencc_cm_jobs.demo import EXPECTED

    texts = list(EXPECTED)
    flags = _verdicts(demo_reference, texts)
    for text, row in zip(texts, flags):
        fired = {HARM_CATEGORIES[j] for j in np.flatnonzero(row)}
        if EXPECTED[text] is None:
            assert not fired, (text, fired)
        else:
            assert EXPECTED[text] in fired, (text, fired)
