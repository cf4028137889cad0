"""ONNX Runtime session for the Python-backend encoder (CPU here, CUDA when available).

Contract of the graph: inputs ``input_ids``, ``attention_mask`` INT64 [batch, seq] (right
padding), output ``logits`` [batch, num_labels] returned as FP32.

Memory after a run: ONNX Runtime's CPU arena keeps every block it ever grew to, so without
shrinking one long request leaves the encoder several GB larger for good. ``memory``:
- ``shrink`` (default): the arena, shrunk back after every run (run option
  ``memory.enable_memory_arena_shrinkage``): the memory a long run allocated is given back, at
  the arena's speed (a ``malloc_trim`` after it adds nothing). Total RSS stays higher by the
  weights' file-backed pages the run touched.
- ``release``: no CPU arena (each tensor is malloc'ed and freed) and ``malloc_trim(0)`` after a
  run of at least ``TRIM_ABOVE_CELLS`` padded cells; returns memory too, but runs markedly
  slower than the arena.
- ``arena``: ONNX Runtime's default (keeps what it took).

Peak memory of a long run: ONNX Runtime's planner, with ``enable_mem_reuse`` on (its default),
hands a dead tensor's buffer to a LATER tensor of the same symbolic shape, and keeps the buffer
until then. In this graph the later tensor is the same operation one layer further down, so
each layer's temporaries stay held through the next layer, and a long row peaks several times
above its live set, at the same speed without it.
``reuse_buffers=False`` (the default here) turns that planning off: each tensor is freed at
its last use, into the arena (or to malloc) where the next allocation takes it anyway.
Triton's native onnxruntime backend has no such switch (see serving/README.md).
Measured: BENCHMARKS.md, "Memory per request".
"""
from __future__ import annotations

import ctypes
import ctypes.util
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


MEMORY_MODES = ("shrink", "release", "arena")
TRIM_ABOVE_CELLS = 1024  # padded cells (rows x width) of a run after which free memory is trimmed


def _malloc_trim():
    """glibc's ``malloc_trim(0)`` (returns freed heap pages to the OS), or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class OnnxEncoder:
    """Owns one InferenceSession; ``__call__(ids, mask) -> FP32 logits``."""

    def __init__(self, path: str | Path, num_labels: int, providers: str = "auto", intra_op_threads: int = 0,
                 memory: str = "shrink", reuse_buffers: bool = False, spinning: bool = True):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise ConfigError(f"encoder graph {path} not found")
        if memory not in MEMORY_MODES:
            raise ConfigError(f"encoder memory mode {memory!r} is not one of {MEMORY_MODES}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # Idle intra-op threads spin (ONNX Runtime's default) or sleep at once: with two lanes
        # running on one session, and the stubs and Triton on the same cores, spinning threads
        # take CPU the other run needs (BENCHMARKS.md, "Long and huge texts beside short prompts").
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = memory != "release"
        options.enable_mem_reuse = reuse_buffers
        self.memory, self.reuse_buffers = memory, reuse_buffers
        self._trim = _malloc_trim() if memory == "release" else None
        self._run_options = None
        wanted = choose_providers(providers)
        if memory == "shrink":
            self._run_options = ort.RunOptions()
            devices = ["cpu:0"] + (["gpu:0"] if "CUDAExecutionProvider" in wanted else [])
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", ";".join(devices))
        self.session = ort.InferenceSession(str(path), options, providers=wanted)
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
        try:
            (logits,) = self.session.run([LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: mask}, self._run_options)
        finally:
            if self._trim is not None and ids.size >= TRIM_ABOVE_CELLS:
                self._trim(0)
        if logits.shape != (ids.shape[0], self.num_labels):
            raise RuntimeError(f"encoder returned logits of shape {list(logits.shape)}, "
                               f"expected {[ids.shape[0], self.num_labels]}")
        return logits.astype(np.float32, copy=False)
