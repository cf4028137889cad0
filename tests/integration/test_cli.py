"""The CLI against a live server: check's exit status, eval's table, calibrate's profile, and the
errors only a server can produce (each exit 2, one line on stderr). Offline errors: tests/client."""
import csv
import json

import numpy as np
import pytest

from opencc_cm_client.cli import main as cli
from opencc_cm_client.evaluation import expected_metrics
from opencc_cm_contract import label_flags
from opencc_cm_export.reference import decide
from opencc_cm_export.synthetic_checkpoint import calibration_prompts
from opencc_cm_serving.launch import free_port

CATEGORIES = ["Benign", "CBRN", "Cyber", "Privacy", "Benign"]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, tiny_reference):
    """20 prompts with made-up categories, and the oracle's flags for each."""
    texts = calibration_prompts()
    samples = [{"text": t, "category": CATEGORIES[i % len(CATEGORIES)]} for i, t in enumerate(texts)]
    path = tmp_path_factory.mktemp("data") / "labeled.jsonl"
    path.write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in samples) + "\n")
    scores = tiny_reference.scores(texts)
    return path, samples, scores, decide(scores, tiny_reference.spec).any(axis=1)


def test_check_exit_status_tells_flagged(tiny_server, tiny_bundle, tiny_reference, capsys):
    texts = calibration_prompts()
    flagged = decide(tiny_reference.scores(texts), tiny_reference.spec).any(axis=1)
    clean, dirty = texts[int(np.argmin(flagged))], texts[int(np.argmax(flagged))]
    assert not flagged[texts.index(clean)] and flagged[texts.index(dirty)]
    base = ["--url", tiny_server.grpc_url, "--tokenizer", str(tiny_bundle / "tokenizer.json")]
    assert cli(["check", *base, clean]) == 0
    capsys.readouterr()
    assert cli(["check", *base, "--json", clean, dirty]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert [p["flagged"] for p in printed] == [False, True] and len(printed[0]["labels"]) == 11
    capsys.readouterr()
    assert cli(["check", "--url", tiny_server.grpc_url, "   "]) == 2  # error: a gate escalates
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("opencc-cm check: error: INVALID_ARGUMENT") and "whitespace" in err


def test_check_sends_headers_and_names_server_side_refusals_in_one_line(tiny_server, tiny_bundle, tmp_path, capsys):
    base = ["check", "--url", tiny_server.grpc_url]
    assert cli([*base, "--header", "X-Request-Id=cli-test", "--header", "authorization=Bearer a=b",
                "--json", "hello"]) in (0, 1)
    assert len(json.loads(capsys.readouterr().out)) == 1
    failures = {
        "unknown profile": ([*base, "--profile", "lenient", "hello"], "unknown threshold profile 'lenient'"),
        "another tokenizer": ([*base, "--tokenizer", str(_other_tokenizer(tiny_bundle, tmp_path)), "hello"],
                              "is not the server's"),
        "no server": (["check", "--url", f"127.0.0.1:{free_port()}", "--timeout", "1", "hello"], "UNAVAILABLE"),
    }
    for name, (argv, words) in failures.items():
        assert cli(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("opencc-cm check: error:") and words in err, (name, err)


def _other_tokenizer(tiny_bundle, tmp_path):
    other = json.loads((tiny_bundle / "tokenizer.json").read_text())
    other["added_tokens"] = other["added_tokens"][:1]
    path = tmp_path / "other-tokenizer.json"
    path.write_text(json.dumps(other))
    return path


def test_eval_reports_the_oracles_confusion_matrix(tiny_server, labeled, tmp_path, capsys):
    path, samples, _, flagged = labeled
    harmful = np.array([s["category"] != "Benign" for s in samples])
    expected = {"tp": int((harmful & flagged).sum()), "fp": int((~harmful & flagged).sum()),
                "fn": int((harmful & ~flagged).sum()), "tn": int((~harmful & ~flagged).sum())}
    report_path = tmp_path / "report.json"
    assert cli(["eval", "--url", tiny_server.grpc_url, str(path), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["confusion"] == expected
    assert report["fpr"] == expected["fp"] / (expected["fp"] + expected["tn"])
    assert report["latency"]["n"] == len(samples) and report["latency"]["p50_ms"] > 0
    assert report["cost"]["input_tokens"] > len(samples)
    captured = capsys.readouterr()
    assert "| CBRN |" in captured.out and f"TP/FP/FN/TN = {expected['tp']}/{expected['fp']}" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal


def test_eval_reads_a_csv_saved_with_a_byte_order_mark(tiny_server, labeled, tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM; the `text` header must survive it."""
    path, samples, _, _ = labeled
    csv_path = tmp_path / "labeled.csv"
    with csv_path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows(samples)
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbftext,")
    reports = {}
    for name, data in (("jsonl", path), ("csv", csv_path)):
        out = tmp_path / f"{name}.json"
        assert cli(["eval", "--url", tiny_server.grpc_url, str(data), "--batch-size", "4", "--report", str(out)]) == 0
        reports[name] = json.loads(out.read_text())
    assert reports["csv"]["confusion"] == reports["jsonl"]["confusion"]
    assert reports["csv"]["cost"]["input_tokens"] == reports["jsonl"]["cost"]["input_tokens"]


def tiny_reference_thresholds(bundle, labels):
    from opencc_cm_contract.bundle_format import ClassifierManifest

    manifest = ClassifierManifest.read(bundle)
    return [dict(zip(manifest.labels, manifest.thresholds))[label] for label in labels]


def test_calibrate_reaches_its_target_and_the_server_loads_the_profile(tiny_server, tiny_bundle, labeled, tmp_path):
    from opencc_cm_client import ClassifierClient
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    from integration_support import deploy_tiny

    path, samples, scores, _ = labeled
    out = tmp_path / "profiles.json"
    assert cli(["calibrate", "--url", tiny_server.grpc_url, str(path), "--target-fpr", "0.25",
                "--name", "strict", "--out", str(out)]) == 0
    profile = json.loads(out.read_text())["profiles"]["strict"]
    labels = list(profile)
    harmful = np.array([s["category"] != "Benign" for s in samples])
    got = expected_metrics(scores, harmful, np.array([profile[label] for label in labels]))
    assert got["fpr"] <= 0.25
    repo = deploy_tiny(tiny_bundle, tmp_path / "repo", "--profiles", str(out))
    with TritonServer(repo, ServerSettings(log_path=tmp_path / "server.log")) as server, \
            ClassifierClient(server.grpc_url, threshold_profile="strict") as client:
        results = client.classify([s["text"] for s in samples])
        flagged = np.array([r.flagged for r in results])
        assert flagged[~harmful].mean() <= 0.25
        assert flagged[harmful].mean() == got["detection"]
        # calibrate to match another deployment's decisions (here the "strict" profile stands for
        # the fp32 deployment) on unlabeled texts: the new profile reproduces them exactly
        unlabeled = tmp_path / "texts.jsonl"
        unlabeled.write_text("".join(json.dumps({"text": s["text"]}) + "\n" for s in samples))
        matched = tmp_path / "matched.json"
        assert cli(["calibrate", "--url", server.grpc_url, str(unlabeled), "--match-url", server.grpc_url,
                    "--match-profile", "strict", "--name", "matched", "--out", str(matched)]) == 0
    served = np.array([[r.score for r in res.labels] for res in results])
    strict_fired = np.array([[r.fired for r in res.labels] for res in results])
    thresholds = json.loads(matched.read_text())["profiles"]["matched"]
    default_flags = label_flags(served, np.array(tiny_reference_thresholds(tiny_bundle, labels)))
    assert (default_flags != strict_fired).any()  # the two profiles decide differently on these texts
    assert (label_flags(served, np.array([thresholds[label] for label in labels])) == strict_fired).all()
