"""The one place that names what crosses a boundary: Triton model and tensor names, labels.

Everything that talks to the server (the client, the Triton ``model.py`` files, the export
step, the tests) imports these names from here instead of spelling them again.
"""
from __future__ import annotations

# --- Encoder graph (ONNX / TensorRT / Python-backend ONNX Runtime): same names everywhere.
INPUT_IDS = "input_ids"            # INT64 [batch, seq]
ATTENTION_MASK = "attention_mask"  # INT64 [batch, seq], 1 = real token, right padding only
LOGITS = "logits"                  # FP32  [batch, num_labels], before the sigmoid

# --- Results of the calibration stage (and of both ensembles).
SCORES = "scores"            # FP32 [batch, num_labels]: sigmoid(logits)
LABEL_FLAGS = "label_flags"  # BOOL [batch, num_labels]: score >= threshold
FLAGGED = "flagged"          # BOOL [batch, 1]: any label fired (escalate)
TOKEN_COUNT = "token_count"  # INT64 [batch, 1]: input tokens actually scored

# --- Raw-text entry point.
TEXT = "text"  # BYTES [batch, 1], UTF-8

# --- Triton model names (folder names under model_repository/).
TOKENIZER_MODEL = "tokenizer"
IDS_PREPROCESS_MODEL = "ids_preprocess"
ENCODER_MODEL = "encoder"
CALIBRATION_MODEL = "calibration"
TEXT_ENSEMBLE = "classify_text"
IDS_ENSEMBLE = "classify_ids"

# --- What each ensemble takes and answers, as Triton datatypes and request/response shapes
# (B = batch, at most the config's max_batch_size; S = sequence length; L = number of labels,
# read from the config). proto/CLIENT_CONTRACT.md states these; a test keeps the three in sync
# (this module, the document, the configs that deploy writes).
ENSEMBLE_INPUTS: dict[str, dict[str, tuple[str, tuple]]] = {
    TEXT_ENSEMBLE: {TEXT: ("BYTES", ("B", 1))},
    IDS_ENSEMBLE: {INPUT_IDS: ("INT64", ("B", "S")), ATTENTION_MASK: ("INT64", ("B", "S"))},
}
ENSEMBLE_OUTPUTS: dict[str, tuple[str, tuple]] = {  # the same four from both ensembles
    SCORES: ("FP32", ("B", "L")),
    LABEL_FLAGS: ("BOOL", ("B", "L")),
    FLAGGED: ("BOOL", ("B", 1)),
    TOKEN_COUNT: ("INT64", ("B", 1)),
}

# --- Request parameters (``ModelInferRequest.parameters``).
THRESHOLD_PROFILE_PARAMETER = "threshold_profile"  # string: a threshold profile name
DEFAULT_PROFILE = "default"
# Ours: name -> the one accepted type of its value as a model sees it (Triton hands a Python
# model string_param as str, int64_param as int, bool_param as bool, double_param as float).
REQUEST_PARAMETERS: dict[str, type] = {THRESHOLD_PROFILE_PARAMETER: str}
# Triton's own. Its parameters extension reserves these names and the "triton_" prefix;
# 2.51 over gRPC consumes priority, timeout, sequence_* and triton_enable_empty_final_response
# itself (validating their types) but hands "headers" and "binary_data_output" (the binary-data
# extension's flag, HTTP strips it) through to every model. The models accept these whatever
# their value and refuse every other name (INVALID_ARGUMENT naming it): a misspelled
# parameter must not silently mean "use the default".
TRITON_RESERVED_PARAMETERS: tuple[str, ...] = (
    "priority", "timeout", "sequence_id", "sequence_start", "sequence_end", "headers", "binary_data_output",
)
TRITON_RESERVED_PREFIX = "triton_"
_TYPE_NAMES = {str: "string", int: "int64", bool: "bool", float: "double"}


class RequestParameterError(ValueError):
    """A request parameter that is neither ours nor Triton's, or ours with the wrong type."""


