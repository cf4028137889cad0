"""Helpers for the reliability tests: a numpy reference for any request, outcome accounting,
memory of the server's process tree, Python-backend stubs and their /dev/shm regions."""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import psutil

from opencc_cm_contract import FLAGGED, HARM_CATEGORIES, LABEL_FLAGS, SCORES, TOKEN_COUNT
from opencc_cm_contract.text_rules import InputError, check_token_count, decode_text, encode_texts, pad_right

from serving_calls import OUTPUTS, ids_inputs, params, text_inputs
from toy_bundle import WORDS, toy_logits

SCORE_ATOL = 1e-5          # fp32 ONNX Runtime vs float64 numpy
FLAG_MARGIN = 1e-5         # a flag is only judged where the score is this far from its threshold
STUB_NAME = "triton_python_backend_stub"
MIB = 1 << 20

QUEUE_SIZE = 8                    # max_queue_size of every model on the session server (rel_server)
MAX_TEXT_BYTES = 16 * 64          # deploy default for the toy bundle: 16 x max_tokens
PROFILES = {                      # the session server's threshold profiles file
    "strict": {label: 0.3 for label in HARM_CATEGORIES},
    "lenient": {label: 0.9 for label in HARM_CATEGORIES},
    "everything": {label: 0.0 for label in HARM_CATEGORIES},
    "nothing": {label: 1.0 for label in HARM_CATEGORIES},
}


# --- reference ----------------------------------------------------------------------------
@dataclass(repr=False)
class Reference:
    """Expected outputs for text or id rows, computed from the toy graph's weights."""

    bundle: Path
    spec: object
    tokenizer: object
    profiles: dict[str, tuple[float, ...]]

    def __repr__(self) -> str:
        return f"Reference({self.bundle})"

    def thresholds(self, profile: str | None) -> np.ndarray:
        if profile is None or profile == "default":
            return np.asarray(self.spec.thresholds, dtype=np.float64)
        return np.asarray(self.profiles[profile], dtype=np.float64)

    def token_rows(self, texts: Sequence[bytes | str], max_text_bytes: int) -> list[list[int]]:
        """Ids as the server's tokenizer model makes them; InputError where it would reject."""
        decoded = [decode_text(t, f"text[{i}]", max_text_bytes) for i, t in enumerate(texts)]
        rows = encode_texts(self.tokenizer, decoded)
        for i, row in enumerate(rows):
            check_token_count(row, f"text[{i}]", self.spec.max_tokens)
        return rows

    def for_rows(self, rows: list[list[int]], profile: str | None = None) -> dict[str, np.ndarray]:
        logits = toy_logits(self.bundle, rows)
        scores = 1.0 / (1.0 + np.exp(-logits))
        return {SCORES: scores, "thresholds": self.thresholds(profile),
                TOKEN_COUNT: np.array([[len(r)] for r in rows], dtype=np.int64)}


