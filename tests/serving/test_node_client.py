"""examples/node-client (Node.js, @grpc/grpc-js + Triton's own protocol descriptors) against the
real server: the same answers as the Python client, and fail-closed on every error.

``npm ci`` installs the committed package-lock.json into the example folder (node_modules is
git-ignored); Node.js >= 18 with npm is required (a clear failure, not a skip, without it).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opencc_cm_client import ClassifierClient, ConnectionOptions
from opencc_cm_client.results import Classification
from opencc_cm_serving.launch import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-client"
TEXTS = ["the model review", "password network data weapon", "café naïve 中文 测试 🙂",
         "hate speech self harm minor", "x", "déjà vu 12 345 6789 , . ! ?"]


@pytest.fixture(scope="module")
def node_example(tmp_path_factory) -> dict:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("examples/node-client needs Node.js >= 18 and npm on PATH (https://nodejs.org); "
                    f"found node={node}, npm={npm}")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0])
    assert major >= 18, f"Node.js >= 18 needed, found {major}"
    install = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, f"npm ci in {EXAMPLE} failed:\n{install.stdout}\n{install.stderr}"
    descriptors = tmp_path_factory.mktemp("node") / "triton-grpc.binpb"
    written = subprocess.run([sys.executable, str(EXAMPLE / "write_descriptor_set.py"), str(descriptors)],
                             capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    return {"node": node, "descriptors": descriptors}


def run_node(node_example, url, *args, stdin=None) -> tuple[int, dict]:
    done = subprocess.run([node_example["node"], str(EXAMPLE / "classify.js"), "--url", url,
                           "--descriptors", str(node_example["descriptors"]), *args],
                          capture_output=True, text=True, input=stdin, timeout=120)
    assert done.stdout.count("\n") == 1, (done.returncode, done.stdout, done.stderr)
    return done.returncode, json.loads(done.stdout)


def python_results(url, texts, profile, tokenizer=None) -> list[Classification]:
    with ClassifierClient(url, tokenizer=tokenizer, threshold_profile=profile,
                          options=ConnectionOptions(timeout_s=30)) as client:
        return client.classify(texts)


@pytest.mark.parametrize("profile", ["default", "mixed"])
def test_node_client_agrees_with_python_client(node_example, server, bundle_dir, profile):
    code, out = run_node(node_example, server.grpc_url, "--profile", profile, *TEXTS)
    assert code in (0, 1), out
    node = [Classification.from_json(json.dumps(r)) for r in out["results"]]
    via_text = python_results(server.grpc_url, TEXTS, profile)
    via_ids = python_results(server.grpc_url, TEXTS, profile, tokenizer=bundle_dir / "tokenizer.json")
    assert len(node) == len(TEXTS)
    for mine, text_mode, ids_mode in zip(node, via_text, via_ids):
        # everything equal: labels in order, scores (fp32, exactly), thresholds, flags, token counts
        assert mine == text_mode, (mine, text_mode)
        assert [r.score for r in mine.labels] == [r.score for r in ids_mode.labels]
        assert (mine.flagged, mine.input_tokens, mine.fired_labels) == (ids_mode.flagged, ids_mode.input_tokens,
                                                                        ids_mode.fired_labels)
        assert mine.input_tokens > 0
    assert out["escalate"] == any(c.flagged for c in node) and code == (1 if out["escalate"] else 0)
    if profile == "mixed":  # thresholds alternate 0.0 / 1.0: every text escalates
        assert code == 1 and all(c.fired_labels for c in node)


def test_node_client_splits_at_max_batch_and_reads_stdin(node_example, server):
    texts = [f"the model review {i}" for i in range(70)]  # above max_batch_size 64: two requests
    code, out = run_node(node_example, server.grpc_url, "--profile", "nothing", "-", stdin=json.dumps(texts))
    assert code == 0 and out["escalate"] is False
    node = [Classification.from_json(json.dumps(r)) for r in out["results"]]
    assert node == python_results(server.grpc_url, texts, "nothing")


@pytest.mark.parametrize("case, args, error_code, words", [
    ("bad text fails the whole batch", ["fine", " \t "], "INVALID_ARGUMENT", "text[1]: whitespace-only"),
    ("unknown profile (from the config)", ["--profile", "strictt", "x"], "INVALID_ARGUMENT",
     "unknown threshold profile 'strictt'"),
    ("no such model", ["--model", "classify_nothing", "x"], "NOT_FOUND", "unknown model"),
    ("no arguments", [], "USAGE", "at least one text"),
])
def test_node_client_fails_closed(node_example, server, case, args, error_code, words):
    code, out = run_node(node_example, server.grpc_url, *args)
    assert code == 2 and out["escalate"] is True and out["results"] == [], case
    assert out["error"]["code"] == error_code and words in out["error"]["message"], (case, out)


def test_node_client_fails_closed_when_no_server(node_example):
    code, out = run_node(node_example, f"127.0.0.1:{free_port()}", "--retries", "1", "--timeout-ms", "3000", "x")
    assert code == 2 and out["escalate"] is True and out["error"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
