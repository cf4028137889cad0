"""Names that cross a boundary: Triton model names, tensor names, request parameters.

The committed ``config.pbtxt.template`` files spell these names too; a test checks every name
in every template against this module (``tests/contract``), and deploy parses each generated
config into Triton's ``ModelConfig`` before writing it.
"""
from __future__ import annotations

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

ENSEMBLE_OUTPUTS = (SCORES, LABEL_FLAGS, FLAGGED, TOKEN_COUNT)

# --- Triton model names (folder names under model_repository/).
TOKENIZER_MODEL = "tokenizer"
IDS_PREPROCESS_MODEL = "ids_preprocess"
ENCODER_MODEL = "encoder"
CALIBRATION_MODEL = "calibration"
TEXT_ENSEMBLE = "classify_text"
IDS_ENSEMBLE = "classify_ids"
MODELS = (TOKENIZER_MODEL, IDS_PREPROCESS_MODEL, ENCODER_MODEL, CALIBRATION_MODEL, TEXT_ENSEMBLE, IDS_ENSEMBLE)
ENSEMBLES = (TEXT_ENSEMBLE, IDS_ENSEMBLE)

# --- Per-request parameter selecting a threshold profile (request parameters, string).
THRESHOLD_PROFILE_PARAMETER = "threshold_profile"
DEFAULT_PROFILE = "default"
