"""Shared fixtures: a tiny generated checkpoint and its exported, parity-checked bundle.

Both are built once per test session (seconds for the checkpoint, under a minute for the
export) under pytest's temporary directory, from the same code the README's commands run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: never try the network


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> dict[str, Path]:
    from opencc_cm_export.synthetic_checkpoint import write_synthetic_checkpoint

    return write_synthetic_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny", progress=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported to fp32 ONNX; the export itself fails on a parity miss."""
    from opencc_cm_export.export_pipeline import export_bundle

    out = tmp_path_factory.mktemp("tiny-bundle")
    export_bundle(tiny_checkpoint["classifier"], out, base_model=tiny_checkpoint["base_model"],
                  max_tokens=2048, progress=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_int8_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported with ``--precision int8``. Its fidelity gate may fail on this
    random checkpoint (the record then says ``passed: false``); the serving paths that use it are
    tested all the same."""
    from opencc_cm_export.export_pipeline import ParityError, export_bundle

    out = tmp_path_factory.mktemp("tiny-int8")
    try:
        export_bundle(tiny_checkpoint["classifier"], out, base_model=tiny_checkpoint["base_model"],
                      precision="int8", max_tokens=2048, progress=lambda *_: None)
    except ParityError:
        pass
    return out


@pytest.fixture(scope="session")
def tiny_reference(tiny_checkpoint):
    from opencc_cm_export.reference import ReferenceClassifier

    return ReferenceClassifier.load(tiny_checkpoint["classifier"], base_model=tiny_checkpoint["base_model"])


@pytest.fixture(scope="session")
def tiny_jailbreak_checkpoint(tmp_path_factory) -> dict[str, Path]:
    """The sibling jailbreak detector (one sigmoid, ``threshold.json``) in its published format."""
    from opencc_cm_export.synthetic_checkpoint import write_synthetic_checkpoint

    return write_synthetic_checkpoint(tmp_path_factory.mktemp("tiny-jailbreak"), "tiny", variant="jailbreak",
                                      progress=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_jailbreak_bundle(tiny_jailbreak_checkpoint, tmp_path_factory) -> Path:
    from opencc_cm_export.export_pipeline import export_bundle

    out = tmp_path_factory.mktemp("tiny-jailbreak-bundle")
    export_bundle(tiny_jailbreak_checkpoint["classifier"], out, base_model=tiny_jailbreak_checkpoint["base_model"],
                  max_tokens=2048, parity_lengths=(1, 7, 64, 65, 130), progress=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_jailbreak_reference(tiny_jailbreak_checkpoint):
    from opencc_cm_export.reference import ReferenceClassifier

    return ReferenceClassifier.load(tiny_jailbreak_checkpoint["classifier"],
                                    base_model=tiny_jailbreak_checkpoint["base_model"])


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> dict[str, Path]:
    """The demo classifier trained on the synthetic corpus (what ``make demo`` serves; ~2 min CPU)."""
    from opencc_cm_export.demo_training import train_demo_checkpoint

    return train_demo_checkpoint(tmp_path_factory.mktemp("demo"), progress=lambda *_: None)


@pytest.fixture(scope="session")
def demo_reference(demo_checkpoint):
    from opencc_cm_export.reference import ReferenceClassifier

    return ReferenceClassifier.load(demo_checkpoint["classifier"], base_model=demo_checkpoint["base_model"])
