"""Fail-closed gate decisions: flagged escalates, and so does every error. Nothing else allows."""
from __future__ import annotations

from .results import Classification, GateDecision


def decision_for(result: Classification) -> GateDecision:
    if result.flagged:
        return GateDecision(True, "flagged: " + ", ".join(result.fired_labels), result)
    return GateDecision(False, "no label reached its threshold", result)


def escalation_for(error: BaseException) -> GateDecision:
    return GateDecision(True, f"escalated because classification failed: {type(error).__name__}: {error}")


def gate_decision(classify_one) -> GateDecision:
    """Run ``classify_one()``; any exception escalates with its reason."""
    try:
        result = classify_one()
    except Exception as exc:  # noqa: BLE001 - a gate must not let any failure through
        return escalation_for(exc)
    return decision_for(result)