def mismatch(result: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> str | None:
    """None when ``result`` equals the reference (within numeric tolerance), else what differs."""
    scores = result.get(SCORES)
    if scores is None or scores.shape != ref[SCORES].shape:
        return f"scores shape {None if scores is None else scores.shape} != {ref[SCORES].shape}"
    diff = float(np.abs(scores.astype(np.float64) - ref[SCORES]).max())
    if diff > SCORE_ATOL:
        return f"scores differ by {diff:.3g}"
    thresholds = ref["thresholds"][None, :]
    clear = np.abs(scores.astype(np.float64) - thresholds) > FLAG_MARGIN
    want = scores.astype(np.float64) >= thresholds
    flags = result[LABEL_FLAGS]
    if flags.shape != want.shape or (flags != want)[clear].any():
        return "label_flags differ"
    if not np.array_equal(result[FLAGGED].ravel(), flags.any(axis=1)):
        return "flagged is not any(label_flags)"
    if not np.array_equal(result[TOKEN_COUNT].reshape(-1), ref[TOKEN_COUNT].reshape(-1)):
        return f"token_count {result[TOKEN_COUNT].ravel().tolist()} != {ref[TOKEN_COUNT].ravel().tolist()}"
    return None


# --- requests with known answers -------------------------------------------------------------
@dataclass
class Case:
    """One request (text or ids ensemble) and its reference answer."""

    model: str
    inputs_fn: object  # () -> list[InferInput] (fresh objects per call)
    profile: str | None
    ref: dict[str, np.ndarray]

    def inputs(self):
        return self.inputs_fn()


def sentence(rng, low=1, high=12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_cases(reference: Reference, count: int, seed: int = 7, profiles=(None, "default", "strict", "lenient",
                                                                          "everything", "nothing")) -> list[Case]:
    """Mixed text / ids requests of 1-3 rows with rotating profiles, each with its reference."""
    import random

    from opencc_cm_contract import IDS_ENSEMBLE, TEXT_ENSEMBLE

    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        texts = [sentence(rng) for _ in range(rng.randint(1, 3))]
        try:
            rows = reference.token_rows(texts, 1 << 20)
        except InputError:
            continue
        profile = profiles[len(cases) % len(profiles)]
        ref = reference.for_rows(rows, profile)
        if len(cases) % 2 == 0:
            cases.append(Case(TEXT_ENSEMBLE, lambda texts=texts: text_inputs(texts), profile, ref))
        else:
            ids, mask = pad_right(rows, reference.spec.pad_token_id)
            cases.append(Case(IDS_ENSEMBLE, lambda ids=ids, mask=mask: ids_inputs(ids, mask), profile, ref))
    return cases


def result_dict(result) -> dict[str, np.ndarray]:
    return {name: result.as_numpy(name) for name in OUTPUTS}


def classify_outcome(result, error, ref) -> tuple[str, str]:
    """``(kind, detail)``: kind "ok", "WRONG" or the gRPC status name of the error."""
    if error is not None:
        code = str(error.status() or "NONE").replace("StatusCode.", "")
        return code, error.message() or ""
    problem = mismatch(result_dict(result), ref)
    return ("ok", "") if problem is None else ("WRONG", problem)


def fire_cases(client, cases: Sequence[Case], timeout_s: float = 30.0) -> list[tuple[str, str]]:
    """Send every case at once (async gRPC); wait for all (bounded); outcome per case, in order."""
    done: queue.Queue = queue.Queue()
    for i, case in enumerate(cases):
        client.async_infer(case.model, case.inputs(), parameters=params(case.profile), client_timeout=timeout_s,
                           callback=lambda result, error, i=i: done.put((i, result, error)))
    out: list = [None] * len(cases)
    deadline = time.monotonic() + timeout_s + 10
    for _ in cases:
        i, result, error = done.get(timeout=max(0.1, deadline - time.monotonic()))
        out[i] = classify_outcome(result, error, cases[i].ref)
    return out


# --- server process tree ---------------------------------------------------------------------
def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def tree_rss(pid: int) -> int:
    """RSS of tritonserver plus every descendant (the Python-backend stubs), bytes."""
    total = 0
    for proc in process_tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class RssSampler:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds in a thread (bounded by ``max_s``)."""

    def __init__(self, pid: int, interval: float = 0.05, max_s: float = 300.0):
        self.pid, self.interval, self.max_s = pid, interval, max_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        end = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < end:
            self.samples.append((time.monotonic(), tree_rss(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(v for _, v in self.samples)


def stubs(pid: int) -> dict[str, psutil.Process]:
    """Python-backend stub processes of a tritonserver, by model name (from the stub's command line),
    found through psutil: independent of the launcher's ``python_stubs``, which the outage test checks
    against it."""
    out = {}
    for proc in process_tree(pid)[1:]:
        try:
            if proc.name() == STUB_NAME:
                model_py = Path(proc.cmdline()[1])
                out[model_py.parent.parent.name] = proc
        except (psutil.NoSuchProcess, IndexError):
            pass
    return out


def stub_shm_regions(pid: int) -> set[str]:
    """The /dev/shm region names this server's stubs were started with (a stub's argv[2]; the
    launcher gives each server its own region prefix)."""
    regions = set()
    for proc in stubs(pid).values():
        try:
            regions.update(proc.cmdline()[2:3])
        except psutil.NoSuchProcess:
            pass
    return regions


def remove_leaked_regions(regions: set[str]) -> list[str]:
    """Unlink the given regions of a stopped server that still exist in /dev/shm; returns them."""
    leaked = [name for name in sorted(regions) if (Path("/dev/shm") / name).exists()]
    for name in leaked:
        try:
            os.unlink(Path("/dev/shm") / name)
        except OSError:
            pass
    return leaked


# --- accounting -----------------------------------------------------------------------------
@dataclass
class Tally:
    counts: collections.Counter = field(default_factory=collections.Counter)
    examples: dict = field(default_factory=dict)

    def add(self, key, detail: str = ""):
        self.counts[key] += 1
        self.examples.setdefault(key, detail[:200])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def table(self, title: str) -> str:
        lines = [f"{title}: {self.total}"]
        for key, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            example = self.examples.get(key)
            lines.append(f"  {n:6d}  {key}" + (f"   e.g. {example!r}" if example else ""))
        return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")
