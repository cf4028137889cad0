"""ONNX Runtime session for the Python-backend encoder (CPU here, CUDA when available).

Contract of the graph: inputs ``input_ids``, ``attention_mask`` INT64 [batch, seq] (right
padding), output ``logits`` [batch, num_labels] returned as FP32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, LOGITS

from .errors import ConfigError


def choose_providers(setting: str) -> list[str]:
    """``auto`` -> CUDA first when this onnxruntime build has it; else a comma list."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if setting == "auto":
        wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    else:
        wanted = [p.strip() for p in setting.split(",") if p.strip()]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ConfigError(f"onnxruntime providers {missing} are not available (have {available})")
    return wanted


class OnnxEncoder:
    """Owns one InferenceSession; ``__call__(ids, mask) -> FP32 logits``."""

    def __init__(self, path: str | Path, num_labels: int, providers: str = "auto", intra_op_threads: int = 0):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise ConfigError(f"encoder graph {path} not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=choose_providers(providers))
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != {INPUT_IDS, ATTENTION_MASK} or LOGITS not in outputs:
            raise ConfigError(f"{path}: graph has inputs {sorted(inputs)} and outputs {outputs}, "
                              f"expected {[INPUT_IDS, ATTENTION_MASK]} -> {LOGITS}")
        self.num_labels = num_labels

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run([LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: mask})
        if logits.shape != (ids.shape[0], self.num_labels):
            raise RuntimeError(f"encoder returned logits of shape {list(logits.shape)}, "
                               f"expected {[ids.shape[0], self.num_labels]}")
        return logits.astype(np.float32, copy=False)
