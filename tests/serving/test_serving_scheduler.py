"""The encoder's row scheduler without a server: which rows run in which order, what is
dropped before it is computed, and that every request gets exactly one answer."""
from __future__ import annotations

import numpy as np

from opencc_cm_serving.scheduler import CANCELLED, EXPIRED, FAILED, OVERLOADED, STOPPING, RowScheduler


class Harness:
    def __init__(self, **kwargs):
        self.now = 0.0
        self.runs: list[list[int]] = []      # lengths of the rows of each run
        self.answers: dict = {}
        self.cancelled: set = set()
        self.fail_on = None
        options = dict(max_pad_fraction=0.25, max_rows=64, max_group_tokens=8, max_pending=16,
                       default_timeout_s=None, max_defer_s=100.0)
        options.update(kwargs)
        self.s = RowScheduler(self.run, self.respond, lambda r: r in self.cancelled, 0, clock=lambda: self.now,
                              **options)

    def run(self, ids, mask):
        lengths = mask.sum(axis=1).tolist()
        if self.fail_on is not None and (ids == self.fail_on).any():
            raise RuntimeError("kernel failure")
        self.runs.append(lengths)
        self.now += sum(lengths) / 8  # a second per long row
        return np.stack([np.full(2, float(ids[i, :n].sum())) for i, n in enumerate(lengths)])

    def respond(self, request, logits=None, outcome=None, error=None):
        assert request not in self.answers, f"{request} answered twice"
        self.answers[request] = logits if logits is not None else outcome

    def admit(self, name, *lengths, timeout=None):
        return self.s.admit(name, [np.full(n, 1 + len(name), np.int64) for n in lengths], timeout_s=timeout)

    def drain(self):
        while self.s.works:
            self.s.step()


def test_short_rows_first_and_between_long_groups():
    h = Harness()
    h.admit("long", 8, 8, 8)
    h.admit("short", 2)
    h.s.step()
    assert h.runs == [[2]] and "short" in h.answers          # the short row ran first
    h.s.step()
    h.admit("later", 3)                                      # arrives while long rows are pending
    h.s.step()
    assert h.runs == [[2], [8], [3]] and "long" not in h.answers
    h.drain()
    assert h.runs == [[2], [8], [3], [8], [8]]
    assert h.answers["long"].shape == (3, 2) and h.answers["short"].tolist() == [[12.0, 12.0]]


def test_long_rows_run_one_at_a_time():
    h = Harness(max_group_tokens=64, solo_tokens=6)
    h.admit("a", 8, 8)
    h.admit("b", 2, 2, 3)
    h.drain()
    assert h.runs == [[2, 2, 3], [8], [8]]


def test_long_rows_do_not_starve():
    h = Harness(max_defer_s=1.5)
    h.admit("long", 8)
    for i in range(10):  # a steady stream of short requests, 0.25 s each
        h.admit(f"s{i}", 2)
        h.s.step()
    assert "long" in h.answers and h.runs.index([8]) == 7  # once it had waited 1.5 s


def test_aged_long_rows_alternate_with_short_ones():
    """Several long requests all older than max_defer_s: a short one still runs after at most
    one of them (the old ones take turns with the short ones, they do not all go first)."""
    h = Harness(max_defer_s=0.5)
    for i in range(4):
        h.admit(f"long{i}", 8)
    h.now = 1.0
    h.admit("short", 2)
    h.s.step()
    h.s.step()
    assert h.runs == [[8], [2]] and "short" in h.answers


def test_cancelled_and_expired_requests_are_not_computed():
    h = Harness()
    h.admit("running", 8)
    h.admit("gone", 8)
    h.admit("late", 8, timeout=0.5)
    h.admit("kept", 8)
    h.s.step()                     # "running" takes a second: "late" expires meanwhile
    h.cancelled.add("gone")        # its client gave up
    h.drain()
    assert h.answers["gone"] == CANCELLED and h.answers["late"] == EXPIRED
    assert h.runs == [[8], [8]] and h.answers["kept"].shape == (1, 2)


def test_admission_is_bounded():
    h = Harness(max_pending=2)
    assert h.admit("a", 2) and h.admit("b", 2)
    assert not h.admit("c", 2) and h.answers["c"] == OVERLOADED
    h.drain()
    assert set(h.answers) == {"a", "b", "c"}


def test_a_failing_request_fails_alone():
    h = Harness(max_group_tokens=64)
    h.admit("good", 3)
    h.admit("bad", 3)
    h.fail_on = 1 + len("bad")   # the graph fails on the bad request's ids only
    h.drain()
    assert h.answers["bad"] == FAILED and h.answers["good"].shape == (1, 2)


def test_stop_answers_what_is_pending():
    h = Harness()
    h.admit("a", 8)
    h.s.stop()
    assert not h.admit("b", 2)
    assert h.answers == {"a": STOPPING, "b": STOPPING}


def test_a_run_finishing_after_stop_answers_nothing_twice():
    h = Harness()
    h.admit("a", 8)
    real_run = h.run

    def run_then_stop(ids, mask):  # the model unloads while the run is in flight
        out = real_run(ids, mask)
        h.s.stop(timeout=0)
        return out

    h.s.run = run_then_stop
    h.s.step()
    assert h.answers == {"a": STOPPING}  # Harness.respond asserts a single answer per request
