"""Row scheduler of the python-ort encoder: short rows first, long rows one group at a time,
abandoned requests dropped before they are computed.

Why: an ``execute()`` that runs every queued request and answers them all at its end makes a
short prompt batched with (or queued behind) four max-length texts wait for all four.
Here ``execute()`` only validates and *admits* requests (answering bad ones at once) and
returns; a worker thread owns the ONNX Runtime session and loops:

1. drop admitted requests whose deadline passed (the request's own ``timeout``, else the
   model's queue timeout, counted from admission);
2. plan groups over all pending rows (``batching.plan_groups``: sorted by length, bounded
   padding and cost) and pick the first one, i.e. the shortest rows; unless the oldest
   pending request has waited more than ``max_defer_s`` and the previous run did not
   already serve the request that was oldest then, then the group holding its shortest
   pending row. So long rows cannot starve (the oldest request runs at least every other
   run), and a short prompt waits for at most one long run: after a long row, aged or
   merely the shortest pending, the next run is the shortest group. A group whose longest row has at least
   ``solo_tokens`` tokens runs one row at a time: a short prompt arriving meanwhile waits
   for one long row, never for a batch of them;
3. drop the group's requests that were cancelled (``request.is_cancelled()``) or expired;
   the deadline is always checked, cancellation where computing may cost more than the
   round trip of asking (``_check_cancelled``: long rows, queued work; 0 = always asked);
4. run the group; a request is answered (``response_sender``, non-decoupled: exactly one
   final response) as soon as all its rows are done.

With ``long_lane`` (the python-ort encoder's default, config parameter ``long_row_lane``),
rows of at least ``solo_tokens`` tokens and shorter rows are two lanes, each with its own
worker thread running steps 1-4 over its own rows, both on the same encoder at once (an ONNX
Runtime session runs concurrent calls; they share its threads). A short prompt then never
waits for a long row: it shares the cores with one instead of waiting for the long row to end
(BENCHMARKS.md, "Fairness"). Memory: one long run plus one short group at a time. A
request with rows in both lanes is answered when both are done.

Deadlines that cannot be met: the deadline bounds the start of each run (steps 1 and 3), and
long rows (at least ``solo_tokens``: the windows of a long text) run one per run, so a request
of many long rows expires, after computing some of them, when its last long row cannot start
in time. The scheduler predicts that: the rows' costs (``cost(rows, width)``:
batching.group_cost) times the time per cost unit measured on recent long runs
(:class:`LongRowRate`, which follows the load: short prompts sharing the cores slow long rows
down). A request whose last long row would start after its deadline, behind its other long
rows and those pending ahead of it, is refused at once (UNMEETABLE: UNAVAILABLE with a
message naming its long rows, the estimate and its timeout): at admission when a long run was
measured, else before each of its runs (the rate measured on its own first rows), instead of
expiring after the work. A single long row with nothing ahead is never refused so (it may
start at once); short rows are not estimated (they share runs and cost little); nor is a
request without a deadline.

So a short request waits for at most the one group already running (in its lane) plus the short rows
ahead of it, however many long rows are pending, and a request whose client gave up is not
computed (at most the group running when it gave up). Admission is bounded: beyond
``max_pending`` admitted requests, new ones get UNAVAILABLE "Exceeds maximum queue size"
(Triton's own wording for its queue). If a joint run fails, each of its requests is retried
alone, so one bad request fails alone.

Pure Python: ``run``, ``respond`` and ``clock`` are injected, so tests drive it without a server.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from opencc_cm_contract.text_rules import pad_right

from .batching import plan_groups

CANCELLED, EXPIRED, OVERLOADED, FAILED, STOPPING = "cancelled", "expired", "overloaded", "failed", "stopping"
UNMEETABLE = "unmeetable"  # refused because its long rows cannot finish before its deadline
ALL, SHORT, LONG = "all", "short", "long"  # lanes: one worker for every row, or one per row class


@dataclass(eq=False)  # identity: two requests are never "equal"
class Work:
    """One admitted request: its unpadded rows and the logits computed so far."""
    request: Any
    rows: list[np.ndarray]
    admitted: float
    deadline: float | None
    logits: np.ndarray | None = None
    pending: set = field(default_factory=set)  # row indices not computed yet

    def __post_init__(self):
        self.pending = set(range(len(self.rows)))


@dataclass(frozen=True)
class SchedulerSettings:
    """How a :class:`RowScheduler` groups, admits and times rows (the encoder's config builds it).

    ``pad_id`` pads a group's rows; ``max_pad_fraction``, ``max_rows`` and ``max_group_tokens``
    bound a group (batching.plan_groups); ``max_pending`` requests wait at most (more are answered
    OVERLOADED), each ``default_timeout_s`` unless it brings its own (None: no deadline); a short
    row waits up to ``max_defer_s`` behind long ones. Rows of ``solo_tokens`` or more are long
    (0: none are): with ``long_lane`` they run in a lane of their own. Long runs ask for
    cancellation every ``cancel_check_tokens`` tokens (0: never), each check waiting at most
    ``cancel_check_wait_s``; the long-row rate estimate is trusted for ``rate_fresh_s``."""

    pad_id: int
    max_pad_fraction: float
    max_rows: int
    max_group_tokens: int
    max_pending: int
    default_timeout_s: float | None
    max_defer_s: float = 2.0
    solo_tokens: int = 0
    cancel_check_tokens: int = 0
    cancel_check_wait_s: float = 0.01
    long_lane: bool = False
    rate_fresh_s: float = 10.0


class RowScheduler:
    """Pending rows of admitted requests and the worker that runs them (see module doc).

    ``run(ids, mask) -> logits [n, labels]``; ``respond(request, logits=None, outcome=None,
    error=None)`` answers a request exactly once (``outcome`` one of CANCELLED, EXPIRED,
    OVERLOADED, FAILED, STOPPING with ``error`` the exception); ``is_cancelled(request) -> bool``.
    """

    def __init__(self, run: Callable, respond: Callable, is_cancelled: Callable, settings: SchedulerSettings, *,
                 clock: Callable[[], float] = time.monotonic, plan: Callable | None = None,
                 cost: Callable[[int, int], float] | None = None):
        self.settings = settings
        self.run, self.respond, self.is_cancelled, self.pad_id = run, respond, is_cancelled, settings.pad_id
        # cost(rows, width) of a run, in the units of the long-row time estimate (batching.group_cost)
        self.cost = cost or (lambda rows, width: float(rows * width))
        self.rate = LongRowRate(settings.rate_fresh_s)
        self.plan = plan or (lambda lengths: plan_groups(lengths, settings.max_pad_fraction, settings.max_rows,
                                                         settings.max_group_tokens))
        self.max_pending, self.default_timeout_s = settings.max_pending, settings.default_timeout_s
        self.max_defer_s, self.solo_tokens = settings.max_defer_s, settings.solo_tokens
        self.cancel_check_tokens, self.cancel_check_wait_s = settings.cancel_check_tokens, settings.cancel_check_wait_s
        # One worker for all rows, or (long_lane) one for rows below solo_tokens and one for the
        # rest, running at the same time on the same encoder (see the module doc).
        self.lanes = (SHORT, LONG) if settings.long_lane and settings.solo_tokens > 0 else (ALL,)
        self.oldest_just_served = {lane: False for lane in self.lanes}  # per lane: the previous run
        self.clock = clock                                                # served the then-oldest request
        self.works: list[Work] = []
        self.lock = threading.Condition()
        self.stopping = False
        self.threads: list[threading.Thread] = []
        # Works with rows being computed now, by id: their deadline was checked when their run
        # started; the other lane must not expire them mid-run (its finished rows would be thrown away).
        self.in_flight: dict[int, int] = {}

    # --- admission (execute(), Triton's thread)
    def admit(self, request: Any, rows: Sequence[np.ndarray], timeout_s: float | None = None) -> bool:
        """Queue a validated request; False (already answered OVERLOADED, or STOPPING) when full."""
        now = self.clock()
        timeout = timeout_s if timeout_s else self.default_timeout_s
        work = Work(request, list(rows), now, now + timeout if timeout else None)
        late = None
        with self.lock:
            if self.stopping:
                full = STOPPING
            elif len(self.works) >= self.max_pending:
                full = OVERLOADED
            else:
                ahead = self._long_cost_ahead(work, now)
                late = self._unmeetable(work, sorted(work.pending), now, ahead)
                full = UNMEETABLE if late else None
                if not full:
                    self.works.append(work)
                    self.lock.notify_all()
        if full:
            self.respond(request, outcome=full, error=late)
        return not full

    # --- direct runs (execute(), Triton's thread)
    def run_now(self, requests_rows: Sequence[Sequence[np.ndarray]],
                run: Callable | None = None) -> list[np.ndarray | BaseException] | None:
        """Compute the requests' rows at once, in the calling thread, when that is what the
        worker would do next anyway: every row is short (below ``solo_tokens``) and the lane
        short rows use has nothing pending (nothing queued ahead of them, no group of theirs
        running). Returns, per request, its logits [rows, labels] or the exception that failed
        it (a joint run that fails is retried one request at a time, as in ``step``); None when
        the rows must be admitted instead (a long row, or work pending in that lane). ``run``:
        the graph call for these runs (default: the worker's ``run``).

        Why: a request admitted to the worker waits for the worker thread to wake up and, once
        requests queue beside each other, is asked ``is_cancelled()`` (a round trip to the
        server) before its group runs; rows computed here cost neither. The bounds hold: only
        short rows run here (at most one batch of them, as one group run of the worker would),
        the long lane is untouched, and nothing is queued behind them, since admission (the only
        way work enters) happens in this same thread."""
        lane = SHORT if self.lanes == (SHORT, LONG) else ALL
        if not all(requests_rows) or any(self.solo_tokens and len(row) >= self.solo_tokens
                                         for rows in requests_rows for row in rows):
            return None
        with self.lock:
            if self.stopping or self._has_rows(lane):
                return None
        try:
            logits = self._run_rows([row for rows in requests_rows for row in rows], run or self.run)
        except Exception:  # noqa: BLE001 - isolate the failing request(s)
            out: list[np.ndarray | BaseException] = []
            for rows in requests_rows:
                try:
                    out.append(self._run_rows(list(rows), run or self.run))
                except Exception as exc:  # noqa: BLE001
                    out.append(exc)
            return out
        bounds = np.cumsum([0] + [len(rows) for rows in requests_rows])
        return [logits[start:end] for start, end in zip(bounds[:-1], bounds[1:])]

    def _run_rows(self, rows: list[np.ndarray], run: Callable) -> np.ndarray:
        """Logits of ``rows``, in their order, run in the groups the planner makes of them."""
        out: list = [None] * len(rows)
        for group in self.plan([len(row) for row in rows]):
            ids, mask = pad_right([rows[k] for k in group], self.pad_id)
            for k, value in zip(group, run(ids, mask)):
                out[k] = value
        return np.stack(out)

    # --- the worker
    def start(self) -> RowScheduler:
        for lane in self.lanes:
            name = "encoder-rows" if lane == ALL else f"encoder-{lane}-rows"
            self.threads.append(threading.Thread(target=self._loop, args=(lane,), name=name, daemon=True))
            self.threads[-1].start()
        return self

    def in_lane(self, lane: str, length: int) -> bool:
        return lane == ALL or (length >= self.solo_tokens) == (lane == LONG)

    def _has_rows(self, lane: str) -> bool:  # under the lock
        return any(self.in_lane(lane, len(w.rows[r])) for w in self.works for r in w.pending)

    def stop(self, timeout: float = 10.0) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(timeout)
        with self.lock:
            left, self.works = self.works, []
        for work in left:
            self.respond(work.request, outcome=STOPPING)

    def _loop(self, lane: str) -> None:
        while True:
            with self.lock:
                while not self.stopping and not self._has_rows(lane):
                    self.lock.wait()
                if self.stopping:
                    return
            self.step(lane)

    def step(self, lane: str = ALL) -> int:
        """Pick and run one group of ``lane``'s rows; returns the rows computed (0 if nothing ran)."""
        chosen = self._pick(lane)
        if not chosen:
            return 0
        live = []
        works = list({id(w): w for w, _ in chosen}.values())
        with self.lock:
            alone = len(self.works) == 1
        for work in works:
            if self._check_cancelled(work, alone) and self.is_cancelled(work.request):
                self._drop(work, CANCELLED)
            elif self._expired(work, self.clock()):
                self._drop(work, EXPIRED)
            elif late := self._unmeetable(work, self._pending(work), self.clock()):
                self._drop(work, UNMEETABLE, late)
            else:
                live.append(work)
        entries = [(w, r) for w, r in chosen if w in live]
        if not entries:
            return 0
        with self.lock:
            for work in live:
                self.in_flight[id(work)] = self.in_flight.get(id(work), 0) + 1
        try:
            self._compute(entries)
        except Exception:  # noqa: BLE001 - isolate the failing request(s)
            for work in live:
                mine = [(w, r) for w, r in entries if w is work]
                try:
                    self._compute(mine)
                except Exception as exc:  # noqa: BLE001
                    self._drop(work, FAILED, exc)
        finally:
            with self.lock:
                for work in live:
                    left = self.in_flight.pop(id(work)) - 1
                    if left:
                        self.in_flight[id(work)] = left
        return len(entries)

    def _expired(self, work: Work, now: float) -> bool:
        """Deadline passed, and no row of it is being computed (under the lock or not: a read)."""
        return work.deadline is not None and now > work.deadline and id(work) not in self.in_flight

    def _pending(self, work: Work) -> list[int]:
        with self.lock:  # the other lane completes rows of the same request
            return sorted(work.pending)

    def _long_cost_ahead(self, work: Work, now: float) -> float:
        """Cost of the pending long rows that run before ``work``'s last long row (under the lock):
        the lane runs the shortest first, so only rows no longer than ``work``'s longest count;
        requests already past their deadline are dropped before they run, so they do not count."""
        longest = max((len(row) for row in work.rows), default=0)
        return sum(self._long_cost(w, [r for r in w.pending if len(w.rows[r]) <= longest])
                   for w in self.works if not self._expired(w, now))

    def _long_cost(self, work: Work, rows) -> float:
        """Cost of ``rows`` of ``work`` that are long (at least solo_tokens: they run one per run)."""
        if not self.solo_tokens:
            return 0.0
        return sum(self.cost(1, len(work.rows[r])) for r in rows if len(work.rows[r]) >= self.solo_tokens)

    def _unmeetable(self, work: Work, rows: list[int], now: float, ahead: float = 0.0) -> DeadlineError | None:
        """Why ``work`` would expire before its long ``rows`` all ran (None if it would not, or
        if nothing says otherwise). The deadline bounds the start of each run (``_pick``,
        ``step``), and long rows run one at a time, so the request expires if its last long row
        cannot start in time: after ``ahead`` (the cost of long rows that run before them) and
        its other long rows, at the time per cost unit measured on recent long runs
        (:class:`LongRowRate`). Short rows are not estimated: they share runs and cost little."""
        if work.deadline is None or id(work) in self.in_flight:
            return None
        costs = sorted(self.cost(1, len(work.rows[r])) for r in rows if len(work.rows[r]) >= self.solo_tokens) \
            if self.solo_tokens else []
        rate = self.rate.seconds_per_cost(now) if costs else None
        if rate is None:
            return None
        last_start, left = (ahead + sum(costs) - costs[-1]) * rate, work.deadline - now
        if last_start <= left:
            return None
        long_rows = [len(row) for row in work.rows if len(row) >= self.solo_tokens]
        done = "" if len(costs) == len(long_rows) else f", {len(long_rows) - len(costs)} of them done"
        queued = f", behind {ahead * rate:.1f} s of long rows queued before it," if ahead else ""
        return DeadlineError(
            f"request cannot finish before its deadline: its {len(long_rows)} long rows (the windows of a long "
            f"text, or rows of {self.solo_tokens}+ tokens; up to {max(long_rows)} tokens) run one at a time"
            f"{done}; at the current {rate * self.cost(1, max(long_rows)):.2f} s per {max(long_rows)}-token row"
            f"{queued} the last would start after about {last_start:.1f} s, but {max(left, 0.0):.1f} s are left "
            f"of its {work.deadline - work.admitted:.1f} s timeout; refused now instead of expiring after the "
            f"work. Send a shorter text or a longer timeout, or retry when the server is less busy")

    def _check_cancelled(self, work: Work, alone: bool) -> bool:
        """Whether to ask the server if ``work`` was cancelled before computing it.

        ``is_cancelled()`` is a round trip from the stub to the server (~0.2 ms measured, more
        than running a short row on a GPU), so it is asked only where computing may cost more:
        a request with a row of at least ``cancel_check_tokens`` tokens, or one that is not
        alone (other requests pending beside it: queued work), or one that waited at least
        ``cancel_check_wait_s`` since admission. A short request that is the only one pending
        runs at once unchecked (its deadline is still checked: that costs nothing)."""
        if not alone or self.cancel_check_tokens <= 0:
            return True
        if max(len(row) for row in work.rows) >= self.cancel_check_tokens:
            return True
        return self.clock() - work.admitted >= self.cancel_check_wait_s

    def _pick(self, lane: str) -> list[tuple[Work, int]]:
        now = self.clock()
        with self.lock:
            expired = [w for w in list(self.works) if self._expired(w, now)]
            for work in expired:
                self.works.remove(work)
            entries = [(w, r) for w in self.works for r in sorted(w.pending) if self.in_lane(lane, len(w.rows[r]))]
            oldest = entries[0][0] if entries else None  # works are listed in admission order
        for work in expired:
            self.respond(work.request, outcome=EXPIRED)
        if not entries:
            return []
        groups = self.plan([len(w.rows[r]) for w, r in entries])
        pick = groups[0]
        aged = oldest is not None and now - oldest.admitted > self.max_defer_s and not self.oldest_just_served[lane]
        if aged:
            pick = next(g for g in groups if any(entries[i][0] is oldest for i in g))
        if self.solo_tokens and len(entries[pick[-1]][0].rows[entries[pick[-1]][1]]) >= self.solo_tokens:
            pick = pick[:1] if not aged else [next(i for i in pick if entries[i][0] is oldest)]
        self.oldest_just_served[lane] = any(entries[i][0] is oldest for i in pick)
        return [entries[i] for i in pick]

    def _compute(self, entries: list[tuple[Work, int]]) -> None:
        ids, mask = pad_right([w.rows[r] for w, r in entries], self.pad_id)
        start = self.clock()
        logits = self.run(ids, mask)
        if len(entries) == 1 and self.solo_tokens and ids.shape[1] >= self.solo_tokens:
            end = self.clock()
            self.rate.record((end - start) / self.cost(1, ids.shape[1]), end)
        finished = []
        # Under the lock: the other lane may complete rows of the same request meanwhile. Only
        # works still listed are answered (stop(), or the other lane dropping one, answered the rest).
        with self.lock:
            for (work, row), value in zip(entries, logits):
                if work not in self.works:
                    continue
                if work.logits is None:
                    work.logits = np.empty((len(work.rows),) + value.shape, dtype=logits.dtype)
                work.logits[row] = value
                work.pending.discard(row)
                if not work.pending and work not in finished:
                    finished.append(work)
            for work in finished:
                self.works.remove(work)
        for work in finished:
            self.respond(work.request, logits=work.logits)

    def _drop(self, work: Work, outcome: str, error: BaseException | None = None) -> None:
        with self.lock:
            present = work in self.works
            if present:
                self.works.remove(work)
        if present:
            self.respond(work.request, outcome=outcome, error=error)


class DeadlineError(RuntimeError):
    """A request's long rows cannot finish before its deadline (message: counts and times)."""


class LongRowRate:
    """Seconds per cost unit of long rows (each runs alone), measured on the runs themselves.

    ``seconds_per_cost(now)``: the median of the last ``samples`` long runs (it follows the
    load, e.g. short prompts sharing the cores, and one odd run does not decide) while it is
    fresh (a long run ended within ``fresh_s``), else the fastest rate seen (the long rows sat
    idle: the load that slowed them may be gone); None before any long run. Written by the
    worker that ran the row, read by admission and the workers: a deque append and reads of
    floats, atomic under the GIL."""

    def __init__(self, fresh_s: float, samples: int = 3):
        self.fresh_s = fresh_s
        self.recent: deque[float] = deque(maxlen=samples)
        self.best: float | None = None
        self.at = float("-inf")

    def record(self, seconds_per_cost: float, now: float) -> None:
        value = max(seconds_per_cost, 0.0)
        self.recent.append(value)
        self.best = value if self.best is None else min(self.best, value)
        self.at = now

    def seconds_per_cost(self, now: float) -> float | None:
        recent = list(self.recent)
        if not recent:
            return None
        return statistics.median(recent) if now - self.at <= self.fresh_s else self.best
