"""Names that cross a boundary: Triton model names, tensor names, request parameters.

The committed ``config.pbtxt.template`` files spell these names too; a test checks every name
in every template against this module (``tests/contract``), and deploy parses each generated
config into Triton's ``ModelConfig`` before writing it.
"""
from __future__ import annotations

import re

# --- Encoder graph (ONNX / TensorRT / Python-backend encoders): same names everywhere.
INPUT_IDS = "input_ids"            # INT64 [batch, seq]
ATTENTION_MASK = "attention_mask"  # INT64 [batch, seq], 1 = real token, right padding only
LOGITS = "logits"                  # FP32  [batch, num_labels], before the activation

# --- Results of the calibration stage (and of both ensembles).
SCORES = "scores"            # FP32 [batch, num_labels]: activation(logits)
LABEL_FLAGS = "label_flags"  # BOOL [batch, num_labels]: score >= threshold
FLAGGED = "flagged"          # BOOL [batch, 1]: any label fired (escalate)
TOKEN_COUNT = "token_count"  # INT64 [batch, 1]: tokens of the input text

# --- Raw-text entry point.
TEXT = "text"  # BYTES [batch, 1], UTF-8

# --- Row bookkeeping between preprocessing and calibration (ensemble-internal).
# INT64 [rows, 1]: for each encoder row, the index of the request row (text) it came from.
# Equal to 0..batch-1 unless the tokenizer's long_input_policy is "windows", where one long
# text becomes several overlapping windows; calibration then takes the max score per label.
TEXT_ROW = "text_row"
# INT64 [rows, 1]: offset of the row's first token in its text (0 unless windowed). With
# TEXT_ROW it lets calibration check the windows and report the text's own token count
# (overlapping tokens counted once).
WINDOW_START = "window_start"

# --- Triton model names (folder names under model_repository/).
TOKENIZER_MODEL = "tokenizer"
IDS_PREPROCESS_MODEL = "ids_preprocess"
ENCODER_MODEL = "encoder"
CALIBRATION_MODEL = "calibration"
TEXT_ENSEMBLE = "classify_text"
IDS_ENSEMBLE = "classify_ids"
MODELS = (TOKENIZER_MODEL, IDS_PREPROCESS_MODEL, ENCODER_MODEL, CALIBRATION_MODEL, TEXT_ENSEMBLE, IDS_ENSEMBLE)
ENSEMBLES = (TEXT_ENSEMBLE, IDS_ENSEMBLE)

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

# Several classifiers in one server: each deployed with its own prefix (``deploy --model-prefix``),
# e.g. ``jailbreak_`` -> ``jailbreak_classify_text``; the default classifier has none.
MODEL_PREFIX = re.compile(r"([a-z][a-z0-9]*_)?")  # use fullmatch: "$" also matches before a final newline
JAILBREAK_MODEL_PREFIX = "jailbreak_"  # the prefix the sibling jailbreak detector is deployed with


def prefixed(name: str, prefix: str = "") -> str:
    """The Triton model name of ``name`` for the classifier deployed with ``prefix``."""
    if not isinstance(prefix, str) or not MODEL_PREFIX.fullmatch(prefix):
        raise ValueError(f"model prefix {prefix!r}: lowercase letters and digits ending with '_', or empty")
    return prefix + name

# --- Request parameters (``ModelInferRequest.parameters``).
THRESHOLD_PROFILE_PARAMETER = "threshold_profile"
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

