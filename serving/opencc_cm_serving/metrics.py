"""Per-label Prometheus metrics from the calibration model (Triton's custom metrics API), or from
the Python-backend encoder where calibration is folded into it (same families and labels, the
``model`` label still the calibration model's name; encoder_model.py).

Exported on Triton's metrics port (``/metrics``) next to Triton's own ``nv_*`` metrics, with the
labels ``model`` (the calibration model's name: one per classifier in the server) and
``profile`` (the threshold profile the request asked for):

- ``opencc_cm_texts_total{model,profile}``: texts classified (one per request row).
- ``opencc_cm_tokens_total{model,profile}``: their input tokens (the text's own count).
- ``opencc_cm_flagged_total{model,profile}``: texts flagged (any label fired).
- ``opencc_cm_label_flags_total{model,profile,label}``: texts on which ``label`` fired.
- ``opencc_cm_failures_total{model,cause}``: calibration requests refused, by cause
  (``unknown_profile``, ``invalid_input``, ``non_finite_logits``, ``internal``). Requests refused
  earlier (bad text in ``tokenizer``, bad ids in ``ids_preprocess``) are in Triton's own
  ``nv_inference_request_failure{model=...}``.

Each increment is a round trip from the Python stub to the server (~0.2 ms measured, see
BENCHMARKS.md), so ``execute()`` only adds to in-process sums, sent one increment per (metric,
label set) that changed (:class:`FlushTimer`): by the model's own thread at the start of an
``execute()`` once ``flush_interval_s`` (1 s) passed since the last send, or by a background
thread when no ``execute()`` started for that long. The scrape lags by about that interval,
whatever the request rate. ``close()`` (the model's ``finalize``) sends the rest.
Drift (fire rate per label) in PromQL::

    sum by (label) (rate(opencc_cm_label_flags_total{profile="default"}[1h]))
      / on() group_left sum(rate(opencc_cm_texts_total{profile="default"}[1h]))
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

import numpy as np

from .errors import InputError

TEXTS = "opencc_cm_texts_total"
TOKENS = "opencc_cm_tokens_total"
FLAGGED = "opencc_cm_flagged_total"
LABEL_FLAGS = "opencc_cm_label_flags_total"
FAILURES = "opencc_cm_failures_total"
FAMILIES = {
    TEXTS: "Texts classified (one per request row)",
    TOKENS: "Input tokens of the texts classified",
    FLAGGED: "Texts flagged (any label fired)",
    LABEL_FLAGS: "Texts on which the label fired",
    FAILURES: "Calibration requests refused, by cause",
}
CAUSES = ("unknown_profile", "invalid_input", "non_finite_logits", "internal")


def failure_cause(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        text = str(exc)
        if text.startswith("unknown threshold_profile"):
            return "unknown_profile"
        return "non_finite_logits" if "non-finite" in text else "invalid_input"
    return "non_finite_logits" if isinstance(exc, FloatingPointError) else "internal"


class FlushTimer:
    """When buffered counters are sent: ``due()`` (the model's thread, at the start of
    ``execute()``) once ``interval_s`` passed since the last send, and the background thread
    (``start(flush)``) only when no ``execute()`` started for ``interval_s``.

    Why not a plain timer thread: a message the stub sends from another thread while its main
    thread hands ``execute()``'s responses back stalled that batch by ~0.5 s under Triton 2.51
    (BENCHMARKS.md, "Serving path under concurrency"); sends from the model's own thread, between
    batches, cannot overlap its responses, and an idle model still gets its counts out."""

    def __init__(self, interval_s: float, clock=time.monotonic):
        self.interval_s, self.clock = interval_s, clock
        self.last_send = self.last_execute = clock()
        self._stop = threading.Event()
        self._thread = None

    def due(self) -> bool:
        now = self.last_execute = self.clock()
        if now - self.last_send < self.interval_s:
            return False
        self.last_send = now
        return True

    def start(self, flush, name: str) -> None:
        self._thread = threading.Thread(target=self._idle_loop, args=(flush,), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _idle_loop(self, flush) -> None:
        while not self._stop.wait(self.interval_s):
            now = self.clock()
            if now - self.last_execute >= self.interval_s and now - self.last_send >= self.interval_s:
                self.last_send = now
                flush()


class ClassifierMetrics:
    """Counters of one calibration model; ``pb_utils`` is ``triton_python_backend_utils``."""

    def __init__(self, pb_utils, model: str, labels: tuple[str, ...], flush_interval_s: float | None = 1.0,
                 ipc_lock=None):
        """``ipc_lock``: held around each increment (a message to the server) when the model has
        other threads talking to the server too (the encoder's lanes)."""
        self.model, self.labels = model, labels
        self._ipc = ipc_lock if ipc_lock is not None else contextlib.nullcontext()
        kind = pb_utils.MetricFamily.COUNTER
        # the families and metrics must outlive every increment: keep them on the instance
        self._families = {name: pb_utils.MetricFamily(name=name, description=text, kind=kind)
                          for name, text in FAMILIES.items()}
        self._metrics: dict[tuple, object] = {}
        self._pending: Counter = Counter()
        self._lock = threading.Lock()
        self.timer = None
        if flush_interval_s:
            self.timer = FlushTimer(flush_interval_s)
            self.timer.start(self.flush, f"{model}-metrics")

    def flush_if_due(self) -> None:
        """Call at the start of ``execute()``: sends the counts once the interval passed."""
        if self.timer is not None and self.timer.due():
            self.flush()

    def record(self, profile: str, label_flags: np.ndarray, tokens: np.ndarray) -> None:
        """Count one answered request: ``label_flags`` BOOL [rows, labels], ``tokens`` [rows, 1]."""
        fired = label_flags.sum(axis=0)
        with self._lock:
            self._pending[(TEXTS, profile, None)] += int(label_flags.shape[0])
            self._pending[(TOKENS, profile, None)] += int(tokens.sum())
            self._pending[(FLAGGED, profile, None)] += int(label_flags.any(axis=1).sum())
            for column in np.flatnonzero(fired):
                self._pending[(LABEL_FLAGS, profile, self.labels[column])] += int(fired[column])

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self._pending[(FAILURES, failure_cause(exc), None)] += 1

    def flush(self) -> None:
        """Send what was counted since the last flush: one increment per (metric, label set)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        for (family, key, label), value in pending.items():
            if value:
                with self._ipc:
                    self._metric(family, key, label).increment(value)

    def close(self) -> None:
        """Stop the background thread and send what is left."""
        if self.timer is not None:
            self.timer.stop()
        self.flush()

    def _metric(self, family: str, key: str, label: str | None):
        ident = (family, key, label)
        if ident not in self._metrics:
            labels = {"model": self.model, ("cause" if family == FAILURES else "profile"): key}
            if label is not None:
                labels["label"] = label
            self._metrics[ident] = self._families[family].Metric(labels=labels)
        return self._metrics[ident]
