"""The deploy bundle: the folder the export writes and the Triton repository is filled from.

``model.onnx`` (+ ``model.onnx.data`` above 2 GB), the merged torch weights the ``python-torch``
encoder loads (``classifier.safetensors`` + ``classifier_config.json``, no vocabulary
projection), ``tokenizer.json`` and ``classifier.json``:
a JSON object with the fields below, written and read by :class:`ClassifierManifest` only. Threshold-profile files (``deploy --profiles``) are
``{"profiles": {name: {label: threshold}}}``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .labels import OBJECTIVES, ThresholdMappingError, activation_for, canonical_label, resolve_label_thresholds

CLASSIFIER_FILE = "classifier.json"
TOKENIZER_FILE = "tokenizer.json"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"
TENSORRT_PLAN_FILE = "model.plan"
TORCH_WEIGHTS_FILE = "classifier.safetensors"  # merged text model (text_model.*) + fp32 head (head.*)
TORCH_CONFIG_FILE = "classifier_config.json"   # {"text_config": transformers config, "num_labels", "hidden_size"}
PROFILES_FILE = "profiles.json"  # name of a profiles file once copied into the repository

# classifier.json fields: ClassifierManifest below is their one reader and writer.
FIELD_LABELS = "labels"                  # list of names, column order
FIELD_THRESHOLDS = "thresholds"          # {label: threshold}, the checkpoint's profile "default"
FIELD_OBJECTIVE = "objective"            # one of labels.OBJECTIVES
FIELD_ACTIVATION = "activation"          # labels.activation_for(objective, num_labels), written for readers
FIELD_NUM_LABELS = "num_labels"
FIELD_VOCAB_SIZE = "vocab_size"          # the embedding's rows: ids must be below it
FIELD_TOKENIZER_VOCAB_SIZE = "tokenizer_vocab_size"  # ids the tokenizer can produce (<= vocab_size)
FIELD_PAD_TOKEN_ID = "pad_token_id"
FIELD_MAX_TOKENS = "max_tokens"          # longest row the graph and the server accept
FIELD_BASE_MODEL = "base_model"
FIELD_CHECKPOINT = "checkpoint"
FIELD_PRECISION = "precision"            # one of PRECISIONS
FIELD_QUERY_BLOCK = "attention_query_block"  # queries per block of the graph's full attention (null: all at once)
FIELD_PARITY = "parity"                  # the export's parity report; deploy refuses passed != true
FIELD_TORCH_PARITY = "torch_parity"      # the same for the torch weights (deploy --target python-torch)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # int8: weight MatMuls in int8, ONNX Runtime CPU only


class ManifestError(ValueError):
    """A ``classifier.json`` that cannot be served as written; names the file and the field."""


@dataclass(frozen=True)
class ClassifierManifest:
    """``classifier.json``: what the export writes and every reader (the server's models, deploy,
    the TensorRT builder, the benchmarks) reads. Thresholds are held in label column order;
    labels are canonical (aliases resolved)."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    objective: str
    vocab_size: int
    pad_token_id: int
    max_tokens: int
    base_model: str = ""
    checkpoint: str = ""
    precision: str = "fp32"
    tokenizer_vocab_size: int | None = None
    attention_query_block: int | None = None
    parity: dict | None = None
    torch_parity: dict | None = None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def activation(self) -> str:
        return activation_for(self.objective, self.num_labels)

    def to_json(self) -> dict:
        return {
            FIELD_LABELS: list(self.labels),
            FIELD_THRESHOLDS: dict(zip(self.labels, self.thresholds)),
            FIELD_OBJECTIVE: self.objective,
            FIELD_ACTIVATION: self.activation,
            FIELD_NUM_LABELS: self.num_labels,
            FIELD_VOCAB_SIZE: self.vocab_size,
            FIELD_TOKENIZER_VOCAB_SIZE: self.tokenizer_vocab_size,
            FIELD_PAD_TOKEN_ID: self.pad_token_id,
            FIELD_MAX_TOKENS: self.max_tokens,
            FIELD_BASE_MODEL: self.base_model,
            FIELD_CHECKPOINT: self.checkpoint,
            FIELD_PRECISION: self.precision,
            FIELD_QUERY_BLOCK: self.attention_query_block,
            FIELD_PARITY: self.parity,
            FIELD_TORCH_PARITY: self.torch_parity,
        }

    def write(self, bundle: str | Path) -> Path:
        """Write ``bundle/classifier.json``, validated first as the reader validates it: a writer
        never leaves behind what the reader refuses."""
        path = Path(bundle) / CLASSIFIER_FILE
        data = self.to_json()
        self.from_json(data, str(path))
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> ClassifierManifest:
        """Parse and validate a ``classifier.json`` file (or the one in a bundle folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / CLASSIFIER_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: cannot read classifier spec: {exc}") from exc
        return cls.from_json(raw, str(path))

    @classmethod
    def from_json(cls, raw, where: str = CLASSIFIER_FILE) -> ClassifierManifest:
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: expected a JSON object")
        labels = raw.get(FIELD_LABELS)
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise ManifestError(f"{where}: '{FIELD_LABELS}' must be a non-empty list of names")
        canonical = tuple(canonical_label(x) for x in labels)
        if len(set(canonical)) != len(canonical):
            raise ManifestError(f"{where}: duplicate labels in {labels}")
        if raw.get(FIELD_NUM_LABELS, len(canonical)) != len(canonical):
            raise ManifestError(f"{where}: {FIELD_NUM_LABELS} {raw.get(FIELD_NUM_LABELS)} != {len(canonical)} labels")
        objective = raw.get(FIELD_OBJECTIVE)
        if objective not in OBJECTIVES:
            raise ManifestError(f"{where}: {FIELD_OBJECTIVE} must be one of {OBJECTIVES}, got {objective!r}")
        try:
            thresholds = tuple(resolve_label_thresholds(raw.get(FIELD_THRESHOLDS), canonical).values())
        except ThresholdMappingError as exc:
            raise ManifestError(f"{where} thresholds: {exc}") from None
        vocab_size = _int_field(raw, FIELD_VOCAB_SIZE, where, 1)
        pad = _int_field(raw, FIELD_PAD_TOKEN_ID, where, 0)
        if pad >= vocab_size:
            raise ManifestError(f"{where}: {FIELD_PAD_TOKEN_ID} {pad} is not below {FIELD_VOCAB_SIZE} {vocab_size}")
        for key in (FIELD_PARITY, FIELD_TORCH_PARITY):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise ManifestError(f"{where}: '{key}' must be an object or null")
        precision = raw.get(FIELD_PRECISION) or "fp32"
        if precision not in PRECISIONS:
            raise ManifestError(f"{where}: unknown {FIELD_PRECISION} {precision!r}; expected one of {PRECISIONS}")
        return cls(labels=canonical, thresholds=thresholds, objective=objective, vocab_size=vocab_size,
                   pad_token_id=pad, max_tokens=_int_field(raw, FIELD_MAX_TOKENS, where, 1),
                   base_model=str(raw.get(FIELD_BASE_MODEL) or ""), checkpoint=str(raw.get(FIELD_CHECKPOINT) or ""),
                   precision=precision,
                   tokenizer_vocab_size=_int_field(raw, FIELD_TOKENIZER_VOCAB_SIZE, where, 1, optional=True),
                   attention_query_block=_int_field(raw, FIELD_QUERY_BLOCK, where, 1, optional=True),
                   parity=raw.get(FIELD_PARITY), torch_parity=raw.get(FIELD_TORCH_PARITY))


def _int_field(raw: dict, key: str, where: str, minimum: int, optional: bool = False):
    value = raw.get(key)
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


# threshold-profile names: a letter, then letters/digits/_; at most 64 characters. Use fullmatch
# ("$" would also match before a final newline: "strict\n" is not a name)
PROFILE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
