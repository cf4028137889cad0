from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelResult(_message.Message):
    __slots__ = ("label", "score", "threshold", "fired")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    threshold: float
    fired: bool
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., fired: _Optional[bool] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("labels", "flagged", "input_tokens", "model_name", "model_version", "threshold_profile")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PROFILE_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelResult]
    flagged: bool
    input_tokens: int
    model_name: str
    model_version: str
    threshold_profile: str
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelResult, _Mapping]]] = ..., flagged: _Optional[bool] = ..., input_tokens: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., threshold_profile: _Optional[str] = ...) -> None: ...

class ClassificationBatch(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class GateDecision(_message.Message):
    __slots__ = ("escalate", "reason", "classification")
    ESCALATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    escalate: bool
    reason: str
    classification: Classification
    def __init__(self, escalate: _Optional[bool] = ..., reason: _Optional[str] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ...) -> None: ...
