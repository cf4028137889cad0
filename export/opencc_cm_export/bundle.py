"""The deploy bundle: what the export hands to the Triton model repository.

A folder with ``model.onnx`` (+ ``model.onnx.data``), ``tokenizer.json``,
``classifier.json`` (labels in column order, resolved thresholds, objective, limits) and the
merged torch weights the ``python-torch`` encoder loads (``classifier.safetensors`` +
``classifier_config.json``, no vocabulary projection).
"""
from __future__ import annotations

import json
from pathlib import Path

from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, TOKENIZER_FILE

from .reference import ReferenceClassifier


def write_bundle_manifest(reference: ReferenceClassifier, bundle: Path, *, max_tokens: int,
                          precision: str, checkpoint: str, parity: dict | None = None,
                          torch_parity: dict | None = None, query_block: int | None = None) -> Path:
    """Write ``classifier.json`` and ``tokenizer.json`` next to the exported graph."""
    bundle = Path(bundle)
    tok = reference.tokenizer
    tok.backend_tokenizer.save(str(bundle / TOKENIZER_FILE), pretty=False)  # compact: 248k-token vocabularies
    text_config = reference.backbone.get_base_model().config.get_text_config()
    manifest = {
        "labels": list(reference.spec.labels),
        "thresholds": reference.spec.thresholds,
        "objective": reference.spec.objective,
        "activation": reference.spec.activation,
        "num_labels": reference.spec.num_labels,
        "vocab_size": int(text_config.vocab_size),
        "tokenizer_vocab_size": len(tok),
        "pad_token_id": int(tok.pad_token_id),
        "max_tokens": int(max_tokens),
        "base_model": reference.spec.base_model,
        "checkpoint": checkpoint,
        "precision": precision,
        # Full attention of the graph: queries per block (None: [heads, seq, seq] scores at once).
        "attention_query_block": int(query_block) if query_block else None,
        "parity": parity,
        "torch_parity": torch_parity,
    }
    path = bundle / CLASSIFIER_FILE
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def read_bundle_manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / CLASSIFIER_FILE).read_text())
