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

# --- Per-request parameter selecting a threshold profile (request parameters, string).
THRESHOLD_PROFILE_PARAMETER = "threshold_profile"
DEFAULT_PROFILE = "default"

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
