"""The encoder's row scheduler without a server: which rows run in which order, what is
dropped before it is computed, and that every request gets exactly one answer."""
from __future__ import annotations

import numpy as np

from opencc_cm_serving.scheduler import (CANCELLED, EXPIRED, FAILED, OVERLOADED, STOPPING, UNMEETABLE,
                                         RowScheduler, SchedulerSettings)


CALLABLES = {"plan", "cost", "clock"}  # RowScheduler keywords; the other options are SchedulerSettings fields


def settings_of(options: dict) -> SchedulerSettings:
    return SchedulerSettings(pad_id=0, **{k: v for k, v in options.items() if k not in CALLABLES})


class Harness:
    def __init__(self, **kwargs):
        self.now = 0.0
        self.runs: list[list[int]] = []      # lengths of the rows of each run
        self.answers: dict = {}
        self.errors: dict = {}
        self.cancelled: set = set()
        self.seconds_per_token = 1 / 8       # a second per long row
        self.fail_on = None
        options = dict(max_pad_fraction=0.25, max_rows=64, max_group_tokens=8, max_pending=16,
                       default_timeout_s=None, max_defer_s=100.0)
        options.update(kwargs)
        self.s = RowScheduler(self.run, self.respond, lambda r: r in self.cancelled, settings_of(options),
                              clock=lambda: self.now, **{k: options[k] for k in options.keys() & CALLABLES})

    def run(self, ids, mask):
        lengths = mask.sum(axis=1).tolist()
        if self.fail_on is not None and (ids == self.fail_on).any():
            raise RuntimeError("kernel failure")
        self.runs.append(lengths)
        self.now += sum(lengths) * self.seconds_per_token
        return np.stack([np.full(2, float(ids[i, :n].sum())) for i, n in enumerate(lengths)])

    def respond(self, request, logits=None, outcome=None, error=None):
        assert request not in self.answers, f"{request} answered twice"
        self.answers[request] = logits if logits is not None else outcome
        self.errors[request] = error

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


def test_after_a_long_row_the_short_one_goes_next_even_if_other_long_ones_aged():
    """Long requests only: the first runs as the shortest pending (not aged). A short request
    arriving meanwhile goes next, not the now-aged second long one: it waits for one long row,
    never two (the oldest request just had its turn)."""
    h = Harness(max_defer_s=0.5, solo_tokens=6)
    h.admit("long0", 8)
    h.admit("long1", 8)
    h.s.step()                      # long0, 1 s: long1 has aged meanwhile
    h.admit("short", 2)
    h.s.step()
    assert h.runs == [[8], [2]] and "short" in h.answers
    h.drain()
    assert h.runs == [[8], [2], [8]]


def test_an_aged_solo_group_runs_the_oldest_requests_row():
    """An aged pick whose group holds long rows of several requests runs the OLDEST one's row
    (cut to one row, the group could otherwise start with a younger request's row)."""
    h = Harness(max_defer_s=0.5, solo_tokens=6, max_group_tokens=64)
    h.admit("old", 8)
    h.admit("young", 7)
    h.admit("short", 2)
    h.now = 1.0                     # all aged; "old" is the oldest
    h.s.step()
    assert h.runs == [[8]] and "old" in h.answers and "young" not in h.answers


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


def test_long_rows_that_cannot_meet_the_deadline_are_refused_at_admission():
    """Once a long run has measured the time per long row, a request whose last long row (the
    windows of a long text run one at a time) would start after its deadline is refused at
    once, before any of its rows runs, with a message naming the rows and the timeout; one
    whose last row can start in time runs."""
    h = Harness(solo_tokens=6)
    h.admit("first", 8)
    h.drain()                                    # 1 s per long row, measured
    assert not h.admit("text", 8, 8, 8, 8, 8, timeout=3.0)
    assert h.answers["text"] == UNMEETABLE and h.runs == [[8]]
    message = str(h.errors["text"])
    assert "its 5 long rows" in message and "3.0 s timeout" in message and "start after about 4.0 s" in message
    assert h.admit("fits", 8, 8, 8, 2, timeout=3.0)
    h.drain()
    assert h.answers["fits"].shape == (4, 2)
    assert h.admit("one row", 8, timeout=0.5)     # a single long row may start at once: never refused so
    h.drain()
    assert h.answers["one row"].shape == (1, 2)


