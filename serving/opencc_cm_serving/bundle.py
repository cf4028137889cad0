"""Reading and validating the export side's deploy bundle and threshold-profile files.

Bundle folder: ``model.onnx`` (+ optional ``model.onnx.data``), ``tokenizer.json``, the merged
torch weights ``classifier.safetensors`` + ``classifier_config.json`` (target python-torch) and
``classifier.json`` (``opencc_cm_contract.bundle_format.ClassifierManifest``). Thresholds are
always held in label column order as float64; label names are matched through
``contract.canonical_label`` aliases.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opencc_cm_contract import DEFAULT_PROFILE, ThresholdMappingError, resolve_label_thresholds
from opencc_cm_contract.bundle_format import (CLASSIFIER_FILE, ONNX_DATA_FILE, ONNX_FILE,  # noqa: F401
                                              PROFILE_NAME, TOKENIZER_FILE, TORCH_CONFIG_FILE, TORCH_WEIGHTS_FILE,
                                              ClassifierManifest, ManifestError)

from .errors import ConfigError

INT8_TARGETS = ("python-ort",)  # the only encoder that runs an int8 graph (ONNX Runtime, CPU provider)


def resolve_thresholds(labels: tuple[str, ...], mapping: Any, where: str) -> tuple[float, ...]:
    """``{label: float}`` -> tuple in column order, by ``contract.resolve_label_thresholds``
    (every label exactly once, aliases count as their label, values finite in [0, 1])."""
    try:
        return tuple(resolve_label_thresholds(mapping, labels).values())
    except ThresholdMappingError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_classifier(path: str | Path) -> ClassifierManifest:
    """Parse and validate ``classifier.json`` (``ClassifierManifest.read``); ConfigError naming the problem."""
    try:
        return ClassifierManifest.read(path)
    except ManifestError as exc:
        raise ConfigError(str(exc)) from None


def load_profiles(path: str | Path, labels: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """Parse a threshold-profile file ``{"profiles": {name: {label: float}}}``.

    Names are simple identifiers (letter, then letters/digits/_; at most 64); ``default`` is
    reserved for the checkpoint's own thresholds and may not be redefined."""
    where = str(path)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_KeyedObject)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read threshold profiles: {exc}") from exc
    if isinstance(raw, _KeyedObject) and raw.repeated:
        raise ConfigError(f"{where}: key {raw.repeated[0]!r} given twice")
    profiles = raw.get("profiles") if isinstance(raw, dict) else None
    if not isinstance(profiles, dict):
        raise ConfigError(f"{where}: expected an object {{\"profiles\": {{name: {{label: float}}}}}}")
    if profiles.repeated:
        raise ConfigError(f"{where}: profile {profiles.repeated[0]!r} defined twice")
    out: dict[str, tuple[float, ...]] = {}
    for name, mapping in profiles.items():
        if not PROFILE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: profile name {name!r} is not a simple identifier")
        if name == DEFAULT_PROFILE:
            raise ConfigError(f"{where}: profile name {DEFAULT_PROFILE!r} is reserved for the checkpoint's thresholds")
        if isinstance(mapping, _KeyedObject) and mapping.repeated:
            raise ConfigError(f"{where} profile {name!r}: label {mapping.repeated[0]!r} given twice")
        out[name] = resolve_thresholds(labels, mapping, f"{where} profile {name!r}")
    return out


class _KeyedObject(dict):
    """A JSON object that remembers the keys it was given more than once (``json`` keeps the last
    silently), so that a profiles file with a repeated profile or label is refused, not guessed."""

    def __init__(self, pairs):
        super().__init__(pairs)
        seen: set = set()
        self.repeated = [key for key, _ in pairs if key in seen or seen.add(key)]


def check_bundle(bundle: str | Path, allow_unverified: bool = False, target: str = "python-ort") -> ClassifierManifest:
    """Check that a bundle folder holds the files ``target``'s repository needs and that what
    the encoder loads (ONNX graph, or torch weights for python-torch) passed the export's
    parity check (unless ``allow_unverified``); return its spec."""
    root = Path(bundle)
    torch_target = target == "python-torch"
    model_files = (TORCH_WEIGHTS_FILE, TORCH_CONFIG_FILE) if torch_target else (ONNX_FILE,)
    if not (root / CLASSIFIER_FILE).is_file():
        raise ConfigError(f"bundle {root}: missing {CLASSIFIER_FILE}")
    spec = load_classifier(root / CLASSIFIER_FILE)
    if spec.precision == "int8" and target not in INT8_TARGETS:
        raise ConfigError(f"bundle {root} is an int8 bundle (weight MatMuls in int8 for ONNX Runtime's CPU "
                          f"provider): target {target!r} cannot run it; deploy it with --target "
                          f"{' or '.join(INT8_TARGETS)}, or export an fp32 bundle for {target}")
    for name in (TOKENIZER_FILE,) + model_files:
        if not (root / name).is_file():
            raise ConfigError(f"bundle {root}: missing {name}")
    parity = (spec.torch_parity if torch_target else spec.parity) or {}
    what = "torch weights" if torch_target else "graph"
    if parity.get("passed") is not True and not allow_unverified:
        raise ConfigError(f"bundle {root}: the {what} did not pass the export's parity check "
                          f"({parity.get('reason') or parity.get('max_abs_score_diff', 'no parity record')}); "
                          "refusing to deploy it (--allow-unverified-bundle to override, e.g. a bf16 graph "
                          "verified on the GPU)")
    return spec
