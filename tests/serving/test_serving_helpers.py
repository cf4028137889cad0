"""Pure helpers of opencc_cm_serving, without a server."""
from __future__ import annotations

import re

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencc_cm_serving.batching import group_cost, plan_groups, run_grouped
from opencc_cm_serving.bundle import load_classifier, load_profiles, resolve_thresholds
from opencc_cm_serving.calibration import ThresholdProfiles, activate, decide, fold_plan, reduce_windows
from opencc_cm_serving.errors import ConfigError, InputError
from opencc_cm_contract.text_rules import pad_right
from opencc_cm_serving.ids import padded_width, parse_buckets, right_padded_lengths, validate_ids
from opencc_cm_serving.text import check_token_count, decode_text, split_windows, texts_to_rows

LABELS = ("A", "B", "Information Integrity")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=80), st.floats(0.0, 0.9),
       st.integers(1, 64), st.integers(1, 4096), st.sampled_from([None, 0, 64, 1000, 16384]))
def test_plan_groups_partitions_with_bounded_waste(lengths, fraction, max_rows, max_tokens, span):
    groups = plan_groups(lengths, fraction, max_rows, max_tokens, attention_span=span)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        padded = len(group) * max(sizes)
        if len(group) > 1:
            assert len(group) <= max_rows and padded <= max_tokens
            assert group_cost(len(group), max(sizes), span) <= max_tokens
            assert padded - sum(sizes) <= fraction * padded + 1e-9


def test_group_cost_counts_attention_quadratically():
    assert group_cost(4, 100, None) == group_cost(4, 100, 0) == 400
    assert group_cost(1, 8192, 8192) == 2 * 8192  # at the span, attention doubles a token's cost
    assert group_cost(1, 2048, 1024) == 3 * group_cost(1, 2048, None)
    with pytest.raises(ValueError, match="attention_span"):
        plan_groups([1, 2], 0.5, 8, 100, attention_span=-1)


def test_long_rows_never_share_a_run_while_short_rows_do():
    # Rows x width alone lets two max-length rows (2 x 8,192 = 16,384 cells) share one run ...
    assert len(plan_groups([8192, 8192], 0.25, 64, 16384)) == 1
    # ... counting attention's square, each runs alone, and a window-sized pair as well.
    assert [g.tolist() for g in plan_groups([8192, 8192], 0.25, 64, 16384, attention_span=16384)] == [[0], [1]]
    assert [len(g) for g in plan_groups([4096] * 4, 0.25, 64, 16384, attention_span=16384)] == [3, 1]
    assert len(plan_groups([4096] * 4, 0.25, 64, 16384)) == 1
    # 64 short rows (64 x 128 = 8,192 cells, x 1.008) still run together.
    assert len(plan_groups([128] * 64, 0.25, 64, 16384, attention_span=16384)) == 1
    # The same cell count at growing width costs more: 8 x 2,048 no longer fits, 4 x 2,048 does.
    assert [len(g) for g in plan_groups([2048] * 8, 0.25, 64, 16384, attention_span=16384)] == [7, 1]


def test_plan_groups_keeps_similar_lengths_together():
    groups = plan_groups([10, 11, 12, 200, 201, 10], 0.25, 64, 10_000)
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 1, 2, 5], [3, 4]]


def test_run_grouped_restores_order():
    rows = [np.arange(n) + 1 for n in (5, 1, 3, 5, 2)]
    seen = []

    def run(ids, mask):
        seen.append(ids.shape)
        return np.stack([ids[i, mask[i] == 1].sum(keepdims=True) for i in range(len(ids))])

    out = run_grouped(rows, 0, plan_groups([len(r) for r in rows], 0.0, 64, 1000), run)
    assert out.ravel().tolist() == [r.sum() for r in rows]
    assert all(shape[1] in (1, 2, 3, 5) for shape in seen)


@pytest.mark.parametrize("raw, problem", [
    (b"", "empty string"), (b"   ", "whitespace-only"), (b"\xc3", "invalid UTF-8 at byte offset 0"),
    (b"ok\x00", "NUL byte at byte offset 2"), (b"x" * 11, "11 bytes, above max_text_bytes 10"),
])
def test_decode_text_rejections(raw, problem):
    with pytest.raises(InputError, match=problem):
        decode_text(raw, "text[0]", 10)


