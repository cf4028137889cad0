"""Deploying the tiny bundle for the end-to-end tests (a plain module: conftest files share one
module name across test folders, so helpers are not imported from them)."""
from __future__ import annotations

from pathlib import Path

from opencc_cm_serving.deploy import main as deploy_main

TEMPLATES = Path(__file__).resolve().parents[2] / "model_repository"
MAX_BATCH = 8  # small, so that the client's splitting is exercised with few prompts


def deploy_tiny(bundle: Path, out: Path, *extra: str) -> Path:
    assert deploy_main(["--bundle", str(bundle), "--repository", str(TEMPLATES), "--output", str(out),
                        "--target", "python-ort", "--max-batch-size", str(MAX_BATCH), *extra]) == 0
    return out
