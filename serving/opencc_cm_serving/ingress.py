"""What the ingress in front of tritonserver must enforce, computed from a deployed repository.

Request size: Triton 2.51 offers no limit on received messages (no flag, no config field: its
gRPC server accepts messages up to 2 GiB, and gzip/deflate-compressed ones are inflated up to
that size before any model sees them; its HTTP server has no body limit either). So the
limit cannot be set on the server; ``max_request_bytes`` computes it from the deployed
repository (``max_batch_size x (max_text_bytes + 4)`` for texts, ``2 x max_batch_size x
max_tokens x 8`` for ids, plus 64 KiB of names and parameters) and the launcher prints it:
the ingress must refuse larger requests, counted after decompression (or refuse compressed
requests). See serving/README.md, "Threat model".
"""
from __future__ import annotations

from pathlib import Path

from opencc_cm_contract.limits import max_id_elements

REQUEST_OVERHEAD_BYTES = 64 * 1024  # tensor names, shapes, parameters, protobuf framing


def max_request_bytes(max_batch_size: int, max_text_bytes: int, max_tokens: int) -> int:
    """Size of the largest inference request the models can accept (decompressed): what the
    ingress must cap, since Triton 2.51 has no received-message-size limit."""
    text = max_batch_size * (max_text_bytes + 4)      # BYTES elements carry a 4-byte length prefix
    ids = 2 * max_id_elements(max_batch_size, max_tokens) * 8  # input_ids + attention_mask, INT64
    return max(text, ids) + REQUEST_OVERHEAD_BYTES


def repository_classifiers(repository: str | Path) -> list[str]:
    """The model prefixes of the classifiers deployed in ``repository`` ("" = the unprefixed one):
    every folder ``<prefix>classify_text`` or ``<prefix>classify_ids`` holding a generated
    ``config.pbtxt``, ``<prefix>`` a valid model prefix (``deploy --model-prefix``)."""
    from opencc_cm_contract import ENSEMBLES
    from opencc_cm_contract.names import MODEL_PREFIX

    found = set()
    for config in Path(repository).glob("*/config.pbtxt"):
        folder = config.parent.name
        for ensemble in ENSEMBLES:
            prefix = folder[:-len(ensemble)]
            if folder.endswith(ensemble) and MODEL_PREFIX.fullmatch(prefix):
                found.add(prefix)
    return sorted(found)


def repository_request_cap(repository: str | Path) -> int | None:
    """``max_request_bytes`` of a deployed repository (its generated configs): the largest over
    every classifier in it (``repository_classifiers``); None if none has filled configs."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from opencc_cm_contract import IDS_ENSEMBLE, TOKENIZER_MODEL
    from opencc_cm_contract.metadata import PARAM_MAX_TOKENS

    caps = []
    for prefix in repository_classifiers(repository):
        configs = {}
        for model in (TOKENIZER_MODEL, IDS_ENSEMBLE):
            path = Path(repository) / f"{prefix}{model}" / "config.pbtxt"
            if path.is_file():
                configs[model] = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
        if len(configs) < 2:
            continue
        try:
            tokenizer, ids = configs[TOKENIZER_MODEL], configs[IDS_ENSEMBLE]
            caps.append(max_request_bytes(tokenizer.max_batch_size,
                                          int(tokenizer.parameters["max_text_bytes"].string_value),
                                          int(ids.parameters[PARAM_MAX_TOKENS].string_value)))
        except (KeyError, ValueError):
            continue
    return max(caps) if caps else None
