"""model.py files run against a stubbed ``triton_python_backend_utils`` (no server): one
response per request in order, per-request error codes, loud failure on unfilled config."""
from __future__ import annotations

import re

import numpy as np
import pytest

from opencc_cm_contract import (
    ATTENTION_MASK, CALIBRATION_MODEL, ENCODER_MODEL, FLAGGED, INPUT_IDS, LOGITS, SCORES, TEXT, TEXT_ROW,
    TOKEN_COUNT, TOKENIZER_MODEL, WINDOW_START,
)
from opencc_cm_serving.errors import ConfigError

import fake_pb_utils as fake
from fake_pb_utils import Request, args_for, load_model


def model(repository, name):
    instance = load_model(repository / name / "1" / "model.py", name)
    instance.initialize(args_for(repository, name))
    return instance


def test_unfilled_placeholder_fails_loudly(repository):
    text = (repository / CALIBRATION_MODEL / "config.pbtxt").read_text()
    text = text.replace('string_value: "artifacts"', 'string_value: "${artifact_dir}"')
    instance = load_model(repository / CALIBRATION_MODEL / "1" / "model.py", CALIBRATION_MODEL)
    with pytest.raises(ConfigError, match="unfilled placeholder"):
        instance.initialize(args_for(repository, CALIBRATION_MODEL, text))


def test_calibration_answers_each_request(repository, spec):
    calibration = model(repository, CALIBRATION_MODEL)
    logits = np.zeros((2, spec.num_labels), np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int64)
    starts = np.zeros((2, 1), np.int64)
    rows = {ATTENTION_MASK: mask, TEXT_ROW: np.array([[0], [1]]), WINDOW_START: starts}
    windowed = np.array([[0.0] * spec.num_labels, [3.0] * spec.num_labels], np.float32)
    requests = [
        Request({LOGITS: logits, **rows}),
        Request({LOGITS: logits, **rows}, {"threshold_profile": "bogus"}),
        Request({LOGITS: logits[:, :3], **rows}),
        Request({LOGITS: logits, **rows}, {"threshold_profile": "everything"}),
        Request({LOGITS: windowed, ATTENTION_MASK: mask, TEXT_ROW: np.array([[0], [0]]), WINDOW_START: starts}),
        Request({LOGITS: logits, ATTENTION_MASK: mask, TEXT_ROW: np.array([[1], [2]]), WINDOW_START: starts}),
    ]
    ok, unknown, bad_shape, everything, folded, bad_rows = calibration.execute(requests)
    assert folded.error.code == fake.TritonError.INVALID_ARG and "does not window" in folded.error.message
    assert bad_rows.error.code == fake.TritonError.INVALID_ARG and "text_row" in bad_rows.error.message
    assert ok.error is None and ok.output(TOKEN_COUNT).ravel().tolist() == [2, 1]
    assert np.all(ok.output(SCORES) == 0.5)
    assert ok.output(FLAGGED).ravel().tolist() == [bool(0.5 >= min(spec.thresholds))] * 2
    assert unknown.error.code == fake.TritonError.INVALID_ARG and "bogus" in unknown.error.message
    assert bad_shape.error.code == fake.TritonError.INVALID_ARG
    assert everything.output(FLAGGED).all()


def test_tokenizer_rejects_one_request_only(repository):
    tokenizer = model(repository, TOKENIZER_MODEL)
    good = [Request({TEXT: np.array([[b"the model"], [b"x"]], dtype=object)}) for _ in range(2)]
    bad = Request({TEXT: np.array([[b"fine"], [b"\xff"]], dtype=object)})
    requests = [good[0], bad, good[1]]
    assert tokenizer.execute(requests) is None  # every answer goes through the request's sender
    first, second, third = (r.sender.wait() for r in requests)
    assert second.error.code == fake.TritonError.INVALID_ARG and "text[1]: invalid UTF-8" in second.error.message
    ids, mask = first.output(INPUT_IDS), first.output(ATTENTION_MASK)
    assert ids.shape == mask.shape and mask[1].tolist() == [1] + [0] * (mask.shape[1] - 1)
    assert np.array_equal(ids, third.output(INPUT_IDS))
    assert first.output(TEXT_ROW).tolist() == [[0], [1]] and first.output(WINDOW_START).tolist() == [[0], [0]]


