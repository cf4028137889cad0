"""Triton model ``calibration``: ``logits`` FP32 [rows, num_labels] + ``attention_mask``
INT64 [rows, seq] + ``text_row`` and ``window_start`` INT64 [rows, 1] -> ``scores`` FP32
(sigmoid), ``label_flags`` BOOL (score >= threshold), ``flagged`` BOOL [batch, 1] (any
label), ``token_count`` INT64 [batch, 1] (the text's own tokens, overlaps counted once).

Rows sharing a ``text_row`` (windows of one long text) fold into one output row: max score
per label. Without windows rows == batch and nothing folds.

It is callable directly (Triton cannot hide composing models), so it checks what the
ensembles would have guaranteed, INVALID_ARG otherwise: finite logits (NaN / +-inf never
become an "allowed"), mask 0/1 and right padded with a real token per row, rows of at most
max_tokens (and a mask of at most max_batch_size x max_tokens elements), and text_row / window_start exactly as the tokenizer makes them
(opencc_cm_serving.calibration.fold_plan).

Labels, objective and the ``default`` thresholds come from the bundle's classifier.json;
more named profiles from the JSON file in parameter ``profiles_file`` (``""`` = none). The
request parameter ``threshold_profile`` picks one per request; unknown -> INVALID_ARG, as is
any request parameter outside the contract (opencc_cm_serving.triton.request_parameters).
Config parameters: ``artifact_dir`` (classifier.json), ``profiles_file``,
``long_input_policy`` and ``window_overlap`` (as the tokenizer's).
"""
import os
import sys

# The backend stub ignores PYTHONPATH; the launcher puts our packages and deps there.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import json  # noqa: E402


from opencc_cm_contract import (  # noqa: E402
    ATTENTION_MASK, CALIBRATION_MODEL, DEFAULT_PROFILE, FLAGGED, LABEL_FLAGS, LOGITS, SCORES, TEXT_ROW,
    THRESHOLD_PROFILE_PARAMETER, TOKEN_COUNT, WINDOW_START,
)
from opencc_cm_contract.limits import max_id_elements  # noqa: E402
from opencc_cm_serving.bundle import CLASSIFIER_FILE, load_classifier  # noqa: E402
from opencc_cm_serving.calibration import (  # noqa: E402
    activate, calibration_settings, check_finite_logits, decide, fold_max, fold_plan,
)
from opencc_cm_serving.errors import InputError  # noqa: E402
from opencc_cm_serving.ids import right_padded_lengths  # noqa: E402
from opencc_cm_serving.metrics import ClassifierMetrics  # noqa: E402
from opencc_cm_serving.triton import (  # noqa: E402
    input_array, parameters, pb, request_parameters, require, respond_each, version_path,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        artifacts = version_path(args, require(params, "artifact_dir", CALIBRATION_MODEL))
        self.spec = load_classifier(artifacts / CLASSIFIER_FILE)
        self.max_elements = max_id_elements(config["max_batch_size"], self.spec.max_tokens)
        self.profiles, self.window_step = calibration_settings(args, params, self.spec, CALIBRATION_MODEL)
        self.metrics = ClassifierMetrics(pb(), args["model_name"], self.spec.labels)
        pb().Logger.log_info(f"{CALIBRATION_MODEL}: labels {list(self.spec.labels)}, "
                             f"profiles {list(self.profiles.names)}")

    def execute(self, requests):
        self.metrics.flush_if_due()  # counts go out from this thread, between batches (metrics.FlushTimer)
        return respond_each(requests, self._counted, CALIBRATION_MODEL)

    def finalize(self):
        self.metrics.close()  # send the per-label counts not yet flushed

    def _counted(self, request):
        try:
            profile = request_parameters(request).get(THRESHOLD_PROFILE_PARAMETER)
            outputs = self._calibrate(request, profile)
        except Exception as exc:
            self.metrics.failure(exc)
            raise
        self.metrics.record(profile or DEFAULT_PROFILE, outputs[LABEL_FLAGS], outputs[TOKEN_COUNT])
        return outputs

    def _calibrate(self, request, profile):
        thresholds = self.profiles.select(profile)
        logits = input_array(request, LOGITS)
        mask = input_array(request, ATTENTION_MASK, self.max_elements)
        rows = logits.shape[0] if logits.ndim == 2 else -1
        if rows < 0 or logits.shape[1] != self.spec.num_labels or mask.ndim != 2 or mask.shape[0] != rows:
            raise InputError(f"{LOGITS} {list(logits.shape)} / {ATTENTION_MASK} {list(mask.shape)}: "
                             f"expected [batch, {self.spec.num_labels}] and [batch, seq]")
        check_finite_logits(logits, LOGITS)
        lengths = right_padded_lengths(mask, ATTENTION_MASK)
        first, tokens = fold_plan(lengths, input_array(request, TEXT_ROW), input_array(request, WINDOW_START),
                                  self.spec.max_tokens, self.window_step)
        scores = fold_max(activate(logits, self.spec.objective), first)
        flags, flagged = decide(scores, thresholds)
        return {SCORES: scores, LABEL_FLAGS: flags, FLAGGED: flagged, TOKEN_COUNT: tokens}