def test_long_rows_queued_ahead_count_against_the_deadline():
    h = Harness(solo_tokens=6)
    h.admit("first", 8)
    h.drain()
    assert h.admit("queued", 8, 8)               # 2 s of long rows pending
    assert not h.admit("text", 8, 8, timeout=2.5) and h.answers["text"] == UNMEETABLE
    assert "queued before it" in str(h.errors["text"])
    assert h.admit("short", 2, 3, timeout=0.5)   # short rows are not estimated
    h.drain()
    assert h.answers["queued"].shape == (2, 2) and h.answers["short"].shape == (2, 2)


def test_long_rows_slowed_down_are_refused_after_the_first_not_expired_after_the_work():
    """No rate known at admission: the request runs; its first row shows the rows are slower
    than its timeout allows, so it is refused then (one row computed), not after four rows of
    work (starting at 0, 3, 6 and 9 s) when the fifth (12 s) could not start."""
    h = Harness(solo_tokens=6)
    h.seconds_per_token = 3 / 8                  # 3 s per long row (e.g. short traffic sharing the cores)
    assert h.admit("text", 8, 8, 8, 8, 8, timeout=10.0)
    h.drain()
    assert h.answers["text"] == UNMEETABLE and h.runs == [[8]]
    assert "1 of them done" in str(h.errors["text"])


def test_a_stale_slow_rate_does_not_refuse_forever():
    """The rate measured under load is used while fresh; after the long rows sat idle longer
    than rate_fresh_s, the fastest rate seen decides (the load may be gone)."""
    h = Harness(solo_tokens=6, rate_fresh_s=5.0)
    h.admit("idle", 8)
    h.drain()                                    # 1 s per row
    h.seconds_per_token = 3 / 8
    h.admit("loaded", 8)
    h.drain()                                    # 3 s: the recent rate is 2 s per row
    assert not h.admit("now", 8, 8, 8, timeout=3.0)
    h.now += 6.0
    h.seconds_per_token = 1 / 8
    assert h.admit("later", 8, 8, 8, timeout=3.0)
    h.drain()
    assert h.answers["later"].shape == (3, 2)


def test_one_slow_long_run_does_not_decide():
    h = Harness(solo_tokens=6)
    for i, seconds_per_row in enumerate((1, 1, 5)):   # one odd run: 5 s
        h.seconds_per_token = seconds_per_row / 8
        h.admit(f"w{i}", 8)
        h.drain()
    h.seconds_per_token = 1 / 8
    assert h.admit("text", 8, 8, 8, timeout=3.0)  # the median, 1 s per row: the last starts at 2 s
    h.drain()
    assert h.answers["text"].shape == (3, 2)