class HeldTokenizer:
    """Wraps the tokenizer: records the texts of each encode_batch call and holds a call whose
    texts are longer than ``hold_above`` characters until ``release`` is set."""

    def __init__(self, tokenizer, hold_above):
        import threading

        self.tokenizer, self.hold_above, self.calls = tokenizer, hold_above, []
        self.release, self.holding = threading.Event(), threading.Event()

    def encode_batch(self, texts, **kwargs):
        self.calls.append([len(t) for t in texts])
        if max(len(t) for t in texts) > self.hold_above:
            self.holding.set()
            assert self.release.wait(30), "never released"
        return self.tokenizer.encode_batch(texts, **kwargs)


def large_request_tokenizer(repository, large_bytes, queue_size=2):
    config = (repository / TOKENIZER_MODEL / "config.pbtxt").read_text()
    for key, value in (("large_request_bytes", large_bytes), ("large_request_queue", queue_size)):
        config, n = re.subn(f'(key: "{key}" value: {{ string_value: )"[0-9]+"', f'\\1"{value}"', config)
        assert n == 1, key
    instance = load_model(repository / TOKENIZER_MODEL / "1" / "model.py", TOKENIZER_MODEL)
    instance.initialize(args_for(repository, TOKENIZER_MODEL, config))
    return instance


def test_tokenizer_answers_small_requests_while_a_large_one_is_tokenized(repository):
    """A request above large_request_bytes is tokenized by the worker: a small request in the
    same execute() and one in the next are answered while it is still being tokenized."""
    tokenizer = large_request_tokenizer(repository, large_bytes=1000)
    held = tokenizer.tokenizer = HeldTokenizer(tokenizer.tokenizer, hold_above=500)
    large = Request({TEXT: np.array([[b"the model " * 60]] * 3, dtype=object)})  # 1,800 bytes
    small = [Request({TEXT: np.array([[b"a short prompt"]], dtype=object)}) for _ in range(2)]
    try:
        tokenizer.execute([large, small[0]])
        assert held.holding.wait(10)
        tokenizer.execute([small[1]])
        for request in small:
            assert request.sender.wait().error is None
        assert not large.sender.done.is_set()    # still held in the worker
    finally:
        held.release.set()
    response = large.sender.wait()
    # the toy bundle's max_tokens is 64: refused at text[0], the texts after it never encoded
    assert response.error.code == fake.TritonError.INVALID_ARG and "text[0]: " in response.error.message
    assert held.calls.count([600]) == 1
    tokenizer.finalize()


def test_tokenizer_large_requests_beyond_the_queue_are_refused_at_once(repository):
    tokenizer = large_request_tokenizer(repository, large_bytes=100, queue_size=1)
    held = tokenizer.tokenizer = HeldTokenizer(tokenizer.tokenizer, hold_above=50)
    large = [Request({TEXT: np.array([[b"the model " * 20]], dtype=object)}) for _ in range(3)]
    try:
        tokenizer.execute(large)                 # one tokenizing, one waiting, one refused
        assert held.holding.wait(10)
        refused = large[2].sender.wait()
        assert refused.error.code == fake.TritonError.UNAVAILABLE and "retry later" in refused.error.message
        assert not large[1].sender.done.is_set()
    finally:
        held.release.set()
    for request in large[:2]:
        assert request.sender.wait().error is None
    tokenizer.finalize()