def test_decode_text_accepts_unicode():
    assert decode_text("中文 🙂".encode(), "text[0]", 100) == "中文 🙂"
    with pytest.raises(InputError, match="above max_tokens 2"):
        check_token_count([1, 2, 3], "text[0]", 2)


def test_validate_ids_and_padding():
    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0)
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert validate_ids(ids, mask, vocab_size=10, max_tokens=3).tolist() == [3, 1]
    with pytest.raises(InputError, match="outside \\[0, 8\\)"):
        validate_ids(ids, mask, vocab_size=8, max_tokens=3)
    with pytest.raises(InputError, match="empty batch or sequence"):
        validate_ids(ids[:0], mask[:0], vocab_size=10, max_tokens=3)
    with pytest.raises(InputError, match="row 1 is not right padded"):
        right_padded_lengths(np.array([[1, 1], [0, 1]]))
    with pytest.raises(InputError, match="found 3 at row 0, column 1"):
        right_padded_lengths(np.array([[1, 3]]))


def test_buckets():
    buckets = parse_buckets("16, 32,64,128", max_tokens=100)
    assert buckets == (16, 32, 64, 100)
    assert [padded_width(n, buckets) for n in (1, 16, 17, 65, 100)] == [16, 16, 32, 100, 100]
    assert parse_buckets("", 100) == () and padded_width(7, ()) == 7


def test_thresholds_validation():
    assert resolve_thresholds(LABELS, {"A": 0, "B": 1, "Integrity & Quality violations": 0.5}, "t") == (0.0, 1.0, 0.5)
    for mapping, problem in [({"A": 0.1, "B": 0.1}, "missing"), ({"A": 0.1, "B": 0.1, "C": 0.1}, "unknown label"),
                             ({"A": 1.5, "B": 0, "Information Integrity": 0}, "in \\[0, 1\\]"),
                             ({"A": True, "B": 0, "Information Integrity": 0}, "in \\[0, 1\\]"),
                             ({"A": 0, "B": 0, "Information Integrity": 0, "Integrity & Quality violations": 0},
                              "more than once")]:
        with pytest.raises(ConfigError, match=problem):
            resolve_thresholds(LABELS, mapping, "t")


def test_profiles_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"profiles": {"strict": {"A": 0.1, "B": 0.2, "Information Integrity": 0.3}}}))
    assert load_profiles(path, LABELS) == {"strict": (0.1, 0.2, 0.3)}
    path.write_text(json.dumps({"profiles": {"1x": {}}}))
    with pytest.raises(ConfigError, match="not a simple identifier"):
        load_profiles(path, LABELS)


def test_classifier_spec_errors(tmp_path):
    path = tmp_path / "classifier.json"
    good = {"labels": list(LABELS), "thresholds": {k: 0.5 for k in LABELS}, "objective": "multilabel",
            "num_labels": 3, "vocab_size": 10, "pad_token_id": 0, "max_tokens": 8}
    path.write_text(json.dumps(good))
    assert load_classifier(path).num_labels == 3
    for change, problem in [({"num_labels": 4}, "num_labels"), ({"pad_token_id": 10}, "pad_token_id"),
                            ({"objective": "x"}, "objective"), ({"max_tokens": 0}, "max_tokens")]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ConfigError, match=problem):
            load_classifier(path)


def test_scores_and_decisions():
    logits = np.array([[0.0, 100.0, -200.0]], np.float32)
    scores = activate(logits, "multilabel")
    assert scores.dtype == np.float32 and scores.tolist() == [[0.5, 1.0, 0.0]]
    flags, flagged = decide(scores, np.array([0.5, 1.0, 0.01]))
    assert flags.tolist() == [[True, True, False]] and flagged.tolist() == [[True]]  # >= fires at equality
    assert np.allclose(activate(np.array([[1.0, 1.0]]), "softmax"), 0.5)


