"""Read a TACTIC checkpoint (the published ``opencc-cm-escalation`` format) without torch.

Resolves exactly what the reference resolves - base model, objective, labels, thresholds, head
file, LoRA hyper-parameters, adapter weights - but refuses what the reference silently
tolerates: every problem raises :class:`CheckpointError` naming the file and the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencc_cm_contract import (HARM_CATEGORIES, JAILBREAK_LABELS, OBJECTIVES, ThresholdMappingError,
                                activation_for, resolve_label_thresholds, threshold_value)

FRAME_FILE = "weight_frame.json"
THRESHOLDS_FILE = "thresholds.json"
THRESHOLD_FILE = "threshold.json"
TRAIN_CONFIG_FILE = "train_config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                 "target_modules": ["q_proj", "v_proj"]}


class CheckpointError(ValueError):
    """A checkpoint that cannot be served as published. Names the file and the key."""

    def __init__(self, file: str | Path, key: str | None, problem: str):
        self.file, self.key, self.problem = str(file), key, problem
        where = f"{file}" + (f" [{key}]" if key else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class CheckpointSpec:
    """Everything needed to rebuild and interpret the classifier."""

    directory: Path
    base_model: str
    objective: str
    labels: tuple[str, ...]
    thresholds: dict[str, float] | None  # canonical label -> threshold, one per label
    head_path: Path
    adapter_path: Path
    lora: dict[str, Any] = field(default_factory=dict)  # r, lora_alpha, lora_dropout, target_modules
    is_jailbreak: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def activation(self) -> str:
        """``sigmoid`` for multilabel and single-logit heads (as the reference), else ``softmax``."""
        return activation_for(self.objective, self.num_labels)


def resolve_checkpoint_dir(repo_or_path: str | Path) -> Path:
    """A local folder as is; otherwise a hub repo id, downloaded with ``snapshot_download``."""
    path = Path(repo_or_path)
    if path.is_dir():
        return path
    if path.exists() or str(repo_or_path).startswith((".", "/")):
        raise CheckpointError(path, None, "not a checkpoint folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(repo_or_path)))
    except Exception as exc:  # offline, unknown repo, auth...
        raise CheckpointError(repo_or_path, None,
                              f"not a local folder and could not be downloaded from the hub: {exc}") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(path, None, f"invalid JSON: {exc}") from exc


def _read_frame(directory: Path) -> tuple[dict, bool]:
    path = directory / FRAME_FILE
    if not path.exists():
        return {}, False
    data = _read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(path, None, "top level must be an object")
    if isinstance(data.get("classifier"), dict):
        return data["classifier"], False
    if isinstance(data.get("jailbreak_classifier"), dict):
        return data["jailbreak_classifier"], True
    raise CheckpointError(path, "classifier", "no 'classifier' or 'jailbreak_classifier' object")


def _lora_settings(directory: Path, train_cfg: dict) -> dict[str, Any]:
    """LoRA from adapter_config.json (what PEFT wrote with the weights), else train_config.json.

    When both exist they must agree on rank, alpha and target modules.
    """
    from_train = {
        "r": train_cfg.get("lora_r", LORA_DEFAULTS["r"]),
        "lora_alpha": train_cfg.get("lora_alpha", LORA_DEFAULTS["lora_alpha"]),
        "lora_dropout": train_cfg.get("lora_dropout", LORA_DEFAULTS["lora_dropout"]),
        "target_modules": train_cfg.get("lora_target_modules") or LORA_DEFAULTS["target_modules"],
    }
    path = directory / ADAPTER_CONFIG_FILE
    if not path.exists():
        return from_train
    cfg = _read_json(path)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(path, "peft_type", f"expected LORA, got {cfg.get('peft_type')!r}")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in cfg:
            raise CheckpointError(path, key, "missing")
    settings = {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"],
                "lora_dropout": cfg.get("lora_dropout", 0.0),
                "target_modules": cfg["target_modules"]}
    if train_cfg:
        for key, train_key in (("r", "lora_r"), ("lora_alpha", "lora_alpha"),
                               ("target_modules", "lora_target_modules")):
            if train_key in train_cfg and _norm(train_cfg[train_key]) != _norm(settings[key]):
                raise CheckpointError(
                    directory / TRAIN_CONFIG_FILE, train_key,
                    f"{train_cfg[train_key]!r} disagrees with {ADAPTER_CONFIG_FILE} {key}={settings[key]!r}")
    for key in ("use_dora", "use_rslora"):
        if cfg.get(key):
            raise CheckpointError(path, key, "not supported by this loader")
    return settings


def _norm(value):
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


def _labels(frame: dict, train_cfg: dict, objective: str, is_jailbreak: bool, frame_path: Path):
    num_labels = train_cfg.get("num_labels")
    taxonomy = frame.get("taxonomy")
    if is_jailbreak or num_labels == 1:
        return JAILBREAK_LABELS
    if num_labels is None:
        num_labels = len(HARM_CATEGORIES) if objective == "multilabel" else len(taxonomy or ())
    if objective == "multilabel" and num_labels == len(HARM_CATEGORIES):
        return HARM_CATEGORIES  # the reference's column order for the 11-way head
    if not taxonomy or len(taxonomy) != num_labels:
        raise CheckpointError(frame_path, "taxonomy",
                              f"need {num_labels} label names, got {taxonomy!r}")
    return tuple(taxonomy)


def _thresholds(directory: Path, frame: dict, labels: tuple[str, ...], is_jailbreak: bool,
                required: bool) -> dict[str, float] | None:
    """Frame first, then the sidecar; every label exactly once, no unknown label."""
    frame_path = directory / FRAME_FILE
    if is_jailbreak or labels == JAILBREAK_LABELS:
        value, source, key = frame.get("threshold"), frame_path, "threshold"
        if value is None and (directory / THRESHOLD_FILE).exists():
            source = directory / THRESHOLD_FILE
            value = _read_json(source).get("threshold")
        if value is None:
            if required:
                raise CheckpointError(directory / THRESHOLD_FILE, key,
                                      "no calibrated threshold in the frame or the sidecar")
            return None
        return {labels[0]: _threshold_value(value, source, key)}

    raw, source = frame.get("thresholds"), frame_path
    if not raw:
        side = directory / THRESHOLDS_FILE
        if side.exists():
            data = _read_json(side)
            raw, source = (data.get("thresholds") if isinstance(data, dict) else None), side
            if not isinstance(raw, dict):
                raise CheckpointError(side, "thresholds", "expected an object label -> float")
    if not raw:
        if required:
            raise CheckpointError(directory / THRESHOLDS_FILE, "thresholds",
                                  "no calibrated thresholds in the frame or the sidecar")
        return None
    if not isinstance(raw, dict):
        raise CheckpointError(source, "thresholds", "expected an object label -> float")
    return _resolve_thresholds(raw, labels, source)


def _resolve_thresholds(raw: dict, labels: tuple[str, ...], source) -> dict[str, float]:
    """Map a ``{label or alias: threshold}`` object onto ``labels`` (``contract``'s one rule),
    naming ``source`` and the key on failure."""
    try:
        return resolve_label_thresholds(raw, labels)
    except ThresholdMappingError as exc:
        raise CheckpointError(source, exc.key, exc.problem) from None


def _threshold_value(value, source, key) -> float:
    try:
        return threshold_value(value, key)
    except ThresholdMappingError as exc:
        raise CheckpointError(source, exc.key, exc.problem) from None


def read_checkpoint(repo_or_path: str | Path, *, base_model: str | Path | None = None,
                    require_thresholds: bool = True) -> CheckpointSpec:
    """Resolve a checkpoint folder (or hub repo id) into a :class:`CheckpointSpec`.

    ``base_model`` overrides the manifest's (e.g. a local copy of ``Qwen/Qwen3.5-0.8B``).
    """
    directory = resolve_checkpoint_dir(repo_or_path)
    frame, is_jailbreak = _read_frame(directory)
    train_path = directory / TRAIN_CONFIG_FILE
    train_cfg = _read_json(train_path) if train_path.exists() else {}
    if not frame and not train_cfg:
        raise CheckpointError(directory / FRAME_FILE, None,
                              f"missing (and no {TRAIN_CONFIG_FILE} to fall back on)")
    frame_path = directory / FRAME_FILE if frame else train_path

    resolved_base = str(base_model) if base_model else (frame.get("base_model") or train_cfg.get("model_name"))
    if not resolved_base:
        raise CheckpointError(frame_path, "base_model", "missing (and no model_name in train_config.json)")

    objective = frame.get("objective") or train_cfg.get("objective") or "softmax"
    if objective not in OBJECTIVES:
        raise CheckpointError(frame_path if frame.get("objective") else train_path, "objective",
                              f"unknown objective {objective!r} (expected one of {', '.join(OBJECTIVES)})")
    labels = _labels(frame, train_cfg, objective, is_jailbreak, frame_path)

    head_name = frame.get("head_filename") or ("jailbreak_head.pt" if is_jailbreak else "classification_head.pt")
    head_path = directory / head_name
    if not head_path.exists():
        raise CheckpointError(head_path, "head_filename", "head weights file is missing")
    adapter_path = next((directory / n for n in ADAPTER_WEIGHT_FILES if (directory / n).exists()), None)
    if adapter_path is None:
        raise CheckpointError(directory / ADAPTER_WEIGHT_FILES[0], None,
                              "adapter weights are missing (no .safetensors or .bin)")

    return CheckpointSpec(
        directory=directory,
        base_model=resolved_base,
        objective=objective,
        labels=labels,
        thresholds=_thresholds(directory, frame, labels, is_jailbreak, require_thresholds),
        head_path=head_path,
        adapter_path=adapter_path,
        lora=_lora_settings(directory, train_cfg),
        is_jailbreak=is_jailbreak,
    )