def test_tokenizer_worker_outlives_a_failed_send(repository):
    """A large request whose response cannot be sent (e.g. its client is gone) does not stop
    the worker, nor keep its place: the next large requests are answered."""
    tokenizer = large_request_tokenizer(repository, large_bytes=100, queue_size=1)

    class Broken(fake.ResponseSender):
        def send(self, response=None, flags=0):
            raise RuntimeError("client gone")

    text = np.array([[b"the model " * 20]], dtype=object)
    assert tokenizer.execute([Request({TEXT: text}, sender=Broken())]) is None
    later = [Request({TEXT: text}) for _ in range(2)]
    for request in later:
        assert tokenizer.execute([request]) is None
        assert request.sender.wait().error is None  # answered
    tokenizer.finalize()


def flaky_encoder(repository):
    """The encoder model whose graph fails whenever token 5 is in the batch."""
    encoder = model(repository, ENCODER_MODEL)
    real_run = encoder.encoder

    def flaky(ids, mask):
        if (ids == 5).any():
            raise RuntimeError("kernel failure")
        return real_run(ids, mask)

    encoder.encoder = flaky
    return encoder


def ids_request(row, **kwargs):
    return Request({INPUT_IDS: np.array([row]), ATTENTION_MASK: np.ones((1, len(row)), np.int64)}, **kwargs)


def test_encoder_computes_a_batch_of_short_rows_in_execute(repository, spec, reference_logits):
    """Short rows with nothing queued: computed in execute() itself (nothing admitted to the row
    scheduler) and answered by execute()'s return, one response per request in their order, none
    through a response sender; a bad request and a failing run fail alone."""
    encoder = flaky_encoder(repository)
    admitted = []
    real_admit = encoder.scheduler.admit
    encoder.scheduler.admit = lambda *a, **k: admitted.append(a) or real_admit(*a, **k)
    rows = [[1, 2, 3], [4, 5], [7]]
    requests = [ids_request(r) for r in rows]
    long = np.ones((1, spec.max_tokens + 1), np.int64)
    requests.append(Request({INPUT_IDS: long, ATTENTION_MASK: long}))
    try:
        first, second, third, too_long = encoder.execute(requests)
    finally:
        encoder.finalize()
    assert admitted == [] and all(r.sender.sent == [] for r in requests)
    assert too_long.error.code == fake.TritonError.INVALID_ARG and "above max_tokens" in too_long.error.message
    assert second.error.code == fake.TritonError.INTERNAL and "kernel failure" in second.error.message
    ref = reference_logits([rows[0], rows[2]])
    assert np.abs(first.output(LOGITS)[0] - ref[0]).max() <= 1e-5
    assert np.abs(third.output(LOGITS)[0] - ref[1]).max() <= 1e-5


def test_encoder_isolates_runtime_failures(repository, spec, reference_logits):
    """A batch with a long row is admitted to the row scheduler: every request is answered
    through its response sender, a cancelled one is not computed, a failing run fails alone."""
    encoder = flaky_encoder(repository)
    rows = [[1, 2, 3], [4, 5], [7]]
    requests = [ids_request(r) for r in rows]
    requests.append(ids_request([1], cancelled=True))
    long = np.ones((1, spec.max_tokens + 1), np.int64)
    requests.append(Request({INPUT_IDS: long, ATTENTION_MASK: long}))
    solo = [1] * encoder.scheduler.solo_tokens  # a long row: the batch goes to the scheduler
    requests.append(ids_request(solo))
    assert encoder.execute(requests) is None  # answered through each request's response sender
    first, second, third, cancelled, too_long, long_row = [r.sender.wait() for r in requests]
    encoder.finalize()
    assert too_long.error.code == fake.TritonError.INVALID_ARG and "above max_tokens" in too_long.error.message
    assert second.error.code == fake.TritonError.INTERNAL and "kernel failure" in second.error.message
    assert cancelled.error.code == fake.TritonError.CANCELLED
    ref = reference_logits([rows[0], rows[2], solo])
    assert np.abs(first.output(LOGITS)[0] - ref[0]).max() <= 1e-5
    assert np.abs(third.output(LOGITS)[0] - ref[1]).max() <= 1e-5
    assert np.abs(long_row.output(LOGITS)[0] - ref[2]).max() <= 1e-5
    assert any(level == "error" and "kernel failure" in msg for level, msg in fake.Logger.messages)


