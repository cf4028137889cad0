"""Triton model ``tokenizer``: ``text`` BYTES [batch, 1] -> ``input_ids``, ``attention_mask``
INT64 [rows, seq], right padded within the request (to a length bucket when configured), and
``text_row`` INT64 [rows, 1] (the text each row came from) and ``window_start`` INT64 [rows, 1]
(offset of the row's first token in that text; 0 unless windowed).

``long_input_policy=reject``: rows == batch, a text above max_tokens is INVALID_ARG.
``long_input_policy=windows``: a long text becomes overlapping windows of max_tokens tokens
(``window_overlap`` shared), so rows >= batch (at most max_batch_size, else INVALID_ARG);
calibration folds them back to one row per text (max score per label).
Config parameters: ``artifact_dir`` (holds tokenizer.json, classifier.json),
``long_input_policy``, ``window_overlap``, ``max_text_bytes``, ``length_buckets`` (``""`` = none),
``special_tokens_in_text`` (``special``: special-token strings in the text are special tokens,
as in the reference; ``plain``: ordinary text; see serving/README.md, threat model).
Bad text -> INVALID_ARG naming the row and the problem (see opencc_cm_serving.text); so is a
request parameter outside the contract (opencc_cm_serving.triton.request_parameters).

Large requests: a request whose texts hold more than ``large_request_bytes`` bytes in all is
tokenized by a worker thread, one request at a time and one text at a time, while execute()
goes on answering the others (HF tokenizers' ``encode_batch`` releases the GIL): a short prompt
never waits for megabytes of text to be tokenized, and a request is refused at the first text
that breaks a limit (text_rules / texts_to_rows), before the texts after it are encoded. At
most ``large_request_queue`` large requests wait for the worker; beyond that a large request is
answered UNAVAILABLE at once. Every response goes through the request's response sender (one
final response per request), under one lock: Triton 2.51's Python backend crashed when a stub's
threads sent messages to the server at the same time.
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import json  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402

import numpy as np  # noqa: E402

from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, TEXT, TEXT_ROW, TOKENIZER_MODEL, WINDOW_START  # noqa: E402
from opencc_cm_contract.metadata import PARAM_SPECIAL_TOKENS  # noqa: E402
from opencc_cm_contract.text_rules import SPECIAL, SPECIAL_TOKEN_MODES, pad_right  # noqa: E402
from opencc_cm_serving.bundle import CLASSIFIER_FILE, TOKENIZER_FILE, load_classifier  # noqa: E402
from opencc_cm_serving.errors import ConfigError, InputError  # noqa: E402
from opencc_cm_serving.ids import padded_width, parse_buckets  # noqa: E402
from opencc_cm_serving.text import POLICIES, decode_text, encode_texts, load_tokenizer, texts_to_rows  # noqa: E402
from opencc_cm_serving.triton import (  # noqa: E402
    cancelled_response, error_response, input_array, outputs_response, parameters, pb, request_parameters, require,
    unavailable_response, version_path,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", TOKENIZER_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        special = params.get(PARAM_SPECIAL_TOKENS, SPECIAL)
        if special not in SPECIAL_TOKEN_MODES:
            raise ConfigError(f"{TOKENIZER_MODEL}: special_tokens_in_text {special!r} is not one of {SPECIAL_TOKEN_MODES}")
        self.tokenizer = load_tokenizer(artifacts / TOKENIZER_FILE, special)
        self.policy = require(params, "long_input_policy", TOKENIZER_MODEL)
        if self.policy not in POLICIES:
            raise ConfigError(f"{TOKENIZER_MODEL}: long_input_policy {self.policy!r} is not one of {POLICIES}")
        self.overlap = int(require(params, "window_overlap", TOKENIZER_MODEL))
        if not 0 <= self.overlap < self.spec.max_tokens:
            raise ConfigError(f"{TOKENIZER_MODEL}: window_overlap {self.overlap} not in [0, {self.spec.max_tokens})")
        self.max_rows = int(config["max_batch_size"])
        self.max_text_bytes = int(require(params, "max_text_bytes", TOKENIZER_MODEL))
        self.buckets = parse_buckets(require(params, "length_buckets", TOKENIZER_MODEL), self.spec.max_tokens)
        self.large_bytes = int(require(params, "large_request_bytes", TOKENIZER_MODEL))
        large_queue = int(require(params, "large_request_queue", TOKENIZER_MODEL))
        if self.large_bytes < 1 or large_queue < 1:
            raise ConfigError(f"{TOKENIZER_MODEL}: large_request_bytes {self.large_bytes} and large_request_queue "
                              f"{large_queue} must be >= 1")
        encode_texts(self.tokenizer, ["warm up the tokenizer"])  # warmup: first call builds caches
        self._ipc = threading.Lock()  # every response send (see the module doc)
        self._large, self.large_queue = queue.Queue(), large_queue
        self._held, self._held_lock = 0, threading.Lock()  # large requests taken and not yet answered
        self._worker = threading.Thread(target=self._large_loop, name="tokenizer-large", daemon=True)
        self._worker.start()

    def execute(self, requests):
        # One encode_batch over every text of the small requests of this execute():
        # the tokenizer's own threads and the call overhead are paid once per batch, not once
        # per request. Large requests go to the worker (see the module doc).
        senders, texts, spans = {}, [], {}
        for i, request in enumerate(requests):
            senders[i] = request.get_response_sender()
            try:
                decoded, size = self._decode(request)
            except Exception as exc:  # noqa: BLE001 - that request's error only
                self._send(senders[i], error_response(exc, TOKENIZER_MODEL))
                continue
            if size > self.large_bytes:
                with self._held_lock:  # one tokenizing, large_queue waiting
                    taken = self._held < 1 + self.large_queue
                    self._held += taken
                if taken:
                    self._large.put((request, senders[i], decoded))
                else:
                    self._send(senders[i], self._busy(size))
                continue
            spans[i] = (len(texts), len(texts) + len(decoded))
            texts.extend(decoded)
        try:
            encoded = encode_texts(self.tokenizer, texts) if texts else []
        except Exception:  # noqa: BLE001 - encode each request alone so one cannot fail the others
            encoded = None
        for i, (start, end) in spans.items():
            try:
                rows = encoded[start:end] if encoded is not None else encode_texts(self.tokenizer, texts[start:end])
                response = outputs_response(self._rows(rows))
            except Exception as exc:  # noqa: BLE001
                response = error_response(exc, TOKENIZER_MODEL)
            self._send(senders[i], response)
        return None

    def finalize(self):
        while True:  # the large requests not started yet are answered, then the worker stops
            try:
                _, sender, _ = self._large.get_nowait()
            except queue.Empty:
                break
            self._send(sender, unavailable_response(TOKENIZER_MODEL, "model is stopping"))
        self._large.put(None)
        self._worker.join(timeout=10)

    def _large_loop(self):
        while (item := self._large.get()) is not None:
            request, sender, texts = item
            try:
                if self._cancelled(request):  # its client gave up while it waited: not tokenized
                    response = cancelled_response(TOKENIZER_MODEL)
                else:
                    # one text at a time, stopping at the first one over a limit (texts_to_rows)
                    lazy = (encode_texts(self.tokenizer, [text])[0] for text in texts)
                    response = outputs_response(self._rows(lazy))
            except Exception as exc:  # noqa: BLE001
                response = error_response(exc, TOKENIZER_MODEL)
            self._send(sender, response)
            with self._held_lock:
                self._held -= 1

    def _cancelled(self, request) -> bool:
        with self._ipc:
            return request.is_cancelled()

    def _send(self, sender, response):
        """Send a request's one final response; a failed send (its client gone) is logged and
        never stops the other requests of the batch or the worker."""
        utils = pb()
        try:
            with self._ipc:
                sender.send(response, flags=utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001
            utils.Logger.log_error(f"{TOKENIZER_MODEL}: sending a response failed: {exc!r}")

    def _busy(self, size):
        return unavailable_response(TOKENIZER_MODEL, f"{self.large_queue} large requests (above {self.large_bytes} "
                                    f"bytes of text) already wait to be tokenized; this one has {size} bytes: "
                                    "retry later or send less text")

    def _decode(self, request):
        """The request's texts, checked, and their total size in bytes."""
        request_parameters(request)  # first step of classify_text: refuse unknown parameters before any work
        raw = input_array(request, TEXT)
        if raw.ndim != 2 or raw.shape[1] != 1:
            raise InputError(f"{TEXT}: expected shape [batch, 1], got {list(raw.shape)}")
        texts = [decode_text(x, f"{TEXT}[{i}]", self.max_text_bytes) for i, x in enumerate(raw[:, 0])]
        return texts, sum(len(x) for x in raw[:, 0])

    def _rows(self, encoded):
        rows, text_row, starts = texts_to_rows(encoded, self.policy, self.spec.max_tokens, self.overlap, self.max_rows,
                                               TEXT)
        width = padded_width(max(len(r) for r in rows), self.buckets)
        ids, mask = pad_right(rows, self.spec.pad_token_id, width)
        return {INPUT_IDS: ids, ATTENTION_MASK: mask, TEXT_ROW: np.asarray(text_row, dtype=np.int64)[:, None],
                WINDOW_START: np.asarray(starts, dtype=np.int64)[:, None]}