def test_profiles_are_read_only():
    profiles = ThresholdProfiles((0.5, 0.5), {"low": (0.1, 0.1)})
    with pytest.raises(ValueError):
        profiles.select("low")[0] = 0.9
    with pytest.raises(TypeError):
        profiles._table["new"] = np.zeros(2)
    with pytest.raises(InputError, match="unknown threshold_profile 'zzz'"):
        profiles.select("zzz")
    assert profiles.select(None).tolist() == [0.5, 0.5]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.integers(1, 64), st.data())
def test_windows_cover_the_text(n, max_tokens, data):
    overlap = data.draw(st.integers(0, max_tokens - 1))
    ids = list(range(n))
    windows = split_windows(ids, max_tokens, overlap)
    assert all(1 <= len(w) <= max_tokens for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == n - 1
    covered = set()
    for prev, cur in zip(windows, windows[1:]):
        assert len(set(prev) & set(cur)) >= min(overlap, len(cur))
    for w in windows:
        assert w == list(range(w[0], w[0] + len(w)))  # contiguous slices of the text
        covered |= set(w)
    assert covered == set(ids)


def test_texts_to_rows_policies():
    rows, text_row, starts = texts_to_rows([[1] * 10, [2, 3]], "windows", max_tokens=4, overlap=1, max_rows=8)
    assert [len(r) for r in rows] == [4, 4, 4, 2] and text_row == [0, 0, 0, 1] and starts == [0, 3, 6, 0]
    with pytest.raises(InputError, match="text\\[0\\]: 10 tokens, above max_tokens 4"):
        texts_to_rows([[1] * 10], "reject", 4, 1, 8)
    with pytest.raises(InputError, match="text\\[0\\] to text\\[1\\] alone make 6 windows .* above max_batch_size 5"):
        texts_to_rows([[1] * 10, [1] * 10], "windows", 4, 1, 5)
    with pytest.raises(InputError, match="0 tokens"):
        texts_to_rows([[]], "windows", 4, 1, 5)
    with pytest.raises(InputError, match="empty batch"):
        texts_to_rows([], "reject", 4, 1, 5)


def test_texts_to_rows_stops_at_the_first_text_over_a_limit():
    """Lazy texts: the texts after the first one that breaks a limit are never encoded."""
    encoded = []

    def lazy(texts):
        for ids in texts:
            encoded.append(len(ids))
            yield ids

    with pytest.raises(InputError, match="text\\[0\\] to text\\[1\\] alone make 6 windows"):
        texts_to_rows(lazy([[1] * 10, [1] * 10, [1] * 10, [1] * 10]), "windows", 4, 1, 5)
    assert encoded == [10, 10]
    encoded.clear()
    with pytest.raises(InputError, match="text\\[1\\]: 10 tokens, above max_tokens 4"):
        texts_to_rows(lazy([[1] * 3, [1] * 10, [1] * 10]), "reject", 4, 1, 8)
    assert encoded == [3, 10]


def test_fold_plan_counts_each_token_once_and_checks_the_bookkeeping():
    col = lambda *v: np.array(v, dtype=np.int64)[:, None]  # noqa: E731
    # 10 tokens in windows of 4 (starts 0, 3, 6) + a 2-token text: 10 and 2 tokens, not 12 and 2
    first, tokens = fold_plan(np.array([4, 4, 4, 2]), col(0, 0, 0, 1), col(0, 3, 6, 0), 4, window_step=3)
    assert first.tolist() == [0, 3] and tokens.ravel().tolist() == [10, 2]
    first, tokens = fold_plan(np.array([3, 1]), col(0, 1), col(0, 0), 4, window_step=None)
    assert first.tolist() == [0, 1] and tokens.ravel().tolist() == [3, 1]
    bad = [
        ((np.array([2, 1]), col(0, 0), col(0, 0), None), "does not window"),            # reject: no folding
        ((np.array([4, 2]), col(0, 0), col(0, 3), 3), "window of 2 tokens"),            # windows are full
        ((np.array([4, 4]), col(0, 0), col(0, 0), 3), "starts 0 tokens after"),         # same window twice
        ((np.array([4, 4]), col(0, 0), col(0, 9), 3), "starts 9 tokens after"),         # a gap
        ((np.array([4, 4]), col(0, 1), col(0, 2), 3), "first row of text 1 must start at 0"),
        ((np.array([5]), col(0), col(0), 3), "above max_tokens 4"),
        ((np.array([1, 1]), col(1, 2), col(0, 0), 3), "text_row"),
        ((np.array([1, 1]), col(0), col(0, 0), 3), "text_row: expected shape [2, 1]"),
    ]
    for (lengths, rows, starts, step), problem in bad:
        with pytest.raises(InputError, match=re.escape(problem)):
            fold_plan(lengths, rows, starts, 4, step)


def test_reduce_windows():
    values = np.array([[1.0, 5.0], [3.0, 2.0], [0.5, 0.5]])
    assert reduce_windows(values, np.array([[0], [0], [1]]), "max").tolist() == [[3.0, 5.0], [0.5, 0.5]]
    assert reduce_windows(values, np.array([[0], [0], [1]]), "sum").tolist() == [[4.0, 7.0], [0.5, 0.5]]
    assert reduce_windows(values, np.array([[0], [1], [2]]), "max") is values
    for bad in (np.array([[1], [1], [2]]), np.array([[0], [2], [3]]), np.array([[0], [1]]), np.array([0, 1, 2])):
        with pytest.raises(InputError, match="text_row"):
            reduce_windows(values, bad, "max")


_MEMORY_PROBE = r"""
import json, sys
from pathlib import Path
import numpy as np
from opencc_cm_serving.onnx_runner import OnnxEncoder

def rss(field="VmRSS"):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024.0

bundle, memory, length = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
encoder = OnnxEncoder(bundle / "model.onnx", 11, providers="CPUExecutionProvider", intra_op_threads=1, memory=memory)
short = np.ones((1, 16), dtype=np.int64)
encoder(short, short)
before = rss()
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
ids = np.random.default_rng(0).integers(0, 1000, size=(1, length), dtype=np.int64)
assert np.isfinite(encoder(ids, np.ones_like(ids))).all()
peak = rss("VmHWM")
print(json.dumps({"before": before, "peak": peak, "after": rss()}))
"""


def _encoder_memory(bundle, memory, length):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(bundle), memory, str(length)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_encoder_memory_stays_linear_and_is_returned_after_a_long_row(tiny_bundle):
    """The tiny graph before blocked attention took +1,437 MiB for one 4,096-token row
    (and kept it); the blocked graph with the releasing encoder takes ~0.1 GB and gives it back."""
    released = _encoder_memory(tiny_bundle, "release", 4096)
    assert released["peak"] - released["before"] < 400
    assert released["after"] <= 1.10 * released["before"]
    kept = _encoder_memory(tiny_bundle, "arena", 4096)  # the arena keeps its high-water mark
    assert kept["after"] - kept["before"] > 0.5 * (kept["peak"] - kept["before"])


def test_encoder_frees_each_tensor_at_its_last_use(tiny_bundle):
    """ONNX Runtime's buffer-reuse planning held each layer's temporaries through the next layer
    (real-shape graph, 8,192 tokens: +4,027 MiB with it for 8 layers, +657 MiB without; see
    onnx_runner). The encoder turns it off; ``reuse_buffers=True`` is only for benchmarks."""
    from opencc_cm_serving.onnx_runner import OnnxEncoder

    path = tiny_bundle / "model.onnx"
    default = OnnxEncoder(path, 11, providers="CPUExecutionProvider", intra_op_threads=1)
    planned = OnnxEncoder(path, 11, providers="CPUExecutionProvider", intra_op_threads=1, reuse_buffers=True)
    assert default.session.get_session_options().enable_mem_reuse is False
    assert planned.session.get_session_options().enable_mem_reuse is True
    ids = np.random.default_rng(1).integers(1, 1000, size=(2, 300), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 200:] = 0
    assert np.array_equal(default(ids, mask), planned(ids, mask))  # same arithmetic, other buffers