def assert_refused_at_load(repository, config: str, setting: str, bad: str, error=ConfigError) -> None:
    """The encoder's config with ``setting``'s value replaced by ``bad`` fails to load, naming it."""
    broken = re.sub(rf'(key: "{setting}" value: {{ string_value: )"[^"]*"', rf'\1"{bad}"', config)
    assert broken != config
    instance = load_model(repository / ENCODER_MODEL / "1" / "model.py", ENCODER_MODEL)
    with pytest.raises(error, match=setting):
        instance.initialize(args_for(repository, ENCODER_MODEL, broken))


def test_encoder_long_row_lane_setting(repository):
    """The python-ort template turns the long-row lane on; anything but "0"/"1" fails to load."""
    config = (repository / ENCODER_MODEL / "config.pbtxt").read_text()
    assert 'key: "long_row_lane" value: { string_value: "1" }' in config
    encoder = model(repository, ENCODER_MODEL)
    try:
        assert encoder.scheduler.lanes == ("short", "long") and len(encoder.scheduler.threads) == 2
    finally:
        encoder.finalize()
    assert_refused_at_load(repository, config, "long_row_lane", "yes")


def test_encoder_intra_op_spinning_setting(repository):
    """The python-ort template turns ONNX Runtime's spinning threads off (BENCHMARKS.md: they
    took the cores a concurrent run needed); anything but "0"/"1" fails to load."""
    config = (repository / ENCODER_MODEL / "config.pbtxt").read_text()
    encoder = model(repository, ENCODER_MODEL)
    try:
        options = encoder.encoder.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    finally:
        encoder.finalize()
    assert_refused_at_load(repository, config, "intra_op_spinning", "off")


def test_encoder_queue_bounds_are_parameters_not_a_triton_queue_policy(repository):
    """The deploy's queue timeout and size reach the row scheduler as parameters; neither the
    encoder nor the tokenizer has a Triton queue policy (one made Triton 2.51's batcher lose
    wake-ups: 500 ms stalls, encoder_model.queue_settings). A bad value fails to load."""
    for name in (ENCODER_MODEL, TOKENIZER_MODEL):
        assert "default_queue_policy" not in (repository / name / "config.pbtxt").read_text()
    config = (repository / ENCODER_MODEL / "config.pbtxt").read_text()
    assert 'key: "queue_timeout_us" value: { string_value: "30000000" }' in config
    assert 'key: "max_queue_size" value: { string_value: "1024" }' in config
    encoder = model(repository, ENCODER_MODEL)
    try:
        assert (encoder.scheduler.default_timeout_s, encoder.scheduler.max_pending) == (30.0, 1024)
    finally:
        encoder.finalize()
    assert_refused_at_load(repository, config, "max_queue_size", "0", error=ValueError)


class ClosedSender(fake.ResponseSender):
    """A sender the server has closed (e.g. its client went away): sending raises."""

    def send(self, response=None, flags=0):
        raise RuntimeError("Unable to send response: the response sender is closed")


def test_encoder_scheduler_lane_survives_a_sender_that_fails(repository, spec):
    """A response a scheduler lane cannot send (a batch with a long row, admitted) is logged and
    the lane still answers the requests queued after it."""
    encoder = model(repository, ENCODER_MODEL)
    solo = [1] * encoder.scheduler.solo_tokens  # a long row: the batch goes to the scheduler
    try:
        def request(row, sender=None):
            inputs = {INPUT_IDS: np.array([row]), ATTENTION_MASK: np.ones((1, len(row)), np.int64)}
            return Request(inputs, sender=sender) if sender else Request(inputs)

        closed, first = request(solo, ClosedSender()), request(solo)
        assert encoder.execute([closed, first]) is None
        assert first.sender.wait().error is None
        later = request(solo)
        assert encoder.execute([later]) is None
        assert later.sender.wait().error is None
    finally:
        encoder.finalize()
    assert any(level == "error" and "could not be sent" in msg and "sender is closed" in msg
               for level, msg in fake.Logger.messages)
