"""The contract between the client, the Triton models and the export, in one small package.

Every side imports these facts from here instead of spelling them again (numpy and tokenizers
only, no torch, no gRPC):

- ``names``: Triton model names, tensor names, request parameters.
- ``labels``: labels and aliases, the threshold-object rule, objective -> activation, ``>=``.
- ``text_rules``: how raw text becomes token ids, and which texts are refused.
- ``bundle_format``: the deploy bundle's file names and ``classifier.json`` fields.
- ``metadata``: the keys the server publishes for clients in its ensembles' configs.
- ``limits``: default limits.

The most used names are re-exported here: ``from opencc_cm_contract import INPUT_IDS``.
"""
from .labels import (HARM_CATEGORIES, JAILBREAK_LABELS, LABEL_ALIASES, OBJECTIVES, SIGMOID, SOFTMAX, ThresholdMappingError,
                     activation_for, canonical_label, label_flags, resolve_label_thresholds, threshold_value)
from .limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_TEXT_BYTES, DEFAULT_MAX_TOKENS, LONG_INPUT_POLICIES
from .names import (ATTENTION_MASK, CALIBRATION_MODEL, DEFAULT_PROFILE, ENCODER_MODEL, ENSEMBLE_INPUTS, ENSEMBLE_OUTPUTS,
                    ENSEMBLES, REQUEST_PARAMETERS, TRITON_RESERVED_PARAMETERS, RequestParameterError,
                    check_request_parameters,
                    FLAGGED, IDS_ENSEMBLE, IDS_PREPROCESS_MODEL, INPUT_IDS, LABEL_FLAGS, LOGITS, MODELS, SCORES, TEXT,
                    TEXT_ENSEMBLE, TEXT_ROW, THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT, TOKENIZER_MODEL, WINDOW_START)

__all__ = [
    "ATTENTION_MASK", "CALIBRATION_MODEL", "DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_TEXT_BYTES", "DEFAULT_MAX_TOKENS",
    "DEFAULT_PROFILE", "ENCODER_MODEL", "ENSEMBLES", "ENSEMBLE_INPUTS", "ENSEMBLE_OUTPUTS", "FLAGGED", "HARM_CATEGORIES",
    "IDS_ENSEMBLE", "IDS_PREPROCESS_MODEL", "INPUT_IDS", "JAILBREAK_LABELS", "LABEL_ALIASES", "LABEL_FLAGS",
    "LOGITS", "LONG_INPUT_POLICIES", "MODELS", "OBJECTIVES", "SCORES", "SIGMOID", "SOFTMAX", "TEXT", "TEXT_ENSEMBLE", "TEXT_ROW",
    "THRESHOLD_PROFILE_PARAMETER", "TOKEN_COUNT", "TOKENIZER_MODEL", "WINDOW_START", "ThresholdMappingError",
    "activation_for", "REQUEST_PARAMETERS", "TRITON_RESERVED_PARAMETERS", "RequestParameterError",
    "check_request_parameters",
    "canonical_label", "label_flags", "resolve_label_thresholds", "threshold_value",
]
