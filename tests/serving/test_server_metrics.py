"""Per-label metrics of the calibration model, read from a real server's Prometheus scrape:
known requests in, exact counter deltas out (texts, tokens, flagged, flags per label and profile,
failures by cause), once the model's background flush (every second) has sent them."""
from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import ATTENTION_MASK, CALIBRATION_MODEL, LOGITS, TEXT_ROW, WINDOW_START
from opencc_cm_serving import metrics as m

from serving_calls import classify_text, prompts

SAMPLE = re.compile(r'^(opencc_cm_\w+)\{(.*)\} (\S+)$')


def scrape(server) -> Counter:
    """``{(metric, frozenset(labels)): value}`` of our metrics in the server's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as page:
        text = page.read().decode()
    out: Counter = Counter()
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not match.group(1).startswith("opencc_cm_encoder_"):  # the encoder's: test_server_scheduling
            labels = frozenset(tuple(kv.split("=", 1)) for kv in re.findall(r'\w+="[^"]*"', match.group(2)))
            out[(match.group(1), frozenset((k, v.strip('"')) for k, v in labels))] = float(match.group(3))
    return out


def settled_scrape(server, timeout_s: float = 30.0) -> Counter:
    """A scrape that no longer changes over more than one flush interval (the model flushes once
    a second; on a loaded machine its thread may run late)."""
    deadline = time.monotonic() + timeout_s
    last = scrape(server)
    while time.monotonic() < deadline:
        time.sleep(1.5)
        now = scrape(server)
        if now == last:
            return now
        last = now
    raise AssertionError("metrics kept changing with no request in flight")


def key(metric, **labels):
    return metric, frozenset({"model": CALIBRATION_MODEL, **labels}.items())


def test_counters_match_the_answers_exactly(server, client, spec, tokenizer):
    texts = prompts(tokenizer, spec.max_tokens, 8, seed=11)
    before = settled_scrape(server)  # earlier tests' counts (same server) are flushed: not in our delta
    expected: Counter = Counter()
    answers = [("everything", classify_text(client, texts[:5], "everything"))]
    answers += [(None, classify_text(client, [t])) for t in texts[5:]]
    answers += [("nothing", classify_text(client, texts[:2], "nothing"))]
    for profile, out in answers:
        profile = profile or "default"
        expected[key(m.TEXTS, profile=profile)] += len(out["flagged"])
        expected[key(m.TOKENS, profile=profile)] += int(out["token_count"].sum())
        expected[key(m.FLAGGED, profile=profile)] += int(out["flagged"].sum())
        for column, label in enumerate(spec.labels):
            expected[key(m.LABEL_FLAGS, profile=profile, label=label)] += int(out["label_flags"][:, column].sum())
    with pytest.raises(InferenceServerException, match="unknown threshold_profile"):
        classify_text(client, texts[:1], "no_such_profile")
    expected[key(m.FAILURES, cause="unknown_profile")] += 1
    bad = np.full((1, spec.num_labels), np.nan, dtype=np.float32)
    inputs = []
    for name, array in ((LOGITS, bad), (ATTENTION_MASK, np.ones((1, 3), np.int64)), (TEXT_ROW, np.zeros((1, 1), np.int64)),
                        (WINDOW_START, np.zeros((1, 1), np.int64))):
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException):
        client.infer(CALIBRATION_MODEL, inputs)
    expected[key(m.FAILURES, cause="non_finite_logits")] += 1

    want = {k: float(v) for k, v in expected.items() if v}
    deadline = time.monotonic() + 15  # the model sends its sums once a second (metrics.py)
    while True:
        after = scrape(server)
        delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
        if delta == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delta == want
    assert expected[key(m.LABEL_FLAGS, profile="everything", label=spec.labels[0])] == 5  # thresholds 0: all fire
    assert expected[key(m.FLAGGED, profile="nothing")] == 0