def check_request_parameters(params) -> dict:
    """``params`` (the request's parameters as a model sees them) checked against the contract:
    returns ours (``{name: value}``); an unknown name or a wrong type is a RequestParameterError
    naming it (at most 64 characters of it: an error above 8 KiB is dropped by gRPC)."""
    if not isinstance(params, dict):
        raise RequestParameterError(f"request parameters must be an object, got {type(params).__name__}")
    ours = {}
    for key, value in params.items():
        if key in REQUEST_PARAMETERS:
            expected = REQUEST_PARAMETERS[key]
            if type(value) is not expected:  # bool is an int subclass: compare exactly
                got = _TYPE_NAMES.get(type(value), type(value).__name__)
                raise RequestParameterError(f"request parameter {key!r} must be a {_TYPE_NAMES[expected]}, got {got}")
            ours[key] = value
        elif key not in TRITON_RESERVED_PARAMETERS and not str(key).startswith(TRITON_RESERVED_PREFIX):
            shown = repr(key[:64]) + ("..." if len(key) > 64 else "")
            raise RequestParameterError(f"unknown request parameter {shown} (accepted: {', '.join(REQUEST_PARAMETERS)})")
    return ours

# --- Labels of the 11-way multilabel head, in output column order (reference HARM_CATEGORIES).
HARM_CATEGORIES: tuple[str, ...] = (
    "CBRN",
    "Cyber",
    "Harm to Minors",
    "Harmful Manipulation",
    "Hate Speech",
    "Illegal Activities",
    "Information Integrity",
    "Physical Harm",
    "Privacy",
    "Self-Harm",
    "Sexual Content",
)
JAILBREAK_LABELS: tuple[str, ...] = ("jailbreak",)

# The model card and BELLS-O call the 7th category by another name; both mean the same column.
LABEL_ALIASES: dict[str, str] = {
    "Integrity & Quality violations": "Information Integrity",
}


def canonical_label(name: str) -> str:
    """The column name a label (or one of its aliases) refers to."""
    return LABEL_ALIASES.get(name, name)


class ThresholdMappingError(ValueError):
    """A ``{label: threshold}`` object that is not exactly one value in [0, 1] per label.

    ``key`` is where the problem is, e.g. ``thresholds.CBRN`` (or ``thresholds`` for the whole
    object); callers re-raise it with the file or profile it came from."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def threshold_value(value, key: str = "threshold") -> float:
    """One threshold: a finite number in [0, 1] (a bool or a string is refused, not coerced)."""
    # the range test also refuses NaN and inf, and never converts a huge JSON integer to float
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ThresholdMappingError(key, f"threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def resolve_label_thresholds(mapping, labels) -> dict:
    """Map a ``{label or alias: threshold}`` object onto ``labels`` (column order), strictly:
    every label exactly once (an alias counts as its canonical label), no unknown label, each
    value a finite number in [0, 1] (not a bool, not a string). The checkpoint loader, the
    deploy bundle and threshold-profile files all go through this one rule."""
    if not isinstance(mapping, dict):
        raise ThresholdMappingError("thresholds", "expected an object label -> threshold")
    resolved: dict = {}
    for name, value in mapping.items():
        key = f"thresholds.{name}"
        label = canonical_label(name)
        if label not in labels:
            raise ThresholdMappingError(key, f"unknown label (labels are: {', '.join(labels)})")
        if label in resolved:
            raise ThresholdMappingError(key, f"label {label!r} given more than once (aliases count as their label)")
        resolved[label] = threshold_value(value, key)
    missing = [label for label in labels if label not in resolved]
    if missing:
        raise ThresholdMappingError("thresholds", f"missing thresholds for label(s): {', '.join(missing)}")
    return {label: resolved[label] for label in labels}


def label_flags(scores, thresholds):
    """The decision rule, in one place: a label fires when ``score >= threshold``.

    ``scores`` [rows, labels] (fp32) are compared in float64 with the thresholds, as the
    reference compares a Python float score with a Python float threshold; a threshold is
    never rounded to fp32 first.
    """
    import numpy as np

    return np.asarray(scores).astype(np.float64) >= np.asarray(thresholds, dtype=np.float64)[None, :]

# --- Appended by the serving side: row bookkeeping between preprocessing and calibration.
# INT64 [rows, 1]: for each encoder row, the index of the request row (text) it came from.
# Equal to 0..batch-1 unless the tokenizer's long_input_policy is "windows", where one long
# text becomes several overlapping windows; calibration then takes the max score per label.
TEXT_ROW = "text_row"
