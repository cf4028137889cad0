"""Client pieces that need no server: typed results, proto freshness, metrics, calibration, gate."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opencc_cm_client import classification_pb2 as pb
from opencc_cm_contract.latency import latency_summary
from opencc_cm_client.evaluation import (Sample, calibrate_for_fpr, calibrate_for_recall, calibrate_to_match,
                                         decision_agreement, evaluate, expected_metrics, read_samples)
from opencc_cm_contract import label_flags
from opencc_cm_client.gate import gate_decision
from opencc_cm_client.results import Classification, LabelResult
from opencc_cm_contract.text_rules import InputError, decode_text

ROOT = Path(__file__).resolve().parents[2]


def _result(flags, scores=None, tokens=7):
    labels = ("CBRN", "Cyber", "Privacy")
    scores = scores or [0.9 if f else 0.1 for f in flags]
    return Classification(tuple(LabelResult(name, s, 0.5, f) for name, s, f in zip(labels, scores, flags)),
                          any(flags), tokens, "classify_ids", "1", "default")


def test_results_round_trip_through_proto_and_json():
    res = _result([True, False, True], [0.75, 0.25, 0.5])
    assert Classification.from_proto(pb.Classification.FromString(res.to_proto().SerializeToString())) == res
    assert Classification.from_json(res.to_json()) == res
    assert Classification.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    assert json.loads(res.to_json())["inputTokens"] == "7"  # protobuf JSON mapping, int64 as string
    assert res.fired_labels == ["CBRN", "Privacy"]


def test_generated_proto_code_is_fresh(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", str(ROOT / "proto/opencc_cm/v1/classification.proto")], check=True)
    for name in ("classification_pb2.py", "classification_pb2.pyi"):
        fresh = (tmp_path / "opencc_cm/v1" / name).read_text()
        assert fresh == (ROOT / "client/opencc_cm_client" / name).read_text(), f"run `make proto`: {name} is stale"


def test_client_imports_without_torch_or_transformers():
    code = ("import sys, opencc_cm_client.client, opencc_cm_client.aio, opencc_cm_client.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_evaluation_counts_a_known_confusion_matrix_exactly():
    samples = [Sample("a", "CBRN")] * 4 + [Sample("b", "Privacy")] * 2 + [Sample("c", "Benign")] * 4
    results = ([_result([True, False, False])] * 3 + [_result([False] * 3)]          # CBRN: 3/4 detected
               + [_result([False, False, True]), _result([True, False, False])]     # Privacy: 2/2, own label 1/2
               + [_result([False, True, False])] + [_result([False] * 3)] * 3)      # Benign: 1 false positive
    report = evaluate(samples, results)
    assert report["confusion"] == {"tp": 5, "fp": 1, "fn": 1, "tn": 3}
    assert report["detection"] == 5 / 6 and report["fpr"] == 1 / 4 and report["accuracy"] == 8 / 10
    assert report["precision"] == 5 / 6 and report["f1"] == pytest.approx(5 / 6)
    assert report["per_category"]["CBRN"] == {"n": 4, "detection": 0.75, "own_label_recall": 0.75}
    assert report["per_category"]["Privacy"] == {"n": 2, "detection": 1.0, "own_label_recall": 0.5}


def test_latency_summary():
    s = latency_summary([10.0, 20.0, 30.0, 40.0])
    assert s["mean_ms"] == 25.0 and s["p50_ms"] == 25.0
    half = 1.96 * np.std([10, 20, 30, 40], ddof=1) / 2
    assert s["ci95_ms"] == pytest.approx([25 - half, 25 + half])


def test_read_samples_from_jsonl_and_csv(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "x", "category": "Cyber"}\n\n{"text": "y", "category": "Benign"}\n')
    (tmp_path / "d.csv").write_text("text,category\n\"x, with comma\",Cyber\ny,Benign\n")
    assert [s.harmful for s in read_samples(tmp_path / "d.jsonl")] == [True, False]
    assert read_samples(tmp_path / "d.csv")[0].text == "x, with comma"
    (tmp_path / "bad.jsonl").write_text('{"text": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: row needs"):
        read_samples(tmp_path / "bad.jsonl")


def test_calibration_reaches_its_fpr_target_with_the_lowest_thresholds():
    rng = np.random.default_rng(0)
    benign = rng.uniform(0, 0.6, size=(300, 3))
    harmful = rng.uniform(0.3, 1.0, size=(300, 3))
    scores = np.vstack([benign, harmful]).astype(np.float32)
    is_harmful = np.array([False] * 300 + [True] * 300)
    for target in (0.0, 0.05, 0.17, 0.5):
        t = calibrate_for_fpr(["a", "b", "c"], scores, is_harmful, target)
        got = expected_metrics(scores, is_harmful, t)
        assert got["fpr"] <= target
        looser = expected_metrics(scores, is_harmful, t - 0.02)  # any lower thresholds overshoot
        assert looser["fpr"] > target or target == 0.5


def test_recall_calibration_keeps_the_target_per_label():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, size=(200, 2)).astype(np.float32)
    cats = ["CBRN"] * 100 + ["Cyber"] * 100
    t = calibrate_for_recall(["CBRN", "Cyber"], scores, cats, 0.9, [0.5, 0.5])
    assert (scores[:100, 0] >= t[0]).mean() >= 0.9 and (scores[100:, 1] >= t[1]).mean() >= 0.9
    assert (scores[:100, 0].astype(np.float64) >= np.nextafter(t[0], 1)).mean() < 0.9  # the highest one


def test_gate_fails_closed():
    assert gate_decision(lambda: _result([False] * 3)).escalate is False
    assert gate_decision(lambda: _result([False, True, False])).escalate is True
    def boom():
        raise ConnectionError("server gone")
    decision = gate_decision(boom)
    assert decision.escalate and "server gone" in decision.reason and decision.classification is None


@pytest.mark.parametrize("raw, words", [(b"", "empty"), (b"  \n\t", "whitespace"), (b"\xff\xfe", "invalid UTF-8"),
                                        (b"a\x00b", "NUL"), (b"x" * (1 << 20 + 1), "max_text_bytes"),
                                        ("\ud800", "not encodable")])
def test_text_rules_reject_with_a_named_reason(raw, words):
    with pytest.raises(InputError, match=words):
        decode_text(raw, "text[3]")


def test_status_mapping_retries_only_what_is_transient():
    from opencc_cm_client.errors import OverloadedError, UnavailableError, from_status

    assert isinstance(from_status("StatusCode.UNAVAILABLE", "failed to connect to all addresses"), UnavailableError)
    assert isinstance(from_status("StatusCode.NOT_FOUND", "Request for unknown model: 'x' has no available versions"),
                      UnavailableError)  # a model (re)loading after a restart
    assert isinstance(from_status("StatusCode.CANCELLED", "CANCELLED"), UnavailableError)  # server stopping
    queue_full = from_status("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
    assert isinstance(queue_full, OverloadedError) and not isinstance(queue_full, UnavailableError)
    assert not isinstance(from_status("StatusCode.NOT_FOUND", "unknown model 'nope'"), UnavailableError)


def test_threshold_objects_follow_one_rule_and_name_the_key():
    from opencc_cm_contract import HARM_CATEGORIES, ThresholdMappingError, resolve_label_thresholds

    full = {label: 0.5 for label in HARM_CATEGORIES}
    aliased = {**full, "Integrity & Quality violations": 0.25}
    del aliased["Information Integrity"]
    resolved = resolve_label_thresholds(aliased, HARM_CATEGORIES)
    assert list(resolved) == list(HARM_CATEGORIES) and resolved["Information Integrity"] == 0.25
    broken = {
        "thresholds.Spam": {**full, "Spam": 0.5},
        "thresholds.CBRN": {**full, "CBRN": "0.1"},
        "thresholds.Privacy": {**full, "Privacy": float("nan")},
        "thresholds.Self-Harm": {**full, "Self-Harm": True},
        "thresholds.Cyber": {**full, "Cyber": 10 ** 400},  # a JSON integer too large for a float
        "thresholds.Integrity & Quality violations": {**full, "Integrity & Quality violations": 0.5},
        "thresholds": {k: v for k, v in full.items() if k != "Privacy"},
    }
    for key, mapping in broken.items():
        with pytest.raises(ThresholdMappingError) as err:
            resolve_label_thresholds(mapping, HARM_CATEGORIES)
        assert err.value.key == key, (key, str(err.value))
    with pytest.raises(ThresholdMappingError, match="expected an object"):
        resolve_label_thresholds([0.5] * 11, HARM_CATEGORIES)


def test_a_request_the_server_cannot_parse_is_a_client_mistake_never_retried():
    """gRPC answers INTERNAL "Unable to parse request" for a message it cannot decode (invalid
    UTF-8 in a parameter key or string value): the same bytes fail again, so a client that retries
    INTERNAL loops. Ours reports it as InvalidRequestError and sends the call once."""
    import asyncio

    from tritonclient.utils import InferenceServerException

    from opencc_cm_client.aio import AsyncClassifierClient
    from opencc_cm_client.client import ClassifierClient
    from opencc_cm_client.errors import ClassifierError, InvalidRequestError, UnavailableError, from_status
    from opencc_cm_client.options import ConnectionOptions, RetryPolicy
    from opencc_cm_client.errors import next_retry_delay

    unparsable = InferenceServerException("Unable to parse request", status="StatusCode.INTERNAL")
    error = from_status(str(unparsable.status()), unparsable.message())
    assert isinstance(error, InvalidRequestError) and error.code == "INTERNAL"
    assert "client mistake" in str(error) and "Unable to parse request" in str(error)
    assert next_retry_delay(unparsable, iter([0.0, 0.0]))[1] is None
    stub_dead = from_status("StatusCode.INTERNAL", "Stub process 'encoder_0_0' is not healthy.")
    assert type(stub_dead) is ClassifierError and not isinstance(stub_dead, UnavailableError)

    options = ConnectionOptions(retry=RetryPolicy(attempts=4, initial_backoff_s=0.001, max_backoff_s=0.001))

    def counting(exc):
        calls = []

        def fn():
            calls.append(1)
            raise exc
        return calls, fn

    transient = InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
    with ClassifierClient("127.0.0.1:1", options=options) as sync_client:
        for exc, sent, raised in ((unparsable, 1, InvalidRequestError), (transient, 4, UnavailableError)):
            calls, fn = counting(exc)
            with pytest.raises(raised):
                sync_client._with_retries(fn)
            assert len(calls) == sent, (exc.message(), len(calls))

    async def run_async():
        client = AsyncClassifierClient("127.0.0.1:1", options=options)
        try:
            for exc, sent, raised in ((unparsable, 1, InvalidRequestError), (transient, 4, UnavailableError)):
                calls, fn = counting(exc)

                async def afn():
                    fn()
                with pytest.raises(raised):
                    await client._with_retries(afn)
                assert len(calls) == sent, (exc.message(), len(calls))
        finally:
            await client.close()
    asyncio.run(run_async())


def _brute_force_disagreements(scores, reference):
    """Every threshold worth trying (each score, and one above them all) and its disagreements."""
    candidates = np.append(np.unique(scores), scores.max() + 1)
    return {float(t): int(((scores >= t) != reference).sum()) for t in candidates}


def test_calibrate_to_match_finds_the_thresholds_that_agree_most_with_the_reference():
    rng = np.random.default_rng(7)
    scores = rng.random((200, 3)).round(2)  # rounded: many ties, which a threshold must flag together
    reference = np.stack([scores[:, 0] >= 0.5,  # exactly reproducible
                          (scores[:, 1] + rng.normal(0, 0.05, 200)) >= 0.4,  # a noisy version of a threshold
                          np.zeros(200, dtype=bool)], axis=1)  # the reference never fires
    got = calibrate_to_match(scores, reference, [0.5, 0.4, 0.9])
    for j in range(3):
        brute = _brute_force_disagreements(scores[:, j], reference[:, j])
        assert ((scores[:, j] >= got[j]) != reference[:, j]).sum() == min(brute.values())
    assert got[0] == 0.5 and got[2] > scores[:, 2].max()
    before = decision_agreement(label_flags(scores, np.array([0.45, 0.45, 0.45])), reference)
    after = decision_agreement(label_flags(scores, got), reference)
    assert after["label_disagreements"] < before["label_disagreements"]
    assert after["text_decisions_flipped"] <= before["text_decisions_flipped"]


def test_calibrate_to_match_prefers_the_reference_threshold_among_equals_and_checks_shapes():
    scores = np.array([[0.1], [0.2], [0.8], [0.9]])
    reference = np.array([[False], [False], [True], [True]])
    # 0.8 and every threshold in (0.2, 0.8] agree fully: of the candidates (the scores), 0.8 is it
    assert calibrate_to_match(scores, reference, [0.5])[0] == 0.8
    with pytest.raises(ValueError, match="same"):
        calibrate_to_match(scores, reference[:3], [0.5])


def test_read_samples_unlabeled_only_when_asked(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n{"text": "b", "category": "Benign"}\n')
    samples = read_samples(tmp_path / "t.jsonl", labeled=False)
    assert [(s.text, s.category) for s in samples] == [("a", None), ("b", "Benign")]
    with pytest.raises(ValueError, match="t.jsonl:1: row needs string fields 'text' and 'category'"):
        read_samples(tmp_path / "t.jsonl")
