"""The deploy bundle: the folder the export writes and the Triton repository is filled from.

``model.onnx`` (+ ``model.onnx.data`` above 2 GB), the merged torch weights the ``python-torch``
encoder loads (``classifier.safetensors`` + ``classifier_config.json``, no vocabulary
projection), ``tokenizer.json`` and ``classifier.json``:
a JSON object with the fields below (written by ``opencc_cm_export.bundle``, read and validated
by ``opencc_cm_serving.bundle``). Threshold-profile files (``deploy --profiles``) are
``{"profiles": {name: {label: threshold}}}``.
"""
from __future__ import annotations

import re

CLASSIFIER_FILE = "classifier.json"
TOKENIZER_FILE = "tokenizer.json"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"
TENSORRT_PLAN_FILE = "model.plan"
TORCH_WEIGHTS_FILE = "classifier.safetensors"  # merged text model (text_model.*) + fp32 head (head.*)
TORCH_CONFIG_FILE = "classifier_config.json"   # {"text_config": transformers config, "num_labels", "hidden_size"}
PROFILES_FILE = "profiles.json"  # name of a profiles file once copied into the repository

# classifier.json fields
FIELD_LABELS = "labels"                  # list of names, column order
FIELD_THRESHOLDS = "thresholds"          # {label: threshold}, the checkpoint's profile "default"
FIELD_OBJECTIVE = "objective"            # one of labels.OBJECTIVES
FIELD_ACTIVATION = "activation"          # labels.activation_for(objective, num_labels)
FIELD_NUM_LABELS = "num_labels"
FIELD_VOCAB_SIZE = "vocab_size"          # the embedding's rows: ids must be below it
FIELD_PAD_TOKEN_ID = "pad_token_id"
FIELD_MAX_TOKENS = "max_tokens"          # longest row the graph and the server accept
FIELD_BASE_MODEL = "base_model"
FIELD_CHECKPOINT = "checkpoint"
FIELD_PRECISION = "precision"            # fp32 | fp16 | bf16
FIELD_PARITY = "parity"                  # the export's parity report; deploy refuses passed != true
FIELD_TORCH_PARITY = "torch_parity"      # the same for the torch weights (deploy --target python-torch)

# threshold-profile names: a letter, then letters/digits/_; at most 64 characters. Use fullmatch
# ("$" would also match before a final newline: "strict\n" is not a name)
PROFILE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