class Asking(Harness):
    """Records which requests the scheduler asked ``is_cancelled`` about (a round trip to the server)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked: list = []

        def is_cancelled(request):
            self.asked.append(request)
            return request in self.cancelled
        self.s.is_cancelled = is_cancelled


def test_cancellation_asked_only_where_computing_may_cost_more():
    """The rule: is_cancelled() is asked before computing a request with a row of at
    least cancel_check_tokens, one queued beside other requests, or one that waited at least
    cancel_check_wait_s; a short request alone runs at once without the round trip."""
    h = Asking(max_group_tokens=64, cancel_check_tokens=6, cancel_check_wait_s=0.5)
    h.admit("short alone", 2)
    h.s.step()
    assert h.asked == [] and h.runs == [[2]]                 # not asked: it ran at once
    h.admit("long alone", 6)
    h.s.step()
    assert h.asked == ["long alone"]                         # long row: asked
    h.cancelled |= {"queued a", "queued b"}
    h.admit("queued a", 2)
    h.admit("queued b", 2)
    h.admit("kept", 3)
    h.s.step()
    assert set(h.asked[1:]) == {"queued a", "queued b", "kept"}    # queued beside others: asked
    assert h.answers["queued a"] == CANCELLED and h.answers["queued b"] == CANCELLED
    assert h.runs[-1] == [3]                                 # the cancelled ones were not computed
    h.asked.clear()
    h.cancelled.add("waited")
    h.admit("waited", 2)
    h.now += 1.0                                             # waited longer than cancel_check_wait_s
    h.s.step()
    assert h.asked == ["waited"] and h.answers["waited"] == CANCELLED


def test_short_request_alone_is_computed_even_if_cancelled_but_deadline_still_checked():
    h = Asking(max_group_tokens=64, cancel_check_tokens=6, cancel_check_wait_s=0.5)
    h.cancelled.add("short")
    h.admit("short", 2)
    h.s.step()
    assert h.asked == [] and h.answers["short"].shape == (1, 2)   # one short row: cheaper than asking
    h.admit("late", 2, timeout=0.1)
    h.now += 0.2
    h.s.step()
    assert h.answers["late"] == EXPIRED and h.asked == []


def test_cancellation_always_asked_by_default():
    h = Asking()
    h.admit("short", 2)
    h.s.step()
    assert h.asked == ["short"]


def test_lanes_split_rows_by_length_and_answer_a_request_once_both_are_done():
    h = Harness(solo_tokens=6, long_lane=True)
    h.admit("mixed", 8, 2)            # one long and one short row
    h.admit("short", 3)
    assert h.s.lanes == ("short", "long")
    h.s.step("short")
    assert h.runs == [[2, 3]] and "short" in h.answers and "mixed" not in h.answers
    assert h.s.step("short") == 0     # nothing short left; the long row is not the short lane's
    h.s.step("long")
    assert h.runs == [[2, 3], [8]]
    assert h.answers["mixed"].tolist() == [[48.0, 48.0], [12.0, 12.0]]  # rows in request order


def test_one_lane_without_solo_tokens_or_when_off():
    assert Harness(solo_tokens=0, long_lane=True).s.lanes == ("all",)
    assert Harness(solo_tokens=6).s.lanes == ("all",)


class HeldLanes:
    """A started two-lane scheduler whose long rows (>= 6 tokens) hold their run until
    ``release`` is set: the lanes' threads for real, without timing assumptions."""

    def __init__(self, **kwargs):
        import threading

        self.release, self.long_started = threading.Event(), threading.Event()
        self.answers, self.lock = {}, threading.Lock()
        options = dict(max_pad_fraction=0.25, max_rows=64, max_group_tokens=64, max_pending=16,
                       default_timeout_s=None, solo_tokens=6, long_lane=True)
        options.update(kwargs)
        self.s = RowScheduler(self.run, self.respond, lambda r: False, settings_of(options),
                              **{k: options[k] for k in options.keys() & CALLABLES})

    def run(self, ids, mask):
        lengths = mask.sum(axis=1)
        if lengths.max() >= 6:
            self.long_started.set()
            assert self.release.wait(30), "never released"
        return np.stack([np.full(2, float(n)) for n in lengths])

    def respond(self, request, logits=None, outcome=None, error=None):
        with self.lock:
            assert request not in self.answers
            self.answers[request] = logits if logits is not None else outcome

    def wait_for(self, done, timeout_s=10.0) -> bool:
        import time

        end = time.monotonic() + timeout_s
        while not done() and time.monotonic() < end:
            time.sleep(0.01)
        return done()

    def __enter__(self):
        self.s.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.s.stop()


