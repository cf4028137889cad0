"""OpenCC's decisions for the pipelines without generative stages, on Triton classifications.

    jailbreak detector flagged       -> terminal flag: the action (``block``: no output text;
                                        ``annotate``: the text and a notice)
    content moderation escalates     -> ``annotate`` (no frontier judge: forwarded with a notice)
    content moderation benign        -> ``allow``
    jailbreak benign, no moderation  -> ``allow``

The jailbreak stage reads the label ``jailbreak`` (else the top label); the moderation stage
escalates when any label but ``Benign`` reaches its threshold: the stage's override when the
YAML sets one, else the server's calibrated threshold (the label's ``fired``, ``score >=
threshold``). The action is the request's ``mode``, else the configured ``default_action``.

Fail closed: a stage that fails, is refused or runs past the request's deadline ends the
pipeline with the action (never ``allow``), its reason, and a trace entry ``error``.
Trace entries carry OpenCC's ``stage``, ``outcome``, ``scores``, ``detail`` and the stage's
real ``input_tokens`` (from the server's token count).
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from opencc_cm_client.evaluation import BENIGN
from opencc_cm_client.results import Classification
from opencc_cm_contract import JAILBREAK_LABELS

from .config import CM_STAGE, JAILBREAK_STAGE, JUDGE_STAGE, ServiceConfig, StageConfig

ALLOW, BLOCK, ANNOTATE = "allow", "block", "annotate"
TERMINAL_NOTICE = ("[Safety notice: the moderation pipeline flagged this input as a possible jailbreak or policy "
                   "violation. Handle it with extra caution and refuse anything genuinely harmful.]")
ESCALATION_NOTICE = ("[Safety notice: content moderation flagged this input as possibly harmful; no frontier judge "
                     "reviewed it. Proceed carefully and refuse anything that would cause real-world harm.]")

Classify = Callable[[str], Awaitable[Classification]]
_TIMEOUT_AT = getattr(asyncio, "timeout_at", None)


def trace_entry(stage: str, outcome: str, scores: dict | None = None, detail: str | None = None,
                input_tokens: int | None = None) -> dict:
    return {"stage": stage, "outcome": outcome, "scores": scores, "detail": detail, "input_tokens": input_tokens}


def response(decision: str, reason: str, output_text: str | None, trace: list[dict]) -> dict:
    """OpenCC's ``CheckResponse`` (``rephrased`` is always false: no rephraser runs here)."""
    return {"decision": decision, "reason": reason, "output_text": output_text, "rephrased": False, "trace": trace}


def terminal(action: str, text: str, reason: str, trace: list[dict]) -> dict:
    """A terminal flag (or a failure) under ``action``: ``annotate`` forwards the text with a notice,
    anything else blocks."""
    if action == ANNOTATE:
        return response(ANNOTATE, reason, f"{text}\n\n{TERMINAL_NOTICE}", trace)
    return response(BLOCK, reason, None, trace)


def _fires(stage: StageConfig, label) -> bool:
    return float(label.score) >= stage.threshold if stage.threshold is not None else bool(label.fired)


def jailbreak_flagged(stage: StageConfig, result: Classification) -> bool:
    label = next((r for r in result.labels if r.label == JAILBREAK_LABELS[0]), None)
    if label is None:  # not a jailbreak head: its top label decides
        label = max(result.labels, key=lambda r: r.score)
    return _fires(stage, label)


def moderation_escalates(stage: StageConfig, result: Classification) -> bool:
    return any(_fires(stage, r) for r in result.labels if r.label != BENIGN)


def scores_of(result: Classification) -> dict[str, float]:
    return {r.label: float(r.score) for r in result.labels}


def failure_detail(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer within the request's deadline"
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"


class Pipeline:
    """Runs the configured stages on one text; ``classifiers[stage]`` classifies one text."""

    def __init__(self, config: ServiceConfig, classifiers: dict[str, Classify]):
        self.config = config
        self.classifiers = classifiers

    async def _run_stage(self, stage: StageConfig, text: str, deadline: float) -> Classification:
        if deadline <= asyncio.get_running_loop().time():
            raise TimeoutError
        if _TIMEOUT_AT is not None:  # Python 3.11+: no extra task per stage, unlike wait_for
            async with _TIMEOUT_AT(deadline):
                return await self.classifiers[stage.stage](text)
        return await asyncio.wait_for(self.classifiers[stage.stage](text), deadline - asyncio.get_running_loop().time())

    async def check(self, text: str, mode: str | None, deadline: float) -> dict:
        """OpenCC's answer for ``text``; ``deadline`` is an event-loop time."""
        action = mode or self.config.default_action
        trace: list[dict] = []
        for stage in self.config.stages:
            try:
                result = await self._run_stage(stage, text, deadline)
            except Exception as exc:  # noqa: BLE001 - fail closed: every failure ends in the action
                detail = failure_detail(exc)
                trace.append(trace_entry(stage.stage, "error", detail=detail))
                return terminal(action, text, f"{stage.stage} failed, so the input is treated as flagged "
                                              f"(fail closed): {detail}", trace)
            scores, tokens = scores_of(result), int(result.input_tokens)
            if stage.stage == JAILBREAK_STAGE:
                if jailbreak_flagged(stage, result):
                    trace.append(trace_entry(stage.stage, "flagged", scores, input_tokens=tokens))
                    return terminal(action, text, "Jailbreak detected; no rephraser is configured, so the flag "
                                                  "is terminal.", trace)
                trace.append(trace_entry(stage.stage, "benign", scores, input_tokens=tokens))
            elif stage.stage == CM_STAGE:
                if not moderation_escalates(stage, result):
                    trace.append(trace_entry(stage.stage, "benign", scores, input_tokens=tokens))
                    return response(ALLOW, "No harm category reached its threshold.", text, trace)
                trace.append(trace_entry(stage.stage, "escalate", scores, input_tokens=tokens))
                trace.append(trace_entry(JUDGE_STAGE, "skipped_annotated"))
                return response(ANNOTATE, "Content moderation escalated and no frontier judge is configured; "
                                          "forwarded with a safety notice.", f"{text}\n\n{ESCALATION_NOTICE}", trace)
        return response(ALLOW, "No jailbreak detected; no content moderation is configured.", text, trace)
