"""The client's planner: which requests one ``classify`` makes, and how their answers become results.

Pure functions, no I/O; :class:`ClassifierClient` and :class:`AsyncClassifierClient` only send
a :class:`Plan`'s calls (in order, concurrently) and hand the answers back to
:meth:`Plan.results`. So both clients make the same requests, in the same order, for the same
inputs.

Rules:

* Texts without a local tokenizer go to the text ensemble in chunks of its ``max_batch_size``.
* Token rows go to the ids ensemble in chunks of its ``max_batch_size``; rows the server would
  reject (too long, empty, ids outside the vocabulary) are refused locally, naming their index.
* With a local tokenizer and the server's ``long_input_policy`` ``windows``, a text above
  ``max_tokens`` goes as text (only the server's tokenizer model windows), **one text per
  call**: how many windows a text makes depends on the server's window overlap, which it does
  not publish, and one request's windows must fit the server's max batch. Short texts of the
  same input still go as ids. Under ``reject`` a long text is refused locally.
* Calls are ordered: ids calls first, then text calls, each in input order. Results come back
  in input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from opencc_cm_contract.limits import WINDOWS

from .answers import Answer, parse_outputs
from .calls import PreparedCall, ids_call, text_call
from .results import Classification
from .server_info import ServerContractError, ServerInfo



@dataclass(frozen=True)
class Plan:
    """The calls for one ``classify``; ``positions[k]`` is the input index of each row of call ``k``,
    ``infos[k]`` what the server published for the model that call ``k`` goes to."""

    calls: tuple[PreparedCall, ...]
    positions: tuple[tuple[int, ...], ...]
    infos: tuple[ServerInfo, ...]
    size: int

    def results(self, answers: Sequence[Answer], profile: str) -> list[Classification]:
        """One result per input, in input order, from one answer per call (in call order)."""
        if len(answers) != len(self.calls):
            raise ValueError(f"{len(answers)} answers for {len(self.calls)} calls")
        out: list[Classification | None] = [None] * self.size
        for call, where, info, answer in zip(self.calls, self.positions, self.infos, answers):
            parsed = parse_outputs(answer.outputs, info, profile, call.model, answer.version, call.rows)
            for i, result in zip(where, parsed):
                out[i] = result
        missing = [i for i, r in enumerate(out) if r is None]
        if missing:  # a plan covers every input exactly once; this guards the planners below
            raise ServerContractError(f"no result for inputs {missing[:5]}")
        return out  # type: ignore[return-value]


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of at most ``size`` covering ``range(n)``, in order."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _merge(size: int, plans: Sequence[Plan]) -> Plan:
    return Plan(tuple(c for p in plans for c in p.calls), tuple(w for p in plans for w in p.positions),
                tuple(i for p in plans for i in p.infos), size)


def plan_texts(texts: Sequence[str | bytes], info: ServerInfo, positions: Sequence[int] | None = None) -> Plan:
    """Raw texts for the text ensemble (the server tokenizes), in chunks of its max batch."""
    where = list(range(len(texts))) if positions is None else list(positions)
    calls, slots = [], []
    for a, b in chunks(len(texts), info.max_batch_size):
        calls.append(text_call(texts[a:b], info.model_name))
        slots.append(tuple(where[a:b]))
    return Plan(tuple(calls), tuple(slots), (info,) * len(calls), max(where, default=-1) + 1)


def plan_ids(rows: Sequence[Sequence[int]], info: ServerInfo, positions: Sequence[int] | None = None) -> Plan:
    """Token rows for the ids ensemble, checked locally, in chunks of its max batch."""
    where = list(range(len(rows))) if positions is None else list(positions)
    calls, slots = [], []
    for a, b in chunks(len(rows), info.max_batch_size):
        calls.append(ids_call(rows[a:b], info, where[a:b]))
        slots.append(tuple(where[a:b]))
    return Plan(tuple(calls), tuple(slots), (info,) * len(calls), max(where, default=-1) + 1)


def routed_as_text(ids: Sequence[Sequence[int]], ids_info: ServerInfo) -> list[int]:
    """Indices of the tokenized texts that must go as text: above ``max_tokens`` on a server that
    windows long input. Empty under ``reject`` (there the ids check refuses them, by index)."""
    if ids_info.long_input_policy != WINDOWS:
        return []
    return [i for i, row in enumerate(ids) if len(row) > ids_info.max_tokens]


def plan_tokenized(texts: Sequence[str], ids: Sequence[Sequence[int]], ids_info: ServerInfo,
                   text_info: ServerInfo | None = None) -> Plan:
    """Locally tokenized texts: short ones as ids in chunks, long ones (see :func:`routed_as_text`)
    as text, one per call. ``text_info`` is needed only when some text is routed as text."""
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} token rows")
    long = routed_as_text(ids, ids_info)
    if not long:
        return plan_ids(ids, ids_info)
    if text_info is None:
        raise ValueError("texts above max_tokens go to the text ensemble: its server info is needed")
    taken = set(long)
    short = [i for i in range(len(ids)) if i not in taken]
    plans = [plan_ids([ids[i] for i in short], ids_info, short)] if short else []
    plans += [plan_texts([texts[i]], text_info, [i]) for i in long]
    return _merge(len(texts), plans)