def test_short_rows_are_answered_while_a_long_row_runs():
    """A long row holds its run until released; short requests admitted meanwhile are answered
    before it ends."""
    with HeldLanes() as h:
        h.s.admit("long", [np.ones(8, np.int64)])
        assert h.long_started.wait(10)
        for i in range(3):
            h.s.admit(f"short{i}", [np.ones(2 + i, np.int64)])
        assert h.wait_for(lambda: len(h.answers) == 3)
        assert set(h.answers) == {"short0", "short1", "short2"}  # the long row is still running
        h.release.set()
        assert h.wait_for(lambda: "long" in h.answers)
        assert h.answers["long"].tolist() == [[8.0, 8.0]]


def test_a_long_row_in_flight_is_not_expired_by_the_short_lane():
    """Its deadline passes while it runs (it was checked when the run started): the short lane,
    purging expired requests, must leave it to finish; it is answered with its logits."""
    now = [0.0]
    with HeldLanes(default_timeout_s=5.0, clock=lambda: now[0]) as h:
        h.s.admit("long", [np.ones(8, np.int64)])
        assert h.long_started.wait(10)
        now[0] = 10.0                       # the long request's deadline (5 s) has passed mid-run
        h.s.admit("short", [np.ones(2, np.int64)])
        assert h.wait_for(lambda: "short" in h.answers)
        assert h.answers["short"] is not None and "long" not in h.answers
        h.release.set()
        assert h.wait_for(lambda: "long" in h.answers)
        assert not isinstance(h.answers["long"], str) and h.answers["long"].tolist() == [[8.0, 8.0]]


def rows_of(name, *lengths):
    return [np.full(n, 1 + len(name), np.int64) for n in lengths]


def test_run_now_computes_short_rows_when_their_lane_is_idle():
    """Short rows with nothing pending ahead of them run in the caller's thread, grouped as the
    worker groups them, and each request gets its own rows' logits in order; nothing is admitted
    and no one is answered through ``respond``."""
    h = Harness(solo_tokens=6)
    out = h.s.run_now([rows_of("a", 2, 3), rows_of("bb", 2)])
    assert out is not None and h.answers == {} and h.s.works == []
    assert [x.tolist() for x in out] == [[[4.0, 4.0], [6.0, 6.0]], [[6.0, 6.0]]]
    assert sorted(len for run in h.runs for len in run) == [2, 2, 3]


def test_run_now_refuses_long_rows_and_work_queued_in_the_lane():
    """A long row, or short work already pending (queued or running) in the lane short rows use,
    sends the batch to admission (None): order and the long-row bounds stay the worker's."""
    h = Harness(solo_tokens=6, long_lane=True, max_group_tokens=64)
    assert h.s.run_now([rows_of("a", 2), rows_of("b", 8)]) is None
    h.admit("queued", 2)
    assert h.s.run_now([rows_of("c", 2)]) is None
    h.drain()
    h.admit("long", 8)   # pending in the long lane only: short rows may still run beside it
    assert h.s.run_now([rows_of("d", 2)]) is not None
    one = Harness(solo_tokens=6)                   # one worker for all rows: any pending row blocks
    one.admit("long", 8)
    assert one.s.run_now([rows_of("d", 2)]) is None


def test_run_now_isolates_a_failing_request():
    h = Harness(solo_tokens=6)
    h.fail_on = 4  # ids of the request named "bad" (1 + len) -> its runs fail
    out = h.s.run_now([rows_of("ok", 2), rows_of("bad", 3), rows_of("k", 2)])
    assert isinstance(out[1], RuntimeError)
    assert out[0].tolist() == [[6.0, 6.0]] and out[2].tolist() == [[4.0, 4.0]]


def test_run_now_after_stop_admits_instead():
    h = Harness(solo_tokens=6)
    h.s.stop()
    assert h.s.run_now([rows_of("a", 2)]) is None
