"""Long and huge texts on a real ``--long-input-policy windows`` server.

The toy bundle's encoder is slow on long rows (``toy_bundle.slow_nodes``: a 64-token row takes
about half a second), so a text of many windows takes many seconds. Assertions are outcomes and
orderings, with margins of an order of magnitude, never times:

- a long text that cannot finish before its deadline is refused before any encoder work (the
  encoder's rows counter does not move), with a message naming its windows and its timeout;
  one that can is answered;
- a short prompt sent while a huge request is being tokenized is answered before it.
"""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from opencc_cm_contract import IDS_ENSEMBLE, SCORES, TEXT_ENSEMBLE, TOKEN_COUNT
from opencc_cm_serving.text import window_starts

from serving_calls import encoder_metrics, encoder_metrics_settled, ids_inputs, served, text_inputs
from toy_bundle import make_toy_bundle

LOOPS_PER_CELL = 30        # a 64-token row: about half a second on a CPU core
ROWS = 'opencc_cm_encoder_rows_computed_total{model="encoder"}'
HUGE_BYTES = 2 ** 22        # one emoji repeated: about 2.5 s of tokenizing on a free core
UNMEETABLE = 'opencc_cm_encoder_requests_dropped_total{model="encoder",reason="unmeetable"}'


@pytest.fixture(scope="module")
def slow_windows(tmp_path_factory):
    from opencc_cm_serving.bundle import load_classifier
    from opencc_cm_serving.text import load_tokenizer

    root = tmp_path_factory.mktemp("slow-windows")
    bundle = make_toy_bundle(root / "bundle", loops_per_cell=LOOPS_PER_CELL)
    spec = load_classifier(bundle / "classifier.json")
    with served(bundle, root, "--long-input-policy", "windows", "--max-text-bytes", str(HUGE_BYTES)) as (server, client):
        yield client, spec, load_tokenizer(bundle / "tokenizer.json"), \
            f"http://127.0.0.1:{server.metrics_port}/metrics"


def long_text(tokenizer, spec, windows: int) -> tuple[str, int]:
    """A text of exactly ``windows`` windows under the deploy's overlap, and its token count."""
    words = []
    while True:
        words.append("the model escalate review")
        text = " ".join(words)
        n = len(tokenizer.encode(text, add_special_tokens=False).ids)
        if len(window_starts(n, spec.max_tokens, spec.max_tokens // 8)) == windows:
            return text, n


def rows_computed(metrics_url) -> float:
    return encoder_metrics(metrics_url)[ROWS]


def rows_computed_settled(metrics_url, expected, wait_s=10.0) -> float:
    """The rows counter once it reached ``expected`` or ``wait_s`` passed: rows run inside the
    encoder's execute() are sent to the counter within a second, not by the run itself."""
    deadline = time.monotonic() + wait_s
    while (value := rows_computed(metrics_url)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_long_text_that_cannot_meet_its_deadline_is_refused_before_any_encoder_work(slow_windows):
    """40 windows of about half a second each, 1 s allowed: refused at once (UNAVAILABLE naming
    the windows and the timeout), not run window after window until the deadline passes."""
    client, spec, tokenizer, metrics_url = slow_windows
    ids = np.random.default_rng(0).integers(0, spec.vocab_size, (1, spec.max_tokens)).astype(np.int64)
    client.infer(IDS_ENSEMBLE, ids_inputs(ids, np.ones_like(ids)))  # one long row: the time per row is known
    text, _ = long_text(tokenizer, spec, windows=40)
    before = encoder_metrics(metrics_url)
    with pytest.raises(InferenceServerException) as info:
        client.infer(TEXT_ENSEMBLE, text_inputs([text]), timeout=1_000_000, client_timeout=120)
    message = info.value.message()
    assert info.value.status() == "StatusCode.UNAVAILABLE", message
    assert "cannot finish before its deadline" in message and "its 40 long rows" in message, message
    assert "1.0 s timeout" in message, message
    after = encoder_metrics_settled(metrics_url)  # nothing was left to run
    assert after[ROWS] == before[ROWS]  # refused before any of its windows ran
    assert after[UNMEETABLE] == before[UNMEETABLE] + 1
    assert client.is_server_ready()


def test_long_text_within_its_deadline_is_answered(slow_windows):
    client, spec, tokenizer, _ = slow_windows
    text, n_tokens = long_text(tokenizer, spec, windows=3)
    result = client.infer(TEXT_ENSEMBLE, text_inputs([text]), client_timeout=120)  # default timeout: 30 s
    assert result.as_numpy(SCORES).shape == (1, spec.num_labels)
    assert result.as_numpy(TOKEN_COUNT).ravel().tolist() == [n_tokens]


def test_short_prompt_is_answered_while_a_huge_request_is_tokenized(slow_windows):
    """A 4 MiB text (one emoji repeated: far too many windows, refused) takes the tokenizer
    seconds; short prompts (about 10 ms each) sent one after another meanwhile are answered, the
    first of them before that refusal (a tokenizer taking requests strictly in turn would answer
    it only after)."""
    client, _, _, metrics_url = slow_windows
    huge = ("\U0001F642" * (HUGE_BYTES // 4)).encode()
    before = rows_computed(metrics_url)
    done: queue.Queue = queue.Queue()
    start = time.monotonic()
    client.async_infer(TEXT_ENSEMBLE, text_inputs([huge]), client_timeout=120,
                       callback=lambda result, error: done.put((time.monotonic(), error)))
    answered = []
    for sent in range(1, 1001):  # bounded: stops once the huge request is answered
        result = client.infer(TEXT_ENSEMBLE, text_inputs(["a short prompt"]), client_timeout=120)
        answered.append(time.monotonic())
        assert result.as_numpy(SCORES).shape[0] == 1
        if not done.empty():
            break
    huge_answered, error = done.get(timeout=120)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "above max_batch_size" in error.message(), error.message()
    # the first short prompt did not wait for the huge one
    assert answered[0] < huge_answered, (f"first short prompt answered {answered[0] - start:.3f} s after the start, "
                                         f"the huge one {huge_answered - start:.3f} s; {sent} short prompts sent")
    assert rows_computed_settled(metrics_url, before + sent) - before == sent  # the short prompts' rows only
