"""Typed results: plain dataclasses that convert to and from the v1 protobuf messages and JSON."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from google.protobuf import json_format

from . import classification_pb2 as pb


@dataclass(frozen=True)
class LabelResult:
    label: str
    score: float
    threshold: float
    fired: bool


@dataclass(frozen=True)
class Classification:
    """The verdict on one prompt: every label in column order, and whether to escalate."""

    labels: tuple[LabelResult, ...]
    flagged: bool
    input_tokens: int
    model_name: str = ""
    model_version: str = ""
    threshold_profile: str = "default"

    @property
    def fired_labels(self) -> list[str]:
        return [r.label for r in self.labels if r.fired]

    def score(self, label: str) -> float:
        return next(r.score for r in self.labels if r.label == label)

    def to_proto(self) -> pb.Classification:
        return pb.Classification(
            labels=[pb.LabelResult(label=r.label, score=r.score, threshold=r.threshold, fired=r.fired)
                    for r in self.labels],
            flagged=self.flagged, input_tokens=self.input_tokens, model_name=self.model_name,
            model_version=self.model_version, threshold_profile=self.threshold_profile)

    @classmethod
    def from_proto(cls, msg: pb.Classification) -> Classification:
        return cls(labels=tuple(LabelResult(r.label, r.score, r.threshold, r.fired) for r in msg.labels),
                   flagged=msg.flagged, input_tokens=msg.input_tokens, model_name=msg.model_name,
                   model_version=msg.model_version, threshold_profile=msg.threshold_profile)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["labels"] = [asdict(r) for r in self.labels]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Classification:
        labels = tuple(LabelResult(**r) for r in data["labels"])
        return cls(**{**data, "labels": labels})

    def to_json(self) -> str:
        """The protobuf JSON mapping (camelCase, as any other language's client would write it)."""
        return json_format.MessageToJson(self.to_proto(), always_print_fields_with_no_presence=True)

    @classmethod
    def from_json(cls, text: str) -> Classification:
        return cls.from_proto(json_format.Parse(text, pb.Classification()))


@dataclass(frozen=True)
class GateDecision:
    """Fail-closed gate outcome: ``escalate`` is True when flagged *or* when anything failed."""

    escalate: bool
    reason: str
    classification: Classification | None = field(default=None)

    def to_proto(self) -> pb.GateDecision:
        msg = pb.GateDecision(escalate=self.escalate, reason=self.reason)
        if self.classification is not None:
            msg.classification.CopyFrom(self.classification.to_proto())
        return msg


def results_table(texts, results) -> str:
    """Texts and their results as plain text: a verdict line per text (its token count and the
    first 60 characters), then one line per label with its score and threshold, ``*`` where it
    fired. What ``opencc-cm check`` prints."""
    lines = []
    for text, res in zip(texts, results):
        short = text if len(text) <= 60 else text[:57] + "..."
        verdict = "FLAGGED" if res.flagged else "ok"
        lines.append(f"{verdict:<8} {res.input_tokens:>5} tok  {short!r}")
        for r in res.labels:
            mark = "*" if r.fired else " "
            lines.append(f"    {mark} {r.label:<24} {r.score:.4f}  (threshold {r.threshold:.4f})")
    return "\n".join(lines)


def batch_to_json(results: list[Classification]) -> str:
    return json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2)
