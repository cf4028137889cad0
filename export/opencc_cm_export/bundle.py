"""The deploy bundle: what the export hands to the Triton model repository.

A folder with ``model.onnx`` (+ ``model.onnx.data``), ``tokenizer.json``,
``classifier.json`` (labels in column order, resolved thresholds, objective, limits) and the
merged torch weights the ``python-torch`` encoder loads (``classifier.safetensors`` +
``classifier_config.json``, no vocabulary projection).
"""
from __future__ import annotations

from pathlib import Path

from opencc_cm_contract.bundle_format import TOKENIZER_FILE, ClassifierManifest

from .reference import ReferenceClassifier


def write_bundle_manifest(reference: ReferenceClassifier, bundle: Path, *, max_tokens: int,
                          precision: str, checkpoint: str, parity: dict | None = None,
                          torch_parity: dict | None = None, query_block: int | None = None) -> Path:
    """Write ``classifier.json`` and ``tokenizer.json`` next to the exported graph."""
    bundle = Path(bundle)
    tok = reference.tokenizer
    tok.backend_tokenizer.save(str(bundle / TOKENIZER_FILE), pretty=False)  # compact: 248k-token vocabularies
    spec = reference.spec
    if spec.thresholds is None:
        raise ValueError(f"{spec.directory}: no calibrated thresholds to write into the bundle")
    return ClassifierManifest(
        labels=tuple(spec.labels),
        thresholds=tuple(spec.thresholds[label] for label in spec.labels),
        objective=spec.objective,
        vocab_size=int(reference.backbone.get_base_model().config.get_text_config().vocab_size),
        tokenizer_vocab_size=len(tok),
        pad_token_id=int(tok.pad_token_id),
        max_tokens=int(max_tokens),
        base_model=spec.base_model,
        checkpoint=checkpoint,
        precision=precision,
        attention_query_block=int(query_block) if query_block else None,
        parity=parity,
        torch_parity=torch_parity,
    ).write(bundle)

