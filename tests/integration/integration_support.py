"""Deploying the tiny bundle for the end-to-end tests (a plain module: conftest files share one
module name across test folders, so helpers are not imported from them)."""
from __future__ import annotations

from pathlib import Path

from opencc_cm_serving.deploy import CHECKOUT_TEMPLATES, main as deploy_main

TEMPLATES = CHECKOUT_TEMPLATES
MAX_BATCH = 8  # small, so that the client's splitting is exercised with few prompts


# Encoder targets the pip server runs (Python backend). python-torch is deployed with its
# (batch, length) bucket padding forced on, as it runs on CUDA: every fidelity test then also
# proves that padding to buckets changes no score.
SERVED_TARGETS = {
    "python-ort": (),
    "python-torch": ("--instance-kind", "cpu", "--pad-to-buckets", "on"),
}


def deploy_tiny(bundle: Path, out: Path, *extra: str, target: str = "python-ort") -> Path:
    assert deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(out),
                        "--target", target, "--max-batch-size", str(MAX_BATCH),
                        *SERVED_TARGETS[target], *extra]) == 0
    return out
